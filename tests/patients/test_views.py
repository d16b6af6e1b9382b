"""Portal pages about patients: roles, tenancy, forms, search, pagination and read audits."""

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from hospitals.models import AuditEvent, Role
from patients import selectors, services
from patients.models import Patient, Status, StatusChange, StatusSource
from tests.factories import LabTestFactory, PatientFactory

ALL_ROLES = list(Role.values)
TODAY = datetime.date.today


@pytest.fixture
def patient(hospital_a, make_member):
    registrar = make_member(hospital_a, Role.REGISTRAR)
    with scope(hospital=hospital_a):
        return services.patient_create(hospital=hospital_a, actor=registrar, mrn="A-100", given_name="Ada",
                                       family_name="Lovelace", sex="female", birth_date=datetime.date(1980, 1, 2))


@pytest.fixture
def foreign_patient(hospital_b, make_member):
    registrar = make_member(hospital_b, Role.REGISTRAR)
    with scope(hospital=hospital_b):
        return services.patient_create(hospital=hospital_b, actor=registrar, mrn="B-100", given_name="Bob",
                                       family_name="Foreign", sex="male", birth_date=datetime.date(1970, 1, 2))


def url(name, hospital, **kwargs):
    return reverse(f"patients:{name}", kwargs={"hospital_slug": hospital.slug, **kwargs})


def audit_events(hospital, **filters):
    with scopes_disabled():
        return list(AuditEvent.objects.filter(hospital=hospital, **filters).order_by("seq"))


def patient_form_data(**overrides):
    data = {"mrn": "NEW-1", "given_name": "Grace", "family_name": "Hopper", "sex": "female",
            "birth_date": "1960-12-09", "phone": "", "email": "", "address": "", "national_id": ""}
    data.update(overrides)
    return data


# --- Who may open which page --------------------------------------------------------------

PAGES = [  # (url name, needs a patient, roles allowed)
    ("list", False, ALL_ROLES),
    ("create", False, [Role.HOSPITAL_ADMIN, Role.REGISTRAR]),
    ("detail", True, ALL_ROLES),
    ("edit", True, [Role.HOSPITAL_ADMIN, Role.REGISTRAR]),
    ("change_status", True, [Role.CLINICIAN]),
    ("labtest_create", True, [Role.CLINICIAN, Role.REGISTRAR]),
]


@pytest.mark.parametrize("role", ALL_ROLES)
@pytest.mark.parametrize("name,needs_patient,allowed", PAGES)
def test_page_access_per_role(name, needs_patient, allowed, role, hospital_a, patient, make_member, login):
    client = login(make_member(hospital_a, role))
    kwargs = {"pk": patient.pk} if needs_patient else {}
    response = client.get(url(name, hospital_a, **kwargs))
    assert response.status_code == (200 if role in allowed else 403)


@pytest.mark.parametrize("name,needs_patient,allowed", PAGES)
def test_non_member_gets_404(name, needs_patient, allowed, hospital_a, hospital_b, patient, make_member, login):
    client = login(make_member(hospital_b, Role.HOSPITAL_ADMIN))
    kwargs = {"pk": patient.pk} if needs_patient else {}
    assert client.get(url(name, hospital_a, **kwargs)).status_code == 404


@pytest.mark.parametrize("name", ["detail", "edit", "change_status", "labtest_create"])
def test_other_hospitals_patient_is_404(name, hospital_a, foreign_patient, make_member, login):
    """A member of A asking for B's patient through A's URL gets 404, never the record."""
    client = login(make_member(hospital_a, Role.HOSPITAL_ADMIN if name == "edit" else Role.CLINICIAN))
    assert client.get(url(name, hospital_a, pk=foreign_patient.pk)).status_code == 404


def test_anonymous_is_sent_to_login(hospital_a, client):
    response = client.get(url("list", hospital_a))
    assert response.status_code == 302
    assert reverse("account_login") in response["Location"]


# --- List: search, filter, pagination, audit ----------------------------------------------

@pytest.fixture
def many_patients(hospital_a):
    with scopes_disabled():
        for i in range(30):
            PatientFactory(hospital=hospital_a, mrn=f"P{i:03d}", given_name=f"Given{i:02d}",
                           family_name="Zed", status=Status.INFECTED if i % 3 == 0 else Status.SUSPECTED)
        PatientFactory(hospital=hospital_a, mrn="X-77", given_name="Unique", family_name="Searchable")


def test_list_paginates_25_per_page_and_audits_the_page(hospital_a, many_patients, make_member, login):
    viewer = make_member(hospital_a, Role.VIEWER)
    client = login(viewer)
    first = client.get(url("list", hospital_a))
    assert len(first.context["page"].object_list) == 25
    assert first.context["page"].paginator.count == 31
    second = client.get(url("list", hospital_a), {"page": 2})
    assert len(second.context["page"].object_list) == 6
    lists = audit_events(hospital_a, action="list", object_type="patient", actor=viewer)
    assert len(lists) == 2
    assert sorted(lists[0].detail["patients"]) == sorted(p.pk for p in first.context["page"].object_list)
    assert sorted(lists[1].detail["patients"]) == sorted(p.pk for p in second.context["page"].object_list)


def test_list_search_by_name_and_mrn(hospital_a, many_patients, make_member, login):
    client = login(make_member(hospital_a, Role.VIEWER))
    by_name = client.get(url("list", hospital_a), {"q": "searchable"})
    assert [p.mrn for p in by_name.context["page"]] == ["X-77"]
    assert b"Searchable, Unique" in by_name.content
    by_mrn = client.get(url("list", hospital_a), {"q": "x-77"})
    assert [p.mrn for p in by_mrn.context["page"]] == ["X-77"]
    none = client.get(url("list", hospital_a), {"q": "nobody-like-this"})
    assert none.context["page"].paginator.count == 0
    assert b"No patients match" in none.content


def test_search_pages_keep_the_lists_order_and_read_only_their_rows(hospital_a, many_patients, make_member,
                                                                    login):
    """A search's page is read as its ids, then those rows by primary key: the pages hold
    what the list holds, in its order, each row with its review flag."""
    with scopes_disabled():
        PatientFactory(hospital=hospital_a, mrn="Z-1", given_name="Aaron", family_name="Zed")  # sorts first
        expected = list(selectors.patient_list(hospital=hospital_a, query="zed").values_list("pk", flat=True))
    client = login(make_member(hospital_a, Role.VIEWER))
    with CaptureQueriesContext(connection) as queries:
        first = client.get(url("list", hospital_a), {"q": "zed"})
    rows = [q["sql"] for q in queries.captured_queries if "given_name" in q["sql"].split(" FROM ")[0]]
    assert len(rows) == 1 and " IN (" in rows[0], rows  # the page's rows, by primary key
    second = client.get(url("list", hospital_a), {"q": "zed", "page": 2})
    listed = [p.pk for p in first.context["page"]] + [p.pk for p in second.context["page"]]
    assert len(listed) == 31 and listed == expected
    assert all(hasattr(p, "awaiting_review") for p in first.context["page"])


def test_list_filter_by_status_keeps_filter_in_page_links(hospital_a, many_patients, make_member, login):
    client = login(make_member(hospital_a, Role.VIEWER))
    response = client.get(url("list", hospital_a), {"status": "infected"})
    page = response.context["page"]
    assert page.paginator.count == 10
    assert {p.status for p in page} == {"infected"}
    suspected = client.get(url("list", hospital_a), {"status": "suspected"})
    assert suspected.context["page"].paginator.count == 21
    zed = client.get(url("list", hospital_a), {"q": "Zed", "status": "suspected"})
    assert zed.context["page"].paginator.count == 20
    assert "page=2" not in zed.content.decode()
    all_zed = client.get(url("list", hospital_a), {"q": "Zed"})
    assert all_zed.context["page"].paginator.count == 30
    assert "q=Zed&amp;page=2" in all_zed.content.decode()


def test_list_shows_only_this_hospitals_patients(hospital_a, patient, foreign_patient, make_member, login):
    client = login(make_member(hospital_a, Role.VIEWER))
    response = client.get(url("list", hospital_a))
    assert [p.mrn for p in response.context["page"]] == ["A-100"]
    assert b"Foreign" not in response.content


# --- Detail -------------------------------------------------------------------------------

def test_detail_shows_timeline_and_audits_the_view(hospital_a, patient, make_member, login):
    clinician = make_member(hospital_a, Role.CLINICIAN, email="doc@example.org")
    with scope(hospital=hospital_a):
        services.patient_change_status(patient=patient, to_status=Status.INFECTED, effective_date=TODAY(),
                                       reason="Fever & cough <b>", actor=clinician)
    client = login(make_member(hospital_a, Role.VIEWER))
    response = client.get(url("detail", hospital_a, pk=patient.pk))
    html = response.content.decode()
    assert "Ada Lovelace" in html
    assert "Fever &amp; cough &lt;b&gt;" in html  # escaped, never raw markup
    assert "doc@example.org" in html or clinician.get_full_name() in html
    assert "Registered" in html
    title = html.split("<title>", 1)[1].split("</title>", 1)[0]
    assert "Ada Lovelace" in title and "<" not in title
    assert html.count('id="screenings"') == 1
    views = audit_events(hospital_a, action="view", object_type="patient")
    assert [e.object_id for e in views] == [str(patient.pk)]


def test_detail_buttons_follow_the_role(hospital_a, patient, make_member, login):
    change_url = url("change_status", hospital_a, pk=patient.pk)
    edit_url = url("edit", hospital_a, pk=patient.pk)
    clinician_page = login(make_member(hospital_a, Role.CLINICIAN)).get(url("detail", hospital_a, pk=patient.pk))
    assert change_url in clinician_page.content.decode()
    assert edit_url not in clinician_page.content.decode()
    registrar_page = login(make_member(hospital_a, Role.REGISTRAR)).get(url("detail", hospital_a, pk=patient.pk))
    assert change_url not in registrar_page.content.decode()
    assert edit_url in registrar_page.content.decode()


def test_detail_shows_lab_suggestion_as_suggestion_only(hospital_a, patient, make_member, login):
    clinician = make_member(hospital_a, Role.CLINICIAN)
    with scopes_disabled():
        test = LabTestFactory(patient=patient, result="negative", recorded_by=clinician)
    response = login(clinician).get(url("detail", hospital_a, pk=patient.pk))
    html = response.content.decode()
    assert response.context["suggestion"] == Status.NEGATIVE
    assert "a clinician decides" in html
    assert f"to_status=negative&amp;source=lab_result&amp;lab_test={test.pk}" in html
    patient.refresh_from_db()
    assert patient.status == Status.SUSPECTED  # nothing changed by showing it


# --- Create / edit ------------------------------------------------------------------------

def test_registrar_creates_patient(hospital_a, make_member, login):
    client = login(make_member(hospital_a, Role.REGISTRAR))
    response = client.post(url("create", hospital_a), patient_form_data())
    with scope(hospital=hospital_a):
        created = Patient.objects.get(mrn="NEW-1")
        assert created.status == Status.SUSPECTED
        assert created.status_changes.count() == 1
    assert response.status_code == 302
    assert response["Location"] == url("detail", hospital_a, pk=created.pk)


def test_create_with_duplicate_mrn_shows_service_error_and_keeps_input(hospital_a, patient, make_member, login):
    client = login(make_member(hospital_a, Role.REGISTRAR))
    response = client.post(url("create", hospital_a), patient_form_data(mrn="A-100", given_name="Kept"))
    assert response.status_code == 200
    assert "already exists in this hospital" in response.content.decode()
    assert 'value="Kept"' in response.content.decode()
    with scope(hospital=hospital_a):
        assert Patient.objects.count() == 1


def test_create_form_errors_write_nothing(hospital_a, make_member, login):
    client = login(make_member(hospital_a, Role.REGISTRAR))
    future = (TODAY() + datetime.timedelta(days=3)).isoformat()
    response = client.post(url("create", hospital_a), patient_form_data(given_name="", birth_date=future))
    assert response.status_code == 200
    assert response.context["form"].errors["given_name"]
    with scope(hospital=hospital_a):
        assert Patient.objects.count() == 0
    # The service's rule (no future birth date) shows on the form too.
    response = client.post(url("create", hospital_a), patient_form_data(birth_date=future))
    assert "cannot be in the future" in response.content.decode()
    with scope(hospital=hospital_a):
        assert Patient.objects.count() == 0


def test_same_mrn_in_another_hospital_is_fine(hospital_a, foreign_patient, make_member, login):
    client = login(make_member(hospital_a, Role.REGISTRAR))
    response = client.post(url("create", hospital_a), patient_form_data(mrn="B-100"))
    assert response.status_code == 302


def test_edit_updates_and_audits(hospital_a, patient, make_member, login):
    client = login(make_member(hospital_a, Role.REGISTRAR))
    page = client.get(url("edit", hospital_a, pk=patient.pk))
    assert page.context["form"].initial["mrn"] == "A-100"
    response = client.post(url("edit", hospital_a, pk=patient.pk),
                           patient_form_data(mrn="A-100", given_name="Augusta", family_name="Lovelace",
                                             birth_date="1980-01-02"))
    assert response.status_code == 302
    patient.refresh_from_db()
    assert patient.given_name == "Augusta"
    updates = audit_events(hospital_a, action="update", object_type="patient")
    assert updates[-1].detail == {"fields": ["given_name"]}


# --- Status change ------------------------------------------------------------------------

def test_status_form_offers_only_allowed_transitions(hospital_a, patient, make_member, login):
    client = login(make_member(hospital_a, Role.CLINICIAN))
    form = client.get(url("change_status", hospital_a, pk=patient.pk)).context["form"]
    assert [value for value, _ in form.fields["to_status"].choices] == ["infected", "carrier", "negative"]
    assert form.fields["effective_date"].initial == timezone.localdate()


def test_clinician_changes_status(hospital_a, patient, make_member, login):
    clinician = make_member(hospital_a, Role.CLINICIAN)
    client = login(clinician)
    response = client.post(url("change_status", hospital_a, pk=patient.pk), {
        "to_status": "infected", "effective_date": TODAY().isoformat(), "reason": "Positive PCR, fever",
        "source": "clinician", "lab_test": "",
    })
    assert response.status_code == 302
    patient.refresh_from_db()
    assert patient.status == Status.INFECTED
    with scope(hospital=hospital_a):
        change = StatusChange.objects.filter(patient=patient).order_by("-id").first()
    assert (change.to_status, change.changed_by, change.reason) == ("infected", clinician, "Positive PCR, fever")
    detail = client.get(url("detail", hospital_a, pk=patient.pk))
    assert "Positive PCR, fever" in detail.content.decode()


def test_status_change_without_reason_is_refused_and_keeps_input(hospital_a, patient, make_member, login):
    client = login(make_member(hospital_a, Role.CLINICIAN))
    response = client.post(url("change_status", hospital_a, pk=patient.pk), {
        "to_status": "carrier", "effective_date": TODAY().isoformat(), "reason": "", "source": "clinician",
    })
    assert response.status_code == 200
    assert response.context["form"].errors["reason"]
    assert response.context["form"]["to_status"].value() == "carrier"
    patient.refresh_from_db()
    assert patient.status == Status.SUSPECTED


def test_refused_transition_shows_service_message(hospital_a, patient, make_member, login):
    clinician = make_member(hospital_a, Role.CLINICIAN)
    with scope(hospital=hospital_a):
        services.patient_change_status(patient=patient, to_status=Status.INFECTED, effective_date=TODAY(),
                                       reason="r", actor=clinician)
        services.patient_change_status(patient=patient, to_status=Status.DECEASED, effective_date=TODAY(),
                                       reason="r", actor=clinician)
    client = login(clinician)
    page = client.get(url("change_status", hospital_a, pk=patient.pk))
    assert "final status" in page.content.decode()
    response = client.post(url("change_status", hospital_a, pk=patient.pk), {
        "to_status": "recovered", "effective_date": TODAY().isoformat(), "reason": "Typed reason kept",
        "source": "clinician",
    })
    html = response.content.decode()
    assert "A deceased patient cannot become recovered" in html
    assert "Typed reason kept" in html
    patient.refresh_from_db()
    assert patient.status == Status.DECEASED


def test_future_effective_date_refused(hospital_a, patient, make_member, login):
    client = login(make_member(hospital_a, Role.CLINICIAN))
    response = client.post(url("change_status", hospital_a, pk=patient.pk), {
        "to_status": "negative", "effective_date": (TODAY() + datetime.timedelta(days=2)).isoformat(),
        "reason": "x", "source": "clinician",
    })
    assert "cannot be in the future" in response.content.decode()
    patient.refresh_from_db()
    assert patient.status == Status.SUSPECTED


def test_lab_test_choice_is_limited_to_this_patient(hospital_a, patient, make_member, login):
    clinician = make_member(hospital_a, Role.CLINICIAN)
    with scopes_disabled():
        own = LabTestFactory(patient=patient, recorded_by=clinician)
        other_patient = PatientFactory(hospital=hospital_a, mrn="OTHER")
        other = LabTestFactory(patient=other_patient, recorded_by=clinician)
    client = login(clinician)
    form = client.get(url("change_status", hospital_a, pk=patient.pk)).context["form"]
    assert list(form.fields["lab_test"].queryset) == [own]
    response = client.post(url("change_status", hospital_a, pk=patient.pk), {
        "to_status": "carrier", "effective_date": TODAY().isoformat(), "reason": "x",
        "source": StatusSource.LAB_RESULT, "lab_test": other.pk,
    })
    assert response.status_code == 200
    assert response.context["form"].errors["lab_test"]
    response = client.post(url("change_status", hospital_a, pk=patient.pk), {
        "to_status": "carrier", "effective_date": TODAY().isoformat(), "reason": "PCR positive",
        "source": StatusSource.LAB_RESULT, "lab_test": own.pk,
    })
    assert response.status_code == 302
    with scope(hospital=hospital_a):
        assert StatusChange.objects.get(patient=patient, to_status="carrier").lab_test == own


def test_lab_result_source_needs_a_lab_test(hospital_a, patient, make_member, login):
    client = login(make_member(hospital_a, Role.CLINICIAN))
    response = client.post(url("change_status", hospital_a, pk=patient.pk), {
        "to_status": "carrier", "effective_date": TODAY().isoformat(), "reason": "x",
        "source": StatusSource.LAB_RESULT, "lab_test": "",
    })
    assert response.context["form"].errors["lab_test"]


def test_registrar_cannot_post_status_change(hospital_a, patient, make_member, login):
    client = login(make_member(hospital_a, Role.REGISTRAR))
    response = client.post(url("change_status", hospital_a, pk=patient.pk), {
        "to_status": "infected", "effective_date": TODAY().isoformat(), "reason": "x", "source": "clinician",
    })
    assert response.status_code == 403
    patient.refresh_from_db()
    assert patient.status == Status.SUSPECTED


# --- Lab tests ----------------------------------------------------------------------------

def test_record_lab_test(hospital_a, patient, make_member, login):
    client = login(make_member(hospital_a, Role.REGISTRAR))
    response = client.post(url("labtest_create", hospital_a, pk=patient.pk), {
        "test_type": "antigen", "result": "positive", "sample_date": TODAY().isoformat(), "notes": "Ward 3",
    })
    assert response.status_code == 302
    with scope(hospital=hospital_a):
        test = patient.lab_tests.get()
    assert (test.test_type, test.result, test.notes) == ("antigen", "positive", "Ward 3")
    detail = client.get(url("detail", hospital_a, pk=patient.pk))
    assert "Ward 3" in detail.content.decode()
    assert detail.context["suggestion"] == Status.CARRIER


def test_lab_test_in_future_refused(hospital_a, patient, make_member, login):
    client = login(make_member(hospital_a, Role.CLINICIAN))
    response = client.post(url("labtest_create", hospital_a, pk=patient.pk), {
        "test_type": "rt_pcr", "result": "negative",
        "sample_date": (TODAY() + datetime.timedelta(days=1)).isoformat(), "notes": "keep me",
    })
    assert response.status_code == 200
    assert "cannot be in the future" in response.content.decode()
    assert "keep me" in response.content.decode()
    with scope(hospital=hospital_a):
        assert not patient.lab_tests.exists()


# --- Quick filters and the merged timeline ----------------------------------------------------

@pytest.fixture
def screened_patients(hospital_a, make_member):
    """Ada (infected) with a screening waiting for review, Bea (carrier) whose screening was
    reviewed, Cy (suspected) with a queued screening."""
    from screening.services import review_create
    from tests.factories import airesult_for, screening_for

    clinician = make_member(hospital_a, Role.CLINICIAN)
    with scope(hospital=hospital_a):
        ada, bea, cy = (PatientFactory(hospital=hospital_a, given_name=name, family_name="Quick", mrn=f"Q-{name}",
                                       status=status)
                        for name, status in [("Ada", Status.INFECTED), ("Bea", Status.CARRIER),
                                             ("Cy", Status.SUSPECTED)])
        airesult_for(screening_for(ada, actor=clinician, seed=1))
        result = airesult_for(screening_for(bea, actor=clinician, seed=2))
        review_create(result=result, decision="confirm", clinical_label="covid", radiological_signs=False,
                      reason="ok", actor=clinician)
        screening_for(cy, actor=clinician, seed=3)
    return ada, bea, cy


@pytest.mark.parametrize("params,expected", [
    ({}, ["Q-Ada", "Q-Bea", "Q-Cy"]),
    ({"status": "infected"}, ["Q-Ada"]),
    ({"status": "carrier"}, ["Q-Bea"]),
    ({"awaiting_review": "on"}, ["Q-Ada"]),
    ({"awaiting_review": "on", "status": "carrier"}, []),
    ({"awaiting_review": "on", "q": "Quick"}, ["Q-Ada"]),
])
def test_quick_filters(params, expected, hospital_a, screened_patients, make_member, login):
    response = login(make_member(hospital_a, Role.VIEWER)).get(url("list", hospital_a), params)
    assert [p.mrn for p in response.context["page"]] == expected


def test_quick_filter_links_mark_the_active_one_and_keep_the_search(hospital_a, screened_patients, make_member,
                                                                    login):
    client = login(make_member(hospital_a, Role.VIEWER))
    html = client.get(url("list", hospital_a), {"q": "Quick", "awaiting_review": "on"}).content.decode()
    assert '<a href="?q=Quick&amp;awaiting_review=on" aria-current="true">Awaiting review</a>' in html
    assert '<a href="?q=Quick&amp;status=infected">Infected</a>' in html
    assert '<a href="?q=Quick">All patients</a>' in html
    assert html.count('aria-current="true"') == 1
    assert "Review pending" in html and "1 patient<" in html
    everyone = client.get(url("list", hospital_a)).content.decode()
    assert '<a href="?" aria-current="true">All patients</a>' in everyone
    assert everyone.count("Review pending") == 1  # Ada only: Bea's was reviewed, Cy's is still queued


def test_timeline_merges_every_record_newest_first(hospital_a, patient, make_member, login):
    from screening.models import AiResult, Review, Screening
    from screening.services import review_create
    from tests.factories import airesult_for, screening_for

    clinician = make_member(hospital_a, Role.CLINICIAN)
    now = timezone.now()
    with scope(hospital=hospital_a):
        lab = services.labtest_create(patient=patient, test_type="rt_pcr", result="positive", sample_date=TODAY(),
                                      actor=clinician, notes="Ward 3")
        screening = screening_for(patient, actor=clinician)
        result = airesult_for(screening, covid=0.91)
        review = review_create(result=result, decision="confirm", clinical_label="covid", radiological_signs=True,
                               reason="Bilateral opacities", actor=clinician)
        change = services.patient_change_status(patient=patient, to_status=Status.INFECTED, effective_date=TODAY(),
                                                reason="PCR and film", actor=clinician)
        registered = patient.status_changes.get(to_status=Status.SUSPECTED)
    # Recorded times, deliberately not in creation order.
    minutes = {"screening": 50, "lab": 40, "result": 30, "review": 20, "change": 10, "registered": 60}
    with scopes_disabled():
        StatusChange.objects.filter(pk=registered.pk).update(changed_at=now - datetime.timedelta(minutes=60))
        Screening.objects.filter(pk=screening.pk).update(created_at=now - datetime.timedelta(minutes=50))
        type(lab).objects.filter(pk=lab.pk).update(recorded_at=now - datetime.timedelta(minutes=40))
        AiResult.objects.filter(pk=result.pk).update(created_at=now - datetime.timedelta(minutes=30))
        Review.objects.filter(pk=review.pk).update(reviewed_at=now - datetime.timedelta(minutes=20))
        StatusChange.objects.filter(pk=change.pk).update(changed_at=now - datetime.timedelta(minutes=10))
    assert sorted(minutes.values(), reverse=True) == [60, 50, 40, 30, 20, 10]
    response = login(make_member(hospital_a, Role.VIEWER)).get(url("detail", hospital_a, pk=patient.pk))
    timeline = response.context["timeline"]
    assert [(kind, item.pk) for kind, _, item in timeline] == [
        ("status_change", change.pk), ("review", review.pk), ("ai_result", result.pk), ("lab_test", lab.pk),
        ("screening", screening.pk), ("status_change", registered.pk)]
    html = response.content.decode()
    ids = [f'id="timeline-{kind}-{item.pk}"' for kind, _, item in timeline]
    assert [html.index(i) for i in ids] == sorted(html.index(i) for i in ids)
    assert "AI label COVID-19, P(COVID-19) 0.91" in html and "Bilateral opacities" in html and "Ward 3" in html
    assert html.count("Screening aid, not a diagnosis.") == 2  # the AI result entry and the screenings card


def test_timeline_of_another_hospitals_patient_is_404(hospital_a, foreign_patient, make_member, login):
    client = login(make_member(hospital_a, Role.VIEWER))
    assert client.get(url("detail", hospital_a, pk=foreign_patient.pk)).status_code == 404
