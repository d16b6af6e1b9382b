"""The dashboard's figures: status counts and their change, the daily trend rebuilt from the
status history, screenings per day by AI label, pending reviews, AI/clinician agreement and
turnaround, each checked against data built with the services; the page's query count
does not grow with the data; another hospital's data never counts."""

import datetime
import json

import pytest
from django.core.cache import cache
from django.core.cache.utils import make_template_fragment_key
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from django_scopes import scope, scopes_disabled
from freezegun import freeze_time

from hospitals.dashboard import DAYS, data_version, format_duration
from hospitals.models import AuditEvent, Role
from patients import services as patient_services
from patients.models import Status
from screening.models import AiResult, Review, Screening
from screening.services import review_create
from tests.factories import PatientFactory, airesult_for, hospital_world, screening_for

TODAY = timezone.localdate


@pytest.fixture(autouse=True)
def midday():
    """Noon today: the screenings built minutes and hours ago are today's, whenever the suite runs."""
    noon = datetime.datetime.combine(TODAY(), datetime.time(12), tzinfo=timezone.get_current_timezone())
    with freeze_time(noon, tick=True):
        yield


def days_ago(n):
    return TODAY() - datetime.timedelta(days=n)


def dashboard_url(hospital):
    return reverse("hospitals:dashboard", kwargs={"hospital_slug": hospital.slug})


def change(patient, to_status, days, actor):
    patient_services.patient_change_status(patient=patient, to_status=to_status, effective_date=days_ago(days),
                                           reason="r", actor=actor)


def build_history(world):
    """P1 infected 10 days ago then carrier 3 days ago; P2 infected 20 days ago; P3 infected
    5 days ago then recovered yesterday; the world's patient registered and carrier today."""
    hospital, clinician = world.hospital, world.clinician
    with scope(hospital=hospital):
        p1, p2, p3 = (PatientFactory(hospital=hospital, status_since=days_ago(40)) for _ in range(3))
        change(p1, Status.INFECTED, 10, clinician)
        change(p1, Status.CARRIER, 3, clinician)
        change(p2, Status.INFECTED, 20, clinician)
        change(p3, Status.INFECTED, 5, clinician)
        change(p3, Status.RECOVERED, 1, clinician)
    return p1, p2, p3


def set_times(model, pk, **fields):
    with scopes_disabled():
        model.objects.filter(pk=pk).update(**fields)


def build_screenings(world, patients):
    """S1 (COVID-19, uploaded 2 h ago, result after 30 min, reviewed 1 h ago, then overridden
    to other pneumonia 10 min ago), S2 (pneumonia, uploaded 2 days ago, result after 1 h, not
    reviewed), S3 (queued), S4 (COVID-19 today, confirmed)."""
    now = timezone.now()
    p1, p2, p3 = patients
    actor = world.clinician
    with scope(hospital=world.hospital):
        s1 = screening_for(p1, actor=actor, seed=1)
        r1 = airesult_for(s1, covid=0.9)
        s2 = screening_for(p2, actor=actor, seed=2)
        r2 = airesult_for(s2, covid=0.1)
        s3 = screening_for(p3, actor=actor, seed=3)
        s4 = screening_for(p3, actor=actor, seed=4)
        r4 = airesult_for(s4, covid=0.7)
        first = review_create(result=r1, decision="confirm", clinical_label="covid", radiological_signs=True,
                              reason="typical", actor=actor)
        second = review_create(result=r1, decision="override", clinical_label="pneumonia",
                               radiological_signs=False, reason="second look", actor=actor)
        r4_review = review_create(result=r4, decision="confirm", clinical_label="covid", radiological_signs=True,
                                  reason="typical", actor=actor)
    two_days_ago = now - datetime.timedelta(days=2)
    set_times(Screening, s1.pk, created_at=now - datetime.timedelta(hours=2))
    set_times(AiResult, r1.pk, created_at=now - datetime.timedelta(minutes=90))
    set_times(Review, first.pk, reviewed_at=now - datetime.timedelta(hours=1))
    set_times(Review, second.pk, reviewed_at=now - datetime.timedelta(minutes=10))
    set_times(Screening, s2.pk, created_at=two_days_ago - datetime.timedelta(hours=1))
    set_times(AiResult, r2.pk, created_at=two_days_ago)
    set_times(Screening, s4.pk, created_at=now - datetime.timedelta(minutes=20))
    set_times(AiResult, r4.pk, created_at=now - datetime.timedelta(minutes=19))
    set_times(Review, r4_review.pk, reviewed_at=now - datetime.timedelta(minutes=5))
    return s1, s2, s3, s4


@pytest.fixture
def world_a(hospital_a):
    world = hospital_world(hospital_a, tag="A")
    world.others = build_history(world)
    world.screenings = build_screenings(world, world.others)
    return world


@pytest.fixture
def world_b(hospital_b):
    """Another hospital with its own history and screenings: none of it may count for A."""
    world = hospital_world(hospital_b, tag="B")
    build_screenings(world, build_history(world))
    return world


def get_dashboard(world, user=None, *, login):
    response = login(user or world.clinician).get(dashboard_url(world.hospital))
    assert response.status_code == 200
    return response


def test_status_counts_and_changes(world_a, world_b, login):
    context = get_dashboard(world_a, login=login).context
    figures = {f.status.value: (f.count, f.changes[7], f.changes[30]) for f in context["status_figures"]}
    assert figures == {
        "suspected": (0, -1, -3),
        "infected": (1, -1, 1),
        "carrier": (2, 2, 2),
        "negative": (0, 0, 0),
        "recovered": (1, 1, 1),
        "deceased": (0, 0, 0),
    }
    assert context["total_patients"] == 4


def test_daily_trend_is_rebuilt_from_the_history(world_a, world_b, login):
    trend = get_dashboard(world_a, login=login).context["trend"]
    assert len(trend["days"]) == DAYS and trend["days"][-1] == TODAY().isoformat()
    series = {s["key"]: s["counts"] for s in trend["series"]}
    # index DAYS-1-k is k days ago
    expected_infected = [0 if k > 20 else 1 if k > 10 else 2 if k > 5 else 3 if k > 3 else 2 if k > 1 else 1
                         for k in range(DAYS - 1, -1, -1)]
    expected_carrier = [2 if k == 0 else 1 if k <= 3 else 0 for k in range(DAYS - 1, -1, -1)]
    assert series == {"infected": expected_infected, "carrier": expected_carrier}


def test_screenings_per_day_by_ai_label(world_a, world_b, login):
    data = get_dashboard(world_a, login=login).context["screenings"]
    series = {s["key"]: s["counts"] for s in data["series"]}
    assert set(series) == {"covid", "pneumonia", "normal"}
    assert series["covid"][-1] == 2 and sum(series["covid"]) == 2
    assert series["pneumonia"][-3] == 1 and sum(series["pneumonia"]) == 1
    assert sum(series["normal"]) == 0


def test_pending_reviews_agreement_and_turnaround(world_a, world_b, login):
    context = get_dashboard(world_a, login=login).context
    s2 = world_a.screenings[1]
    assert context["pending"] == {"count": 1, "oldest": _created_at(s2)}
    agreement = context["agreement"]
    # S1's latest review says pneumonia (its earlier confirmation does not count); S4 was confirmed.
    assert (agreement["total"], agreement["agreed"], agreement["rate"]) == (2, 1, 0.5)
    cells = {(ai.value, clinical.value): n for ai, row, _ in agreement["rows"]
             for clinical, n in zip(agreement["labels"], row) if n}
    assert cells == {("covid", "pneumonia"): 1, ("covid", "covid"): 1}
    assert agreement["column_totals"] == [1, 1, 0]
    to_result, to_review = context["turnarounds"]
    # Upload to result: S1 30 min, S2 1 h, S4 1 min; S3 has no result yet.
    assert (to_result.count, to_result.median_s, to_result.p90_s) == (3, 1800, 3600)
    # Upload to first review: S1 1 h, S4 15 min.
    assert (to_review.count, to_review.median_s, to_review.p90_s) == (2, (3600 + 900) / 2, 3600)


def _created_at(screening):
    with scopes_disabled():
        return Screening.objects.get(pk=screening.pk).created_at


def test_page_shows_figures_with_table_fallbacks_and_no_inline_script(world_a, login):
    html = get_dashboard(world_a, login=login).content.decode()
    assert '<li class="stat stat-carrier" data-status="carrier">' in html
    assert "+2 in 7 days" in html and "-3 in 30 days" in html
    # Charts: data in JSON script elements (not executed), drawn by a static script, with tables.
    trend = json.loads(html.split('<script id="trend-data" type="application/json">', 1)[1].split("</script>", 1)[0])
    assert trend["series"][1]["counts"][-1] == 2
    assert 'id="trend-table"' in html and 'id="screenings-table"' in html and "<details" in html
    assert 'role="img"' in html and "js/dashboard.js" in html and "vendor/chartjs/chart.umd.min.js" in html
    bodies = [part.split(">", 1)[1].split("</script>", 1)[0] for part in html.split("<script")[1:]]
    executable = [b for part, b in zip(html.split("<script")[1:], bodies) if 'type="application/json"' not in part]
    assert executable and all(b.strip() == "" for b in executable)
    assert 'id="agreement-rate">50&nbsp;%' in html
    assert "Screening aid, not a diagnosis." in html
    assert "A-MRN-7731" in html  # the recent changes name the patient


def chart_data(html: str, name: str) -> dict:
    return json.loads(html.split(f'<script id="{name}-data" type="application/json">', 1)[1].split("</script>", 1)[0])


def test_rendered_charts_follow_the_figures_and_stay_each_hospitals_own(world_a, world_b, login):
    """The status counts, charts and their tables are cached rendered, under the figures'
    version: a new result shows on the next load, and another hospital never gets this
    one's fragment."""
    client = login(world_a.clinician)
    response = client.get(dashboard_url(world_a.hospital))
    first = response.content.decode()
    key = make_template_fragment_key("dashboard_figures", [response.context["figures_key"], world_a.hospital.slug])
    fragment = cache.get(key)
    assert fragment and chart_data(fragment, "screenings") == chart_data(first, "screenings")
    assert 'id="status-counts"' in fragment
    covid = {s["key"]: s["counts"] for s in chart_data(first, "screenings")["series"]}["covid"]
    with scope(hospital=world_a.hospital):
        airesult_for(screening_for(world_a.others[1], actor=world_a.clinician, seed=11), covid=0.95)
    after = client.get(dashboard_url(world_a.hospital)).content.decode()
    assert {s["key"]: s["counts"] for s in chart_data(after, "screenings")["series"]}["covid"][-1] == covid[-1] + 1
    assert f'<td class="num">{covid[-1] + 1}</td>' in after.split('id="screenings-table"', 1)[1].split("</table>")[0]
    other = get_dashboard(world_b, login=login)
    assert chart_data(other.content.decode(), "trend") == other.context["trend"]
    assert chart_data(other.content.decode(), "screenings") != chart_data(after, "screenings")


def test_new_hospital_has_empty_states(hospital_a, make_member, login):
    html = login(make_member(hospital_a, Role.VIEWER)).get(dashboard_url(hospital_a)).content.decode()
    assert "Nothing is waiting" in html
    assert "No screening was reviewed in the last 30 days." in html
    assert "No status changes yet." in html


def test_query_count_does_not_grow_with_the_data(world_a, login, django_assert_max_num_queries, settings):
    """The figures are grouped queries: more patients, changes, days and screenings cost no
    extra query (measured uncached)."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    client = login(world_a.clinician)
    client.get(dashboard_url(world_a.hospital))  # the first request also records the user's session
    with django_assert_max_num_queries(25) as small:
        assert client.get(dashboard_url(world_a.hospital)).status_code == 200
    build_screenings(world_a, build_history(world_a))
    with scope(hospital=world_a.hospital):
        for n in range(6):
            patient = PatientFactory(hospital=world_a.hospital, status_since=days_ago(29))
            change(patient, Status.INFECTED, 25 - n, world_a.clinician)
            change(patient, Status.CARRIER, 12 - n, world_a.clinician)
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert client.get(dashboard_url(world_a.hospital)).status_code == 200


def test_figures_are_cached_until_the_hospital_data_changes(world_a, login, django_assert_max_num_queries):
    """A second load of an unchanged hospital reads the figures from the cache; a status
    change, a result or a review shows on the very next load."""
    client = login(world_a.clinician)
    url = dashboard_url(world_a.hospital)
    before = client.get(url).context
    with django_assert_max_num_queries(100) as hit:
        client.get(url)
    with override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}):
        with django_assert_max_num_queries(100) as uncached:
            client.get(url)
    assert len(hit.captured_queries) <= len(uncached.captured_queries) - 6

    def counts(context):
        return {f.status: f.count for f in context["status_figures"]}

    def shown(html, status):  # the count on the page, rendered from the cache when it can be
        return int(html.split(f'data-status="{status}"', 1)[1].split("data-count>", 1)[1].split("<", 1)[0])

    def reviewed(html):  # the agreement sentence and the review turnaround's count of screenings
        sentence = html.split('id="agreement-rate"', 1)[1].split("reviewed screenings", 1)[0].rsplit(">", 1)[1]
        row = html.split('id="turnaround-table"', 1)[1].split("</table>", 1)[0].split("<tr>")[-1]
        return sentence.strip(), int(row.rsplit('<td class="num">', 1)[1].split("<", 1)[0])

    page = client.get(url).content.decode()
    assert shown(page, Status.CARRIER) == counts(before)[Status.CARRIER]
    assert reviewed(page) == ("1 of 2", 2)
    _p1, p2, p3 = world_a.others
    with scope(hospital=world_a.hospital):
        change(p2, Status.CARRIER, 0, world_a.clinician)
    response = client.get(url)
    after, page = response.context, response.content.decode()
    assert counts(after)[Status.CARRIER] == counts(before)[Status.CARRIER] + 1
    assert counts(after)[Status.INFECTED] == counts(before)[Status.INFECTED] - 1
    assert shown(page, Status.CARRIER) == counts(after)[Status.CARRIER]
    assert shown(page, Status.INFECTED) == counts(after)[Status.INFECTED]
    with scope(hospital=world_a.hospital):
        result = airesult_for(screening_for(p3, actor=world_a.clinician, seed=9), covid=0.3)
    assert client.get(url).context["pending"]["count"] == before["pending"]["count"] + 1
    with scope(hospital=world_a.hospital):
        review_create(result=result, decision="confirm", clinical_label=result.label, radiological_signs=True,
                      reason="r", actor=world_a.clinician)
    response = client.get(url)
    assert response.context["pending"]["count"] == before["pending"]["count"]
    assert reviewed(response.content.decode()) == ("2 of 3", 3)


def test_recent_changes_are_cached_until_a_change_or_a_patient_edit_and_every_load_is_audited(
        world_a, world_b, login, django_assert_max_num_queries):
    """The rendered recent changes come from the cache on a second load (no read of the
    changes), also after an upload and its result, yet each load's audit entry names the
    patients shown; a status change or an edit of a patient shows on the next load; B's page
    shows B's changes only."""
    client = login(world_a.clinician)
    url = dashboard_url(world_a.hospital)
    p1, p2, _p3 = world_a.others

    def shown(html, hospital=world_a.hospital):  # the patients named in the recent changes, in their order
        section = html.split('aria-labelledby="recent-h"', 1)[1].split("</section>", 1)[0]
        return [int(part.split("/", 1)[0]) for part in section.split(f"{dashboard_url(hospital)}patients/")[1:]]

    def audited():
        with scopes_disabled():
            return [e.detail["patients"] for e in AuditEvent.objects.filter(
                hospital=world_a.hospital, action="list", object_type="patient").order_by("id")]

    def read_changes(queries):  # the recent changes' read (their ids in the order of the list), not the version's
        return [q for q in queries if "patients_statuschange" in q["sql"] and "changed_at" in q["sql"]
                and not q["sql"].startswith("SELECT (SELECT")]

    first = shown(client.get(url).content.decode())
    assert p1.pk in first
    with django_assert_max_num_queries(100) as hit:
        html = client.get(url).content.decode()
    assert shown(html) == first and not read_changes(hit.captured_queries)
    with scope(hospital=world_a.hospital):  # an upload and its result change the figures, not the changes
        airesult_for(screening_for(p1, actor=world_a.clinician, seed=11), covid=0.8)
    with django_assert_max_num_queries(100) as upload:
        html = client.get(url).content.decode()
    assert shown(html) == first and not read_changes(upload.captured_queries)
    assert audited() == [list(dict.fromkeys(first))] * 3

    with scope(hospital=world_a.hospital):
        change(p2, Status.CARRIER, 0, world_a.clinician)
    assert shown(client.get(url).content.decode())[0] == p2.pk
    with scope(hospital=world_a.hospital):
        patient_services.patient_update(patient=p2, actor=world_a.clinician, family_name="Renamed")
    assert "Renamed" in client.get(url).content.decode().split('aria-labelledby="recent-h"', 1)[1]

    b_html = login(world_b.clinician).get(dashboard_url(world_b.hospital)).content.decode()
    assert "Renamed" not in b_html
    assert not set(shown(b_html, world_b.hospital)) & {p1.pk, p2.pk}


def test_the_data_version_moves_with_every_table_it_reads_and_with_its_hospitals_rows_only(world_a, world_b):
    """A patient edit, a status change, an upload, a result and a review of hospital A each
    move A's version (the key of its cached figures); B's rows never do."""
    p1, p2, p3 = world_a.others
    actor = world_a.clinician
    edits = {
        "patient edit": lambda: patient_services.patient_update(patient=p1, actor=actor, given_name="Renamed"),
        "status change": lambda: change(p2, Status.CARRIER, 0, actor),
        "upload": lambda: screening_for(p3, actor=actor, seed=21),
        "result": lambda: airesult_for(Screening.objects.filter(patient=p3).latest("id"), covid=0.4),
        "review": lambda: review_create(result=AiResult.objects.latest("id"), decision="confirm",
                                        clinical_label=AiResult.objects.latest("id").label,
                                        radiological_signs=False, reason="r", actor=actor),
    }

    def version(world):
        with scope(hospital=world.hospital):
            return data_version(hospital=world.hospital)

    seen = [version(world_a)]
    for name, edit in edits.items():
        with scope(hospital=world_b.hospital):
            change(PatientFactory(hospital=world_b.hospital, status_since=days_ago(1)), Status.INFECTED, 0,
                   world_b.clinician)
        assert version(world_a) == seen[-1], f"B's rows moved A's version before the {name}"
        with scope(hospital=world_a.hospital):
            edit()
        seen.append(version(world_a))
        assert seen[-1] != seen[-2], name
    assert len(seen) == len(set(seen)) == len(edits) + 1


@pytest.mark.parametrize("seconds,text", [(None, "—"), (42, "42 s"), (185, "3 min"), (7500, "2 h 05 min"),
                                          (90000, "1 day 1 h"), (3 * 86400, "3 days 0 h")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text
