"""The knowledge page's forms: filters, a learning, a merge, a reason, a bead to rank for."""

from typing import Any

from django import forms

from knowledge.models import Learning
from workspace.models import Repository

FRESHNESS = [
    ("", "any"),
    ("fresh", "fresh (confirmed within 4 weeks)"),
    ("fading", "fading (4 to 13 weeks)"),
    ("stale", "stale (over 13 weeks)"),
]


def listed(value: Any) -> list[str]:
    """Comma- or line-separated text as a list (tags, files)."""
    return [item.strip() for item in str(value).replace("\n", ",").split(",") if item.strip()]


class ListField(forms.CharField):
    def prepare_value(self, value: Any) -> Any:
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        return listed(super().to_python(value) or "")


class FilterForm(forms.Form):
    q = forms.CharField(required=False, label="Search", max_length=500)
    repo = forms.ModelChoiceField(
        Repository.objects.all(), required=False, to_field_name="slug", empty_label="any"
    )
    tag = forms.CharField(required=False, max_length=100)
    status = forms.ChoiceField(choices=[("", "any"), *Learning.Status.choices], required=False)
    maturity = forms.ChoiceField(choices=[("", "any"), *Learning.Maturity.choices], required=False)
    freshness = forms.ChoiceField(choices=FRESHNESS, required=False)


class LearningForm(forms.ModelForm):
    tags = ListField(required=False, help_text="comma-separated")
    files = ListField(required=False, help_text="paths, comma-separated")  # type: ignore[assignment]

    class Meta:
        model = Learning
        fields = ["title", "body", "tags", "files", "repository"]


class MergeForm(forms.Form):
    other = forms.IntegerField(label="Merge learning #", min_value=1)


class ReasonForm(forms.Form):
    reason = forms.CharField(required=False, max_length=2000)


class BeadForm(forms.Form):
    bead = forms.CharField(label="Bead", max_length=64)
