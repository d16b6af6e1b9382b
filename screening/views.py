"""Portal pages of the screening pipeline: upload X-rays, follow a screening live, read the
AI result, review it, apply the status it suggests, and the hospital's worklist.

Every view runs inside the hospital scope opened by `TenantScopeMiddleware`; objects are
looked up with `hospital=request.hospital`, so another hospital's id is a 404 exactly like
a missing one. Role checks (403) come from `hospitals.permissions.POLICY`. Scan files and
heatmaps are private: they are served only here, never from a media URL, and every view
or download of one is audited."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import (FileResponse, Http404, HttpResponse, HttpResponseNotAllowed, HttpResponseServerError,
                         JsonResponse)
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from hospitals.audit import audit_record
from hospitals.decorators import require_action
from hospitals.forms import add_service_errors
from ml.inference import DISCLAIMER
from patients import selectors as patient_selectors
from patients.models import Patient, Status

from . import selectors, services
from .forms import UNREVIEWED, ApplyStatusForm, ReviewForm, ScanUploadForm, WorklistFilterForm
from .models import AI_DECISIONS, AiLabel, AiResult, Scan, ScanFormat, Screening, ScreeningStatus
from .validation import PNG_SIGNATURE, sniff_format

WORKLIST_PAGE_SIZE = 25
REVIEW_QUEUE_PAGE_SIZE = 25
FROM_QUEUE = "queue"  # a review posted from the review worklist goes back there

# What each state means, in words for the person waiting at the screen.
STATUS_HELP = {
    ScreeningStatus.QUEUED: "Waiting for a screening worker. This page updates by itself.",
    ScreeningStatus.RUNNING: "The model is reading the film. This page updates by itself.",
    ScreeningStatus.DONE: "The model has read the film. A clinician or radiologist should review the result.",
    ScreeningStatus.FAILED: ("The screening could not be completed because of a technical problem. The scan "
                             "itself is stored; nothing is wrong with the patient's record."),
    ScreeningStatus.REJECTED: "The file could not be read as an image, so it was not screened.",
    ScreeningStatus.CANNOT_ASSESS: ("The model cannot assess this image, so it gives no label. This is not a "
                                    "normal result: the film needs a human reading."),
}
EXTENSIONS = {ScanFormat.PNG: "png", ScanFormat.JPEG: "jpg", ScanFormat.DICOM: "dcm"}
ORIGINAL_CONTENT_TYPES = {ScanFormat.DICOM: "application/dicom"}


def _read_only(request) -> HttpResponseNotAllowed | None:
    """405 for anything but GET/HEAD. Called after the object lookup, so another
    hospital's id answers 404 to every method, like a missing one."""
    if request.method in ("GET", "HEAD"):
        return None
    return HttpResponseNotAllowed(["GET", "HEAD"])


def _wants_json(request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _patient_or_404(request, pk: int) -> Patient:
    try:
        return patient_selectors.patient_get(hospital=request.hospital, pk=pk)
    except Patient.DoesNotExist:
        raise Http404("No such patient.") from None


def _screening_or_404(request, pk: int) -> Screening:
    try:
        return selectors.screening_get(hospital=request.hospital, pk=pk)
    except Screening.DoesNotExist:
        raise Http404("No such screening.") from None


def _url(name: str, request, **kwargs) -> str:
    return reverse(name, kwargs={"hospital_slug": request.hospital.slug, **kwargs})


# --- Upload -------------------------------------------------------------------------------------

def _upload_one(request, patient: Patient, upload) -> dict:
    """Validate, store and queue one file; its outcome for the page (or the JSON answer).
    Each file is its own transaction: a bad one does not stop the others."""
    name = upload.name or "file"
    try:
        screening = services.scan_upload(patient=patient, data=upload.read(), uploaded=upload, filename=name,
                                         actor=request.user, request=request)
    except ValidationError as exc:
        return {"filename": name, "ok": False, "error": " ".join(exc.messages)}
    scan = screening.scan
    outcome = {
        "filename": name, "ok": True, "screening_id": screening.pk, "scan_id": scan.pk,
        "status": screening.status,
        "screening_url": _url("screening:detail", request, pk=screening.pk),
        "status_url": _url("screening:status", request, pk=screening.pk),
        "duplicate_of": scan.duplicate_of_id,
        "message": f"{name}: stored and queued for screening (screening #{screening.pk}).",
    }
    if scan.is_duplicate:
        outcome["warning"] = f"{name}: same file as scan #{scan.duplicate_of_id} uploaded earlier."
    return outcome


@require_action("scan.upload")
@require_http_methods(["GET", "POST"])
def upload(request, hospital_slug, patient_pk):
    """Several files at once. With `Accept: application/json` (the page's script, which
    shows upload progress) the answer is a JSON list of outcomes, one per file; without
    it the outcomes become messages on the patient's page."""
    patient = _patient_or_404(request, patient_pk)
    patient_url = _url("patients:detail", request, pk=patient.pk)
    if request.method == "POST":
        form = ScanUploadForm(request.POST, request.FILES)
        if form.is_valid():
            outcomes = [_upload_one(request, patient, f) for f in form.cleaned_data["files"]]
            stored = sum(o["ok"] for o in outcomes)
            if _wants_json(request):
                return JsonResponse({"patient_url": patient_url, "stored": stored, "failed": len(outcomes) - stored,
                                     "files": outcomes}, status=200 if stored else 400)
            for o in outcomes:
                if o["ok"]:
                    messages.success(request, o["message"])
                    if "warning" in o:
                        messages.warning(request, o["warning"])
                else:
                    messages.error(request, o["error"])
            return redirect(patient_url)
        if _wants_json(request):
            errors = [str(e) for errors in form.errors.values() for e in errors]
            return JsonResponse({"patient_url": patient_url, "stored": 0, "failed": 0, "files": [],
                                 "errors": errors}, status=400)
    else:
        form = ScanUploadForm()
        # The page names the patient: a read of the record.
        patient_selectors.patient_audit_read(request=request, patients=[patient], action="view")
    return render(request, "screening/upload.html", {"form": form, "patient": patient})


# --- Screening page and its live status --------------------------------------------------------

def _probability_rows(result: AiResult) -> list[dict]:
    probabilities = result.probabilities or {}
    rows = []
    for key, value in probabilities.items():
        label = AiLabel(key).label if key in AiLabel.values else key
        rows.append({"key": key, "label": label, "value": float(value), "percent": round(float(value) * 100, 1),
                     "top": key == result.label})
    order = {key: i for i, key in enumerate(AiLabel.values)}
    return sorted(rows, key=lambda r: order.get(r["key"], len(order)))


def _live_context(request, screening: Screening, *, review_form=None, apply_form=None) -> dict:
    """What the live part of the screening page shows; the page and the status JSON
    render the same templates from it."""
    result = selectors.screening_result(screening=screening)
    reviews = list(screening.reviews.select_related("reviewer").order_by("-reviewed_at", "-id"))
    suggestion = selectors.status_suggestion(screening=screening) if reviews else None
    if review_form is None and result is not None:
        review_form = ReviewForm()
    return {
        "screening": screening,
        "scan": screening.scan,
        "patient": screening.patient,
        "result": result,
        "probabilities": _probability_rows(result) if result else [],
        "decision_display": AI_DECISIONS.get(result.decision, result.decision.replace("_", " ")) if result else "",
        "status_help": STATUS_HELP.get(screening.status, ""),
        "reviews": reviews,
        "review_form": review_form,
        "suggestion": suggestion,
        "suggestion_status": Status(suggestion.to_status) if suggestion else None,
        "apply_form": apply_form or (ApplyStatusForm() if suggestion else None),
        "disclaimer": DISCLAIMER,
        "status_url": _url("screening:status", request, pk=screening.pk),
    }


def _figure_key(context: dict) -> str:
    result = context["result"]
    return f"{context['scan'].pk}-{result.pk if result and result.heatmap else 0}"


def _render_detail(request, screening: Screening, **forms):
    context = _live_context(request, screening, **forms)
    context["figure_key"] = _figure_key(context)
    return render(request, "screening/detail.html", context)


@require_action("screening.view")
def detail(request, hospital_slug, pk):
    screening = _screening_or_404(request, pk)
    if refused := _read_only(request):
        return refused
    audit_record(action="view", object_type="screening", object_id=screening.pk, hospital=request.hospital,
                 request=request, detail={"patient": screening.patient_id})
    return _render_detail(request, screening)


def _result_json(request, result: AiResult | None) -> dict | None:
    if result is None:
        return None
    return {
        "id": result.pk,
        "label": result.label,
        "label_display": result.get_label_display(),
        "probabilities": {key: float(value) for key, value in (result.probabilities or {}).items()},
        "covid_probability": result.covid_probability,
        "covid_positive": result.covid_positive,
        "threshold": result.threshold,
        "decision": result.decision,
        "decision_display": AI_DECISIONS.get(result.decision, result.decision),
        "model_name": result.model_name,
        "model_version": result.model_version,
        "model_sha256_prefix": result.model_sha256[:12],
        "preprocessing_version": result.preprocessing_version,
        "heatmap_url": _url("screening:heatmap", request, pk=result.pk) if result.heatmap else None,
        "disclaimer": DISCLAIMER,
    }


@require_action("screening.view")
def status(request, hospital_slug, pk):
    """The screening's state for the page's poller (every ~1.5 s until `final`), with the
    live parts of the page rendered, so the page updates without a reload.

    Only the answer that carries a final state (and so the result) is audited: the
    states before it hold no clinical data, and auditing every poll would bury the trail."""
    screening = _screening_or_404(request, pk)
    if refused := _read_only(request):
        return refused
    context = _live_context(request, screening)
    if screening.is_final:
        audit_record(action="view", object_type="screening", object_id=screening.pk, hospital=request.hospital,
                     request=request, detail={"patient": screening.patient_id, "via": "status"})
    figure_key = _figure_key(context)
    context["figure_key"] = figure_key
    response = JsonResponse({
        "id": screening.pk,
        "status": screening.status,
        "status_label": screening.get_status_display(),
        "final": screening.is_final,
        "reason": screening.reason if screening.status != ScreeningStatus.DONE else "",
        "status_help": context["status_help"],
        "result": _result_json(request, context["result"]),
        "reviews": len(context["reviews"]),
        "html": render_to_string("screening/_live.html", context, request=request),
        "figure_key": figure_key,
        "figure_html": render_to_string("screening/_figure.html", context, request=request),
    })
    response["Cache-Control"] = "private, no-store"
    return response


@require_action("screening.review")
@require_http_methods(["GET", "POST"])
def review(request, hospital_slug, pk):
    """POST a review of the screening's AI result (GET goes back to the screening page)."""
    screening = _screening_or_404(request, pk)
    detail_url = _url("screening:detail", request, pk=screening.pk)
    if request.method != "POST":
        return redirect(detail_url)
    from_queue = request.POST.get("from") == FROM_QUEUE
    result = selectors.screening_result(screening=screening)
    if result is None:
        messages.error(request, "There is no AI result to review yet.")
        return redirect(detail_url)
    form = ReviewForm(request.POST)
    if form.is_valid():
        try:
            services.review_create(result=result, actor=request.user, request=request, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Your review of screening #{screening.pk} was recorded."
                             if from_queue else "Your review was recorded.")
            return redirect(_url("screening:review_queue", request) if from_queue else detail_url)
    if from_queue:
        return _render_queue(request, selected_pk=screening.pk, review_form=form)
    return _render_detail(request, screening, review_form=form)


@require_action("patient.change_status")
@require_http_methods(["GET", "POST"])
def apply_status(request, hospital_slug, pk):
    """POST: record the status the reviewed screening suggests, through the status
    machine, with source "screening review". The clinician decides; nothing is automatic."""
    screening = _screening_or_404(request, pk)
    detail_url = _url("screening:detail", request, pk=screening.pk)
    if request.method != "POST":
        return redirect(detail_url)
    form = ApplyStatusForm(request.POST)
    if form.is_valid():
        try:
            change = services.screening_apply_suggestion(
                screening=screening, actor=request.user, request=request,
                effective_date=form.cleaned_data["effective_date"], note=form.cleaned_data["note"],
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect(detail_url)
        messages.success(request, f"Status changed to {Status(change.to_status).label.lower()}.")
        return redirect(detail_url)
    return _render_detail(request, screening, apply_form=form)


# --- Worklist -----------------------------------------------------------------------------------

@require_action("screening.view")
def worklist(request, hospital_slug):
    """The hospital's screenings, newest first; "done, not reviewed" is the reading queue."""
    if refused := _read_only(request):
        return refused
    form = WorklistFilterForm(request.GET)
    show = form.cleaned_data.get("show", "") if form.is_valid() else ""
    screenings = selectors.screening_worklist(hospital=request.hospital, status=show,
                                              unreviewed=show == UNREVIEWED)
    page = Paginator(screenings, WORKLIST_PAGE_SIZE).get_page(request.GET.get("page"))
    page.object_list = list(page.object_list)
    selectors.prefetch_results(page.object_list)
    selectors.prefetch_reviews(page.object_list)
    patients = list({s.patient_id: s.patient for s in page.object_list}.values())
    if patients:
        patient_selectors.patient_audit_read(request=request, patients=patients, action="list")
    params = request.GET.copy()
    params.pop("page", None)
    return render(request, "screening/worklist.html", {
        "form": form, "page": page, "querystring": params.urlencode(), "filtered": bool(show),
    })


# --- Review worklist ----------------------------------------------------------------------------

def _queue_signature(screenings) -> str:
    return ",".join(str(s.pk) for s in screenings)


def _render_queue(request, *, selected_pk: int | None = None, review_form=None):
    """The review worklist: the reading queue beside the selected screening (its film,
    the AI output and the review form). With htmx, the page asks for one part of itself:
    `HX-Target: review-queue` (the periodic refresh of the list; 204 when it shows the
    same screenings as the page already does, so nothing is re-read or audited) or
    `HX-Target: reading-pane` (another screening picked with the keyboard or a click)."""
    page = Paginator(selectors.review_queue(hospital=request.hospital),
                     REVIEW_QUEUE_PAGE_SIZE).get_page(request.GET.get("page"))
    items = list(page.object_list)
    signature = _queue_signature(items)
    target = request.headers.get("HX-Target", "") if request.headers.get("HX-Request") == "true" else ""
    if target == "review-queue" and request.GET.get("shown") == signature:
        return HttpResponse(status=204)
    selectors.prefetch_results(items)
    selected = next((s for s in items if s.pk == selected_pk), items[0] if items else None)
    context = {"page": page, "items": items, "signature": signature, "selected": selected,
               "querystring": "", "disclaimer": DISCLAIMER, "from_queue": FROM_QUEUE}
    if target != "reading-pane" and items:
        patient_selectors.patient_audit_read(request=request, patients=list({s.patient_id: s.patient
                                                                             for s in items}.values()),
                                             action="list")
    if target != "review-queue" and selected is not None:
        result = selected.prefetched_results[0]
        context.update(scan=selected.scan, result=result, screening=selected, patient=selected.patient,
                       probabilities=_probability_rows(result),
                       decision_display=AI_DECISIONS.get(result.decision, result.decision.replace("_", " ")),
                       review_form=review_form or ReviewForm(initial={"clinical_label": result.label}))
        audit_record(action="view", object_type="screening", object_id=selected.pk, hospital=request.hospital,
                     request=request, detail={"patient": selected.patient_id, "via": "review worklist"})
    template = {"review-queue": "screening/_queue_list.html",
                "reading-pane": "screening/_reading_pane.html"}.get(target, "screening/review_queue.html")
    response = render(request, template, context)
    response["Cache-Control"] = "private, no-store"
    return response


@require_action("screening.view")
def review_queue(request, hospital_slug):
    """Screenings waiting for review, the highest COVID-19 probability first, then the
    longest waiting; `?screening=<id>` picks the one shown beside the list."""
    if refused := _read_only(request):
        return refused
    try:
        selected_pk = int(request.GET.get("screening", ""))
    except ValueError:
        selected_pk = None
    return _render_queue(request, selected_pk=selected_pk)


# --- Private files ------------------------------------------------------------------------------

def _open_or_404(fieldfile):
    """The stored file, opened for reading; 404 when none is recorded or it is missing."""
    if not fieldfile:
        raise Http404("No such file.")
    try:
        return fieldfile.open("rb")
    except FileNotFoundError:
        raise Http404("No such file.") from None


def _file_response(handle, *, filename: str, content_type: str) -> FileResponse:
    """A private file as an attachment with a server-made name and a fixed type: the
    browser neither sniffs it into something active nor keeps a copy."""
    response = FileResponse(handle, as_attachment=True, filename=filename, content_type=content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response


def _scan_or_404(request, pk: int) -> Scan:
    try:
        return selectors.scan_get(hospital=request.hospital, pk=pk)
    except Scan.DoesNotExist:
        raise Http404("No such scan.") from None


@require_action("screening.view")
def scan_original(request, hospital_slug, pk):
    """The file as uploaded (a DICOM keeps its header, which may hold PHI: every role that
    may see the screening may see the patient, and the download is audited as an export)."""
    scan = _scan_or_404(request, pk)
    if refused := _read_only(request):
        return refused
    if scan.file and scan.file.storage.exists(scan.file.name) and not services.scan_file_intact(scan=scan):
        return HttpResponseServerError("The stored file failed its integrity check (checksum) and was not served; "
                                       "it must be restored from backup.", content_type="text/plain")
    response = _file_response(_open_or_404(scan.file),
                              filename=f"scan-{scan.pk}.{EXTENSIONS.get(scan.format, 'bin')}",
                              content_type=ORIGINAL_CONTENT_TYPES.get(scan.format, "application/octet-stream"))
    audit_record(action="export", object_type="scan", object_id=scan.pk, hospital=request.hospital, request=request,
                 detail={"patient": scan.patient_id, "file": "original"})
    return response


@require_action("screening.view")
def scan_preview(request, hospital_slug, pk):
    scan = _scan_or_404(request, pk)
    if refused := _read_only(request):
        return refused
    response = _file_response(_open_or_404(scan.preview), filename=f"scan-{scan.pk}-preview.png",
                              content_type="image/png")
    audit_record(action="view", object_type="scan", object_id=scan.pk, hospital=request.hospital, request=request,
                 detail={"patient": scan.patient_id, "file": "preview"})
    return response


@require_action("screening.view")
def heatmap(request, hospital_slug, pk):
    try:
        result = selectors.result_get(hospital=request.hospital, pk=pk)
    except AiResult.DoesNotExist:
        raise Http404("No such result.") from None
    if refused := _read_only(request):
        return refused
    scan_id = result.screening.scan_id
    handle = _open_or_404(result.heatmap)
    # JPEG; results stored before overlays were JPEG keep their PNG.
    jpeg = sniff_format(handle.read(len(PNG_SIGNATURE))) == "JPEG"
    handle.seek(0)
    response = _file_response(handle, filename=f"scan-{scan_id}-heatmap.{'jpg' if jpeg else 'png'}",
                              content_type="image/jpeg" if jpeg else "image/png")
    audit_record(action="view", object_type="scan", object_id=scan_id, hospital=request.hospital, request=request,
                 detail={"patient": result.patient_id, "file": "heatmap", "result": result.pk})
    return response
