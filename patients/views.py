"""Portal pages about patients. Every view runs inside the hospital scope opened by
`TenantScopeMiddleware`; patients are loaded with `patient_get(hospital=...)`, so another
hospital's id is a 404. Reads of patient data are audited, writes go through services."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.http import urlencode
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods

from hospitals.decorators import require_action
from hospitals.forms import add_service_errors
from screening import selectors as screening_selectors

from . import selectors, services
from .forms import LabTestForm, PatientForm, PatientSearchForm, StatusChangeForm, patient_initial
from .models import Patient, Status, StatusSource

PAGE_SIZE = 25


def _patient_or_404(request, pk: int) -> Patient:
    try:
        return selectors.patient_get(hospital=request.hospital, pk=pk)
    except Patient.DoesNotExist:
        raise Http404("No such patient.") from None


class CountedPaginator(Paginator):
    """A Paginator given its count (counted by a cheaper query than COUNT of the list).

    `by_ids`: a page is read in two steps, its ids first, then those rows by primary key.
    For a search: the ids come from the list's index alone, which holds the names and the
    MRN the search tests, where a query for whole rows reads every row of the hospital."""

    def __init__(self, object_list, per_page, *, count: int, by_ids: bool = False):
        super().__init__(object_list, per_page)
        self.count = count
        self.by_ids = by_ids

    def _get_page(self, object_list, *args, **kwargs):
        if self.by_ids:
            ids = list(object_list.values_list("pk", flat=True))
            rows = {row.pk: row for row in self.object_list.filter(pk__in=ids)}
            object_list = [rows[pk] for pk in ids if pk in rows]
        return super()._get_page(object_list, *args, **kwargs)


QUICK_FILTERS = [  # (label, query parameters)
    (_("All patients"), {}),
    (_("Infected"), {"status": Status.INFECTED}),
    (_("Carrier"), {"status": Status.CARRIER}),
    (_("Awaiting review"), {"awaiting_review": "on"}),
]


@require_action("patient.view")
def patient_list(request, hospital_slug):
    form = PatientSearchForm(request.GET)
    form.is_valid()
    query = form.cleaned_data.get("q", "")
    status = form.cleaned_data.get("status", "")
    awaiting_review = form.cleaned_data.get("awaiting_review", False)
    filters = {"hospital": request.hospital, "query": query, "status": status, "awaiting_review": awaiting_review}
    paginator = CountedPaginator(selectors.patient_list(**filters), PAGE_SIZE,
                                 count=selectors.patient_list_count(**filters), by_ids=bool(query))
    page = paginator.get_page(request.GET.get("page"))
    # One audit entry per page shown, naming every patient on it.
    selectors.patient_audit_read(request=request, patients=page.object_list, action="list")
    params = request.GET.copy()
    params.pop("page", None)
    # Quick filters keep the search text and replace the other filters.
    current = {"status": status, "awaiting_review": "on" if awaiting_review else ""}
    search = {"q": query} if query else {}
    quick_filters = [
        (label, urlencode({**search, **filters}), all(current[k] == v for k, v in filters.items())
         and not any(v for k, v in current.items() if k not in filters))
        for label, filters in QUICK_FILTERS
    ]
    return render(request, "patients/list.html", {
        "form": form, "page": page, "querystring": params.urlencode(), "quick_filters": quick_filters,
        "filtered": bool(query or status or awaiting_review),
    })


@require_action("patient.create")
@require_http_methods(["GET", "POST"])
def patient_create(request, hospital_slug):
    form = PatientForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            patient = services.patient_create(hospital=request.hospital, actor=request.user, request=request,
                                              **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, gettext("%(name)s was registered as suspected.") % {"name": patient.full_name})
            return redirect("patients:detail", hospital_slug=request.hospital.slug, pk=patient.pk)
    return render(request, "patients/form.html", {"form": form, "patient": None})


@require_action("patient.view")
def patient_detail(request, hospital_slug, pk):
    patient = _patient_or_404(request, pk)
    selectors.patient_audit_read(request=request, patients=[patient], action="view")
    lab_tests = list(selectors.patient_lab_tests(patient=patient))
    screening_records = screening_selectors.patient_screenings(patient=patient, with_scans=True)
    suggestion = selectors.suggested_status(patient=patient, lab_tests=lab_tests)
    return render(request, "patients/detail.html", {
        "patient": patient,
        "timeline": selectors.patient_timeline(patient=patient, lab_tests=lab_tests,
                                               screening_records=screening_records),
        "lab_tests": lab_tests,
        "suggestion": Status(suggestion) if suggestion else None,
        "suggestion_test": lab_tests[0] if suggestion else None,
        "allowed_transitions": [Status(s) for s in patient.allowed_transitions()],
        "screenings": screening_records[0],
    })


@require_action("patient.edit")
@require_http_methods(["GET", "POST"])
def patient_edit(request, hospital_slug, pk):
    patient = _patient_or_404(request, pk)
    if request.method == "POST":
        form = PatientForm(request.POST, initial=patient_initial(patient))
        if form.is_valid():
            try:
                services.patient_update(patient=patient, actor=request.user, request=request, **form.cleaned_data)
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, gettext("The patient's details were saved.") if form.has_changed()
                                 else gettext("Nothing was changed."))
                return redirect("patients:detail", hospital_slug=request.hospital.slug, pk=patient.pk)
    else:
        form = PatientForm(initial=patient_initial(patient))
        # The form shows every demographic field: that is a read of the record.
        selectors.patient_audit_read(request=request, patients=[patient], action="view")
    return render(request, "patients/form.html", {"form": form, "patient": patient})


@require_action("patient.change_status")
@require_http_methods(["GET", "POST"])
def patient_change_status(request, hospital_slug, pk):
    patient = _patient_or_404(request, pk)
    if request.method == "POST":
        form = StatusChangeForm(request.POST, patient=patient)
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.patient_change_status(
                    patient=patient, to_status=data["to_status"], effective_date=data["effective_date"],
                    reason=data["reason"], source=data["source"], lab_test=data["lab_test"],
                    actor=request.user, request=request,
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, gettext("Status changed to %(status)s.")
                                 % {"status": Status(data["to_status"]).label.lower()})
                return redirect("patients:detail", hospital_slug=request.hospital.slug, pk=patient.pk)
    else:
        # Pre-filled from the suggestion link on the patient page; the clinician still decides.
        initial = {}
        if request.GET.get("to_status") in patient.allowed_transitions():
            initial["to_status"] = request.GET["to_status"]
        if request.GET.get("source") in StatusSource.values:
            initial["source"] = request.GET["source"]
        if request.GET.get("lab_test", "").isdigit():
            initial["lab_test"] = int(request.GET["lab_test"])
        form = StatusChangeForm(initial=initial, patient=patient)
        # The page names the patient: a read of the record.
        selectors.patient_audit_read(request=request, patients=[patient], action="view")
    return render(request, "patients/change_status.html", {"form": form, "patient": patient})


@require_action("labtest.create")
@require_http_methods(["GET", "POST"])
def labtest_create(request, hospital_slug, pk):
    patient = _patient_or_404(request, pk)
    form = LabTestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.labtest_create(patient=patient, actor=request.user, request=request, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, gettext("The lab test was recorded."))
            return redirect("patients:detail", hospital_slug=request.hospital.slug, pk=patient.pk)
    if request.method == "GET":  # the page names the patient: a read of the record
        selectors.patient_audit_read(request=request, patients=[patient], action="view")
    return render(request, "patients/labtest_form.html", {"form": form, "patient": patient})
