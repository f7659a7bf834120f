"""Admin pages of file imports: upload -> mapping -> preview -> progress and summary (contacts.imports).

The import list is the ImportJob change list; "Add" is the upload. Each step is a page of its own
with a plain form, and the progress page polls a small JSON view while the task runs.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from contacts import imports
from contacts.models import ENRICHMENT_KINDS, ImportJob, ImportKind, ImportMapping, ImportStatus, PropertyDefinition
from crmseg_site.access import signed_in_user

KIND_CHOICES = [
    ("Records (created or updated)", [(k, label) for k, label in ImportKind.choices if k not in ENRICHMENT_KINDS]),
    ("Enrichment (fills stored records, creates none)", [(k, label) for k, label in ImportKind.choices
                                                         if k in ENRICHMENT_KINDS]),
]  # fmt: skip


class UploadForm(forms.Form):
    kind = forms.ChoiceField(choices=KIND_CHOICES, label="What the file holds")
    file = forms.FileField(
        help_text="CSV (any delimiter, UTF-8 or Latin-1) or Excel workbook (.xlsx); first row: column names"
    )


class MappingForm(forms.Form):
    save_as = forms.CharField(
        max_length=200, required=False, label="Save this mapping as", help_text="Offered again for the next file"
    )
    overwrite_captured = forms.BooleanField(
        required=False,
        label="Overwrite captured values",
        help_text="Off: a value someone typed or imported stays, and only empty or enriched values are filled. "
        "On: the file's values replace captured ones too. An empty cell never clears anything.",
    )
    OPTIONS = ("save_as", "overwrite_captured")

    def __init__(self, *args, job: ImportJob, mapping: dict[str, str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.job = job
        if job.is_enrichment:
            self.fields["overwrite_captured"].initial = job.overwrite_captured
        else:
            del self.fields["overwrite_captured"]
        choices = [("", "— ignore this column —"), *imports.targets(job.kind, PropertyDefinition.objects.all()).items()]
        self.columns = []
        for index, header in enumerate(job.headers):
            name = f"column_{index}"
            initial = mapping.get(header, "")
            self.fields[name] = forms.ChoiceField(choices=choices, required=False, label=header, initial=initial)
            self.columns.append((header, name))

    def mapping(self) -> dict[str, str]:
        return {header: self.cleaned_data[name] for header, name in self.columns}

    def column_fields(self) -> list[forms.BoundField]:
        return [self[name] for _header, name in self.columns]

    def clean(self) -> dict:
        super().clean()
        cleaned = self.cleaned_data
        if not self.errors:
            for problem in imports.check_mapping(self.job.kind, self.job.headers, self.mapping()):
                self.add_error(None, problem)
        return cleaned


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ["file_name", "kind", "status", "rows_done", "created", "updated", "unchanged", "rejected", "kept",
                    "created_by", "created_at", "next_step"]  # fmt: skip
    list_filter = ["kind", "status"]
    list_select_related = ["created_by"]
    search_fields = ["file_name", "=checksum"]
    readonly_fields = [f.name for f in ImportJob._meta.fields]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="")
    def next_step(self, job: ImportJob) -> str:
        step = "mapping" if job.status == ImportStatus.MAPPING else "progress"
        label = "Map columns →" if step == "mapping" else "Progress and summary →"
        return format_html('<a href="{}">{}</a>', reverse(f"admin:contacts_importjob_{step}", args=[job.pk]), label)

    def get_urls(self):
        def view(function, name: str, route: str):
            return path(route, self.admin_site.admin_view(function), name=f"contacts_importjob_{name}")

        return [
            view(self.mapping_view, "mapping", "<int:job_id>/mapping/"),
            view(self.preview_view, "preview", "<int:job_id>/preview/"),
            view(self.progress_view, "progress", "<int:job_id>/progress/"),
            view(self.status_view, "status", "<int:job_id>/status/"),
            view(self.errors_view, "errors", "<int:job_id>/errors.csv"),
            *super().get_urls(),
        ]

    def _job(self, request: HttpRequest, job_id: int, *, write: bool = False) -> ImportJob:
        if not (self.has_add_permission(request) if write else self.has_view_permission(request)):
            raise PermissionDenied
        return get_object_or_404(ImportJob, pk=job_id)

    def _context(self, request: HttpRequest, job: ImportJob | None, title: str, **extra) -> dict:
        return {**self.admin_site.each_context(request), "opts": self.model._meta, "job": job, "title": title, **extra}

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                job = imports.start_import(form.cleaned_data["file"], kind=form.cleaned_data["kind"], user=request.user)
            except imports.ImportRefused as error:
                form.add_error("file", str(error))
            else:
                return HttpResponseRedirect(reverse("admin:contacts_importjob_mapping", args=[job.pk]))
        ctx = self._context(request, None, "Import a file", form=form)
        return TemplateResponse(request, "admin/contacts/importjob/upload.html", ctx)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        job = self._job(request, int(object_id))
        step = "mapping" if job.status == ImportStatus.MAPPING else "progress"
        return HttpResponseRedirect(reverse(f"admin:contacts_importjob_{step}", args=[job.pk]))

    def mapping_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        job = self._job(request, job_id, write=True)
        if job.status != ImportStatus.MAPPING:
            return HttpResponseRedirect(reverse("admin:contacts_importjob_progress", args=[job.pk]))
        saved = ImportMapping.objects.filter(kind=job.kind)
        mapping = job.mapping
        if chosen := request.GET.get("use"):
            stored = saved.filter(pk=chosen).first()
            if stored:
                mapping = {h: stored.columns.get(h, "") for h in job.headers}
        form = MappingForm(request.POST or None, job=job, mapping=mapping)
        if request.method == "POST" and form.is_valid():
            job.mapping = form.mapping()
            job.overwrite_captured = job.is_enrichment and form.cleaned_data.get("overwrite_captured", False)
            job.save(update_fields=["mapping", "overwrite_captured"])
            if name := form.cleaned_data["save_as"].strip():
                ImportMapping.objects.update_or_create(
                    kind=job.kind, name=name, defaults={"columns": job.mapping, "created_by": signed_in_user(request)}
                )
                self.message_user(request, f"Mapping saved as {name!r}.")
            return HttpResponseRedirect(reverse("admin:contacts_importjob_preview", args=[job.pk]))
        declared = {p.key for p in PropertyDefinition.objects.all()}
        undeclared = [h for h in job.headers if not mapping.get(h) and imports.property_key(h) not in declared]
        ctx = self._context(
            request, job, f"Map the columns of {job.file_name}", form=form, saved=saved, undeclared=undeclared,
            declare_url=reverse("admin:contacts_propertydefinition_add"),
        )  # fmt: skip
        return TemplateResponse(request, "admin/contacts/importjob/mapping.html", ctx)

    def preview_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        job = self._job(request, job_id, write=True)
        if request.method == "POST":
            with transaction.atomic():
                queued = imports.queue_import(job)
            if not queued:
                self.message_user(request, "This import was started already.", messages.WARNING)
            return HttpResponseRedirect(reverse("admin:contacts_importjob_progress", args=[job.pk]))
        rows = imports.preview(job)
        columns = [(h, job.mapping.get(h, "")) for h in job.headers]
        ignored = [h for h, target in columns if not target]
        ctx = self._context(request, job, f"Preview of {job.file_name}", rows=rows, columns=columns, ignored=ignored)
        return TemplateResponse(request, "admin/contacts/importjob/preview.html", ctx)

    def progress_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        job = self._job(request, job_id)
        if request.method == "POST" and request.POST.get("cancel"):
            if not self.has_add_permission(request):
                raise PermissionDenied
            if imports.cancel_import(job):
                self.message_user(request, "Cancelling: the import stops after the rows it is writing now.")
            return HttpResponseRedirect(request.path)
        ctx = self._context(request, job, f"Import of {job.file_name}", status=status_of(job))
        return TemplateResponse(request, "admin/contacts/importjob/progress.html", ctx)

    def status_view(self, request: HttpRequest, job_id: int) -> JsonResponse:
        return JsonResponse(status_of(self._job(request, job_id)))

    def errors_view(self, request: HttpRequest, job_id: int) -> FileResponse:
        job = self._job(request, job_id)
        path_ = imports.error_file_path(job)
        if not path_.exists():
            raise Http404("This import has no error file (yet).")
        name = f"{job.file_name.rsplit('.', 1)[0]}-errors.csv"
        return FileResponse(open(path_, "rb"), as_attachment=True, filename=name, content_type="text/csv")


def status_of(job: ImportJob) -> dict:
    """Progress figures for the page and its polling: rows done, rows/s, time left."""
    job.refresh_from_db()
    elapsed = ((job.finished_at or timezone.now()) - job.started_at).total_seconds() if job.started_at else 0
    rate = job.rows_done / elapsed if elapsed > 0 else 0
    left = None
    if rate and 0 < job.progress < 1 and not job.is_finished:
        left = round(elapsed * (1 - job.progress) / job.progress)
    segment_url = reverse("admin:segments_segment_change", args=[job.segment_id]) if job.segment_id else ""
    return {
        "status": job.status, "status_label": job.get_status_display(), "finished": job.is_finished,
        "percent": round(job.progress * 100, 1), "rows_done": job.rows_done, "rows_per_second": round(rate),
        "seconds_left": left, "created": job.created, "updated": job.updated, "unchanged": job.unchanged,
        "rejected": job.rejected, "kept": job.kept, "message": job.message, "segment_url": segment_url,
        "segment_name": job.segment_name if job.segment_id else "",
        "errors_url": reverse("admin:contacts_importjob_errors", args=[job.pk]) if job.rejected else "",
    }  # fmt: skip
