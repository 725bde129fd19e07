"""The form that makes a change set: bead ids, or an epic whose children span repositories."""

import re
import shlex
from typing import Any

from django import forms

from agents.moves import changesets
from beads.models import Bead
from workspace.models import Workspace


class ChangeSetForm(forms.Form):
    title = forms.CharField(max_length=500, required=False, help_text="default: the epic's title")
    beads = forms.CharField(
        required=False, max_length=2000, help_text="bead ids, separated by spaces or commas"
    )
    epic = forms.CharField(required=False, max_length=64, help_text="or an epic's id")
    integration_command = forms.CharField(
        required=False,
        max_length=1000,
        help_text="an argv, split like a shell would (never run by one); empty: the workspace's",
    )

    def clean_integration_command(self) -> str:
        value: str = self.cleaned_data["integration_command"]
        try:
            shlex.split(value)
        except ValueError as e:
            raise forms.ValidationError(f"Cannot parse the command: {e}.") from None
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        ids = [i for i in re.split(r"[\s,]+", data.get("beads", "")) if i]
        epic_id = data.get("epic", "").strip()
        if bool(ids) == bool(epic_id):
            raise forms.ValidationError("Name the member beads, or an epic: one of the two.")
        if epic_id:
            self.epic_bead = Bead.objects.select_related("repository").filter(pk=epic_id).first()
            if self.epic_bead is None:
                raise forms.ValidationError({"epic": f"No such bead: {epic_id}."})
            data["members"] = changesets.open_children(self.epic_bead)
            return data
        found = Bead.objects.select_related("repository__workspace").in_bulk(ids)
        if missing := [i for i in ids if i not in found]:
            raise forms.ValidationError({"beads": f"No such bead: {', '.join(missing)}."})
        data["members"] = list(found.values())
        if not data.get("title"):
            raise forms.ValidationError({"title": "Give the change set a title."})
        return data

    def default_title(self) -> str:
        epic = getattr(self, "epic_bead", None)
        return epic.title if epic else ""

    def workspace(self) -> Workspace:
        members = self.cleaned_data["members"]
        return members[0].repository.workspace if members else Workspace.default()
