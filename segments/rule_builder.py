"""The rule builder on the segment change form: a widget over the rule's JSON textarea.

The textarea stays the form field (the JSON is what is saved and what power users edit); the
static script rule-builder.js draws the tree of groups and conditions from it and writes every
change back. What the builder offers comes from the field registry through `builder_catalog()`.
"""

import json

from django import forms
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe

from contacts.models import ActivityKind, Layer
from crmseg_site.untrusted_json import JSONFormField
from segments.models import Segment, SegmentStatus
from segments.rules.registry import TYPES, get_fields, operators_for
from segments.rules.validation import EVENT_OPS
from segments.rules.wording import operator_controls


def builder_catalog() -> dict:
    """Fields grouped by layer (in the layers' order), operators per type and their words (the wording
    table's, segments/rules/wording.py), event kinds, segments."""
    fields = get_fields().values()
    layers = [
        {
            "layer": layer.value,
            "label": layer.label,
            "fields": [
                {
                    "path": f.path,
                    "label": f.label,
                    "type": f.type,
                    "choices": list(f.choices),
                    "choice_labels": [f.choice_label(choice) for choice in f.choices],
                }
                for f in fields
                if f.layer == layer.value
            ],
        }
        for layer in Layer
    ]
    return {
        "layers": [group for group in layers if group["fields"]],
        "operators": {type: list(operators_for(type)) for type in TYPES},
        "operator_words": operator_controls(),
        "event_kinds": [[value, label] for value, label in ActivityKind.choices],
        "event_ops": list(EVENT_OPS),
        "segments": [
            [slug, name]
            for slug, name in Segment.objects.exclude(status=SegmentStatus.ARCHIVED)
            .order_by("name")
            .values_list("slug", "name")
        ],
    }


class RuleBuilderWidget(forms.Textarea):
    template_name = "segments/widgets/rule_builder.html"

    class Media:
        css = {"all": ["crmseg/rule-builder.css"]}
        js = ["crmseg/rule-builder.js"]

    def __init__(self, attrs: dict | None = None) -> None:
        super().__init__({"rows": 14, "cols": 100, "spellcheck": "false", "class": "vLargeTextField", **(attrs or {})})
        self.segment_id: int | None = None  # the saved segment being edited: the preview adds the change's impact

    def get_context(self, name, value, attrs) -> dict:
        ctx = super().get_context(name, value, attrs)
        ctx["widget"].update(
            catalog=builder_catalog(),
            preview_url=reverse("segments-rule-preview"),
            explain_url=reverse("segments-rule-explain"),
            segment_id=self.segment_id or "",
        )
        return ctx

    def _render(self, template_name: str, context: dict, renderer=None) -> SafeString:
        # The project's template engine (templates/ at the root), not the form renderer's, which
        # only looks inside apps.
        return mark_safe(render_to_string(template_name, context))


class RuleField(JSONFormField):
    """The rule as indented JSON, so a person can read and edit it."""

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False) if value is not None else ""
