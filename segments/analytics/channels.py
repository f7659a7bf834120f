"""Channels (activity kind groups), the engagement kinds and the lifecycle funnel analytics read."""

from __future__ import annotations

from contacts.models import ActivityKind as K
from contacts.models import LifecycleStage as S

CHANNELS: dict[str, tuple[str, ...]] = {
    "email": (K.EMAIL_OPEN, K.EMAIL_CLICK),
    "web": (K.SITE_VISIT, K.PAGE_VIEW, K.PRICING_VIEW, K.FEATURE_COMPARISON, K.FORM_SUBMIT),
    "content": (K.CONTENT_DOWNLOAD,),
    "events": (K.WEBINAR_ATTEND,),
    "sales": (K.SALES_TOUCH, K.DEMO_REQUEST),
}
CHANNEL_LABELS = {"email": "Email", "web": "Web", "content": "Content", "events": "Events", "sales": "Sales"}

# "At least one open, click, visit, download or form" makes a member engaged.
ENGAGEMENT_KINDS = (K.EMAIL_OPEN, K.EMAIL_CLICK, K.SITE_VISIT, K.PAGE_VIEW, K.CONTENT_DOWNLOAD, K.FORM_SUBMIT)

# lead → MQL → SQL → opportunity → customer; each stage's "previous" is the one before it.
FUNNEL = (S.LEAD, S.MQL, S.SQL, S.OPPORTUNITY, S.CUSTOMER)
CONVERSION_STAGES = (S.MQL, S.SQL, S.OPPORTUNITY, S.CUSTOMER, S.EVANGELIST)
DEFAULT_STAGE = S.CUSTOMER


def previous_stage(stage: str) -> str | None:
    index = FUNNEL.index(stage) if stage in FUNNEL else 0
    return FUNNEL[index - 1] if index > 0 else None


def _in(kinds: tuple[str, ...]) -> str:
    return ", ".join(f"'{kind}'" for kind in kinds)


def engagement_in(column: str) -> str:
    return f"{column} IN ({_in(ENGAGEMENT_KINDS)})"


def previous_stage_case(column: str) -> str:
    """SQL naming the funnel stage before the one in `column` (NULL outside the funnel)."""
    whens = " ".join(f"WHEN {column} = '{stage}' THEN '{previous_stage(stage)}'" for stage in FUNNEL[1:])
    return f"CASE {whens} END"
