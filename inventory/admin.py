"""The inventory in the admin: an admin uploads an inventory file (the add form);
loads and the runners of the one in force are records, never edited by hand."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

from controlplane.admin import ReadOnlyAdmin
from inventory.expected import FORMATS, read
from inventory.hosts import InventoryError
from inventory.loading import decode, load_text
from inventory.models import ExpectedRunner, InventoryLoad
from runners.admin import HistoryAdmin

if TYPE_CHECKING:
    _ModelForm = forms.ModelForm[InventoryLoad]
else:  # ModelForm is generic only in django-stubs
    _ModelForm = forms.ModelForm


class UploadForm(_ModelForm):
    """The inventory file and how to read it; a file that cannot be read is a form
    error naming its line, and nothing is replaced."""

    file = forms.FileField(
        help_text="Ansible INI or YAML inventory, or one runner name per line."
    )
    format = forms.ChoiceField(
        choices=[(f, f) for f in FORMATS],
        initial="auto",
        help_text="auto: YAML for .yml/.yaml files and YAML mappings, else INI.",
    )

    class Meta:
        model = InventoryLoad
        fields: list[str] = []

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        upload = data.get("file")
        if upload is None:
            return data
        try:
            data["text"] = decode(upload.read())
            read(data["text"], data.get("format", "auto"), filename=upload.name)
        except InventoryError as exc:
            raise forms.ValidationError({"file": str(exc)}) from None
        return data


@admin.register(InventoryLoad)
class InventoryLoadAdmin(HistoryAdmin):
    list_display = ["loaded_at", "source", "actor_name", "fmt", "hosts", "accepted"]
    list_filter = ["source", "accepted"]
    readonly_fields = [
        "source",
        "loaded_at",
        "actor_name",
        "filename",
        "fmt",
        "digest",
        "accepted",
        "error",
        "error_line",
        "hosts",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return True

    def has_delete_permission(
        self, request: HttpRequest, obj: Model | None = None
    ) -> bool:
        return False

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kw: Any
    ) -> Any:
        if obj is None:
            return UploadForm
        return super().get_form(request, obj, change, **kw)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields if obj is not None else []

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields if obj is not None else ["file", "format"]

    def save_model(
        self, request: HttpRequest, obj: InventoryLoad, form: Any, change: bool
    ) -> None:
        """Load the upload (audited ``inventory.load``): the admin's own row is the
        load made."""
        data = form.cleaned_data
        load = load_text(
            data["text"],
            data["format"],
            source=InventoryLoad.Source.UPLOAD,
            actor=request.user,
            filename=data["file"].name,
        )
        for field in InventoryLoad._meta.concrete_fields:
            setattr(obj, field.attname, getattr(load, field.attname))


@admin.register(ExpectedRunner)
class ExpectedRunnerAdmin(ReadOnlyAdmin):
    """The runners the inventory in force expects."""

    list_display = ["name", "host", "labels", "groups", "line"]
    search_fields = ["name", "host"]
