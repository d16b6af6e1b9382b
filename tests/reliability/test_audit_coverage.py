"""F2: every route that returns patient data leaves an audit entry with every field, as
the requesting member, for the object read. The routes come from the isolation tables
(tests/test_isolation.py for the portal, tests/api/test_isolation_api.py for the API),
so a new route added there is covered here too."""

from django.urls import reverse
from django_scopes import scopes_disabled
from rest_framework.test import APIClient

from hospitals.models import AuditEvent, Role
from tests.api.test_isolation_api import API_ROUTES, api_url
from tests.factories import add_screening, hospital_world
from tests.test_isolation import PORTAL_OBJECT_ROUTES, portal_url

# Portal object routes whose GET returns patient data (the others are settings pages or
# POST-only actions that redirect on GET), and the portal lists of patients.
PORTAL_PHI_GETS = ["patients:detail", "patients:edit", "patients:change_status", "patients:labtest_create",
                   "screening:upload", "screening:detail", "screening:status", "screening:scan_original",
                   "screening:scan_preview", "screening:heatmap"]
PORTAL_PHI_LISTS = ["patients:list", "screening:worklist", "screening:review_queue"]
# API routes that return patient data on GET (the hospital itself and the POST-only
# action are not).
API_PHI_GETS = [name for name in API_ROUTES if name not in ("api:hospital", "api:screening-apply-suggestion")]
FIELDS = ("hospital_id", "actor_id", "actor_email", "action", "object_type", "object_id", "at", "ip", "hash")


def events_since(last_id: int) -> list[AuditEvent]:
    with scopes_disabled():
        return list(AuditEvent.objects.filter(id__gt=last_id).order_by("id"))


def last_event_id() -> int:
    with scopes_disabled():
        return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def test_every_phi_route_is_audited_with_every_field(hospital_a, make_member, client, figure, db):
    with scopes_disabled():
        world = hospital_world(hospital_a, tag="AUD")
        add_screening(world, tag="AUD")
        # one more result, not yet reviewed, so the review queue has a patient to show
        from tests.factories import airesult_for, screening_for

        airesult_for(screening_for(world.patient, actor=world.clinician, status="done", seed=5))
    # the status answer is audited once the screening is final: make it so
    with scopes_disabled():
        type(world.screening).objects.filter(pk=world.screening.pk).update(status="done")
    members = [make_member(hospital_a, role) for role in (Role.CLINICIAN, Role.HOSPITAL_ADMIN)]
    requests = [(f"portal {name}", portal_url(name, hospital_a.slug, PORTAL_OBJECT_ROUTES[name](world)))
                for name in PORTAL_PHI_GETS]
    requests += [(f"portal {name}", reverse(name, kwargs={"hospital_slug": hospital_a.slug}))
                 for name in PORTAL_PHI_LISTS]
    for name in API_PHI_GETS:
        target = API_ROUTES[name]
        requests.append((name, api_url(name, hospital_a.slug, target(world).pk if target else None)))
    unaudited, missing_fields, wrong_actor, counts = [], [], [], {}
    for label, url in requests:
        for member in members:  # the clinician, or the hospital admin where the page is an admin's
            who = APIClient() if label.startswith("api:") else client
            who.force_login(member)
            before = last_event_id()
            response = who.get(url)
            if response.status_code != 403:
                break
        assert response.status_code == 200, (label, url, response.status_code)
        if response.streaming:
            b"".join(response.streaming_content)
        new = events_since(before)
        counts[label] = len(new)
        if not new:
            unaudited.append(label)
        for event in new:
            # a list names its patients in the detail, not in object_id
            empty = [f for f in FIELDS if getattr(event, f) in (None, "")
                     and not (f == "object_id" and event.action == "list" and event.detail)]
            if empty:
                missing_fields.append((label, empty))
            if event.actor_id != member.pk or event.hospital_id != hospital_a.pk:
                wrong_actor.append(label)
    exactly_one = sum(1 for n in counts.values() if n == 1)
    figure("F2", f"PHI routes {len(requests)} (portal {len(PORTAL_PHI_GETS) + len(PORTAL_PHI_LISTS)}, API "
                 f"{len(API_PHI_GETS)}); audited {len(requests) - len(unaudited)}/{len(requests)} (exactly one entry "
                 f"{exactly_one}); events with missing fields {len(missing_fields)}",
           routes=len(requests), unaudited=len(unaudited), missing_fields=len(missing_fields))
    assert unaudited == [] and missing_fields == [] and wrong_actor == [], (unaudited, missing_fields, wrong_actor)
