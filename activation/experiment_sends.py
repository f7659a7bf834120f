"""An experiment's send list: who gets which content when the campaign goes out by e-mail.

Recording a send exposes every eligible member not exposed before (experiments.record_send, one
statement); the list then holds every exposed contact of the two content arms with the content of
its arm: the variant of its slice segment, or the campaign's default. Hold-out contacts are not
on it: they get nothing. Cells a spreadsheet would run as formulas are neutralised.
"""

from __future__ import annotations

from collections.abc import Iterator

from activation.campaigns import content_for
from activation.experiment_models import Arm, Experiment, Exposure
from activation.formats import neutralise
from activation.models import CampaignVariant

SEND_COLUMNS = ["email", "first_name", "last_name", "arm", "segment", "subject", "preheader", "cta_text", "cta_url"]


def send_rows(experiment: Experiment) -> Iterator[list[str]]:
    """The header, then one row per exposed contact of a content arm, in contact id order (two queries)."""
    campaign = experiment.campaign
    variants = {v.segment_id: v for v in CampaignVariant.objects.filter(campaign=campaign).select_related("segment")}
    generic = content_for(campaign, None)
    yield SEND_COLUMNS
    exposures = (
        Exposure.objects.filter(experiment=experiment, arm__in=[Arm.SPECIFIC, Arm.GENERIC])
        .order_by("contact_id")
        .values_list("contact__email", "contact__first_name", "contact__last_name", "arm", "segment_id")
    )
    for email, first_name, last_name, arm, segment_id in exposures.iterator(chunk_size=5000):
        variant = variants.get(segment_id)
        content = content_for(campaign, variant) if arm == Arm.SPECIFIC else generic
        slug = variant.segment.slug if variant else ""
        cells = [email, first_name, last_name, arm, slug, content.subject, content.preheader]
        yield [neutralise(cell) for cell in [*cells, content.cta_text, content.cta_url]]
