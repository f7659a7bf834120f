"""Fitted models as bytes: skops format (never pickle), signed with the project's SECRET_KEY.

Loading refuses bytes whose signature does not match (changed after training: corrupted or
tampered) and any file naming a type outside `ALLOWED_TYPES` (skops checks every type before it
builds anything, so a crafted file cannot run code on load).
"""

from __future__ import annotations

from django.utils.crypto import constant_time_compare, salted_hmac

SALT = "predictions.artifact"
# Beyond the numpy and scikit-learn types skops trusts by default: what our fitted models hold.
ALLOWED_TYPES = {
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.model_selection._split.StratifiedKFold",  # the folds calibration used, kept on the model
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
}


class ArtifactRefused(ValueError):
    """The stored model cannot be trusted or read."""


def sign(data: bytes) -> str:
    return salted_hmac(SALT, data, algorithm="sha256").hexdigest()


def dump(estimator: object) -> tuple[bytes, str]:
    """(the skops bytes, their signature)."""
    import skops.io as sio  # see predictions/__init__.py: scikit-learn is imported when first used

    data = sio.dumps(estimator)
    return data, sign(data)


def load(data: bytes | memoryview | None, signature: str) -> object:
    import skops.io as sio  # see predictions/__init__.py

    if not data:
        raise ArtifactRefused("the version has no stored model")
    data = bytes(data)
    if not signature or not constant_time_compare(sign(data), signature):
        raise ArtifactRefused("the stored model does not match its signature (changed since training): refused")
    try:
        untrusted = set(sio.get_untrusted_types(data=data))
    except Exception as error:  # skops raises several kinds on unreadable input
        raise ArtifactRefused(f"the stored model cannot be read: {error}") from None
    unexpected = sorted(untrusted - ALLOWED_TYPES)
    if unexpected:
        raise ArtifactRefused(f"the stored model names types outside the allowed list: {', '.join(unexpected)}")
    try:
        return sio.loads(data, trusted=sorted(untrusted))
    except Exception as error:
        raise ArtifactRefused(f"the stored model cannot be read: {error}") from None
