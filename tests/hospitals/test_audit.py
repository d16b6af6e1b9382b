"""The audit trail: one entry per patient read and per change, append-only in the model
and in the database (triggers), and tampering found by `manage.py audit_verify`."""

import datetime
import importlib
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from hospitals.audit import audit_record, chain_name, compute_hash
from hospitals.models import AuditChainHead, AuditEvent
from patients import services

from ..factories import UserFactory, hospital_world

TRIGGERS = importlib.import_module("hospitals.migrations.0002_audit_append_only")


def events(**filters):
    with scopes_disabled():
        return list(AuditEvent.objects.filter(**filters).order_by("id"))


def verify(*args):
    out = StringIO()
    try:
        call_command("audit_verify", *args, stdout=out)
    except CommandError as exc:
        return False, out.getvalue(), exc
    return True, out.getvalue(), None


# --- one entry per read and per change ----------------------------------------------------------------
def test_portal_patient_detail_leaves_exactly_one_view_entry(hospital_a, client):
    a = hospital_world(hospital_a, tag="ALPHA")
    client.force_login(a.clinician)
    before = len(events())
    url = reverse("patients:detail", kwargs={"hospital_slug": "alpha", "pk": a.patient.pk})
    assert client.get(url).status_code == 200
    new = events()[before:]
    views = [e for e in new if e.action == "view"]
    assert len(views) == 1
    assert (views[0].object_type, views[0].object_id, views[0].actor_id, views[0].hospital_id) == (
        "patient", str(a.patient.pk), a.clinician.pk, hospital_a.pk)
    assert views[0].chain == chain_name(hospital_a.pk)
    assert a.patient.mrn not in str(views[0].detail)  # ids only, no PHI in the trail


def test_portal_patient_list_leaves_one_list_entry_naming_the_patients(hospital_a, client):
    a = hospital_world(hospital_a, tag="ALPHA")
    client.force_login(a.clinician)
    before = len(events(action="list"))
    assert client.get(reverse("patients:list", kwargs={"hospital_slug": "alpha"})).status_code == 200
    lists = events(action="list")[before:]
    assert len(lists) == 1
    assert lists[0].detail["patients"] == [a.patient.pk]


def test_every_change_leaves_exactly_one_entry(hospital_a):
    actor = UserFactory()
    today = datetime.date.today()
    with scope(hospital=hospital_a):
        before = len(events())
        patient = services.patient_create(hospital=hospital_a, actor=actor, mrn="A-1", given_name="Ann",
                                          family_name="Audit", sex="female", birth_date=datetime.date(1990, 1, 1))
        assert [(e.action, e.object_type) for e in events()[before:]] == [("create", "patient")]

        before = len(events())
        services.patient_update(patient=patient, actor=actor, phone="+100")
        assert [(e.action, e.detail) for e in events()[before:]] == [("update", {"fields": ["phone"]})]

        before = len(events())
        services.patient_update(patient=patient, actor=actor, phone="+100")  # no change: no entry
        assert events()[before:] == []

        before = len(events())
        test = services.labtest_create(patient=patient, test_type="antigen", result="positive", sample_date=today,
                                       actor=actor)
        assert [(e.action, e.object_type, e.object_id) for e in events()[before:]] == [
            ("create", "labtest", str(test.pk))]

        before = len(events())
        change = services.patient_change_status(patient=patient, to_status="carrier", effective_date=today,
                                                reason="Antigen positive", actor=actor, lab_test=test)
        new = events()[before:]
        assert [(e.action, e.object_type) for e in new] == [("update", "patient")]
        assert new[0].detail["status_change"] == change.pk
    assert {e.actor_id for e in events(hospital=hospital_a)} == {actor.pk}


def test_entries_of_one_hospital_form_one_gapless_chain(hospital_a, hospital_b):
    hospital_world(hospital_a, tag="ALPHA")
    hospital_world(hospital_b, tag="BETA")
    for hospital in (hospital_a, hospital_b):
        chain = events(hospital=hospital)
        assert {e.chain for e in chain} == {chain_name(hospital.pk)}
        assert [e.seq for e in chain] == list(range(1, len(chain) + 1))
        assert all(e.prev_hash == p.hash for p, e in zip(chain, chain[1:]))


def test_an_entry_is_stored_as_the_model_holds_it_in_three_statements(hospital_a, rf):
    """The append writes its statements itself (no ORM compilation per entry): what it
    stores must read back through the model field for field, keep its hash, and move the
    chain head; a chain's first entry creates the head."""
    actor = UserFactory(email="auditor@example.org")
    request = rf.get("/", HTTP_USER_AGENT="Ünïcode agent/1.0", REMOTE_ADDR="2001:db8::1")
    request.user = actor
    detail = {"note": "naïve ☃", "ids": [3, 1, 2], "nested": {"none": None, "flag": True}}
    first = audit_record(action="view", object_type="patient", object_id=7, hospital=hospital_a,
                         request=request, detail=detail)
    with CaptureQueriesContext(connection) as ctx:
        second = audit_record(action="update", object_type="patient", object_id="M-1", hospital=hospital_a,
                              actor=actor)
    trips = [[statement.split()[0].upper() for statement in q["sql"].split("; ")] for q in ctx.captured_queries
             if not q["sql"].upper().startswith(("SET ", "SAVEPOINT", "RELEASE", "BEGIN", "COMMIT"))]
    # Inside the test's transaction: the head's lock, then the insert and the head's update, in
    # one round trip where the server takes several statements.
    assert trips == ([["SELECT"], ["INSERT", "UPDATE"]] if connection.vendor == "mysql"
                     else [["SELECT"], ["INSERT"], ["UPDATE"]])

    with scopes_disabled():
        stored = list(AuditEvent.objects.filter(chain=chain_name(hospital_a.pk)).order_by("seq"))
        head = AuditChainHead.objects.get(chain=chain_name(hospital_a.pk))
    assert [e.pk for e in stored] == [first.pk, second.pk]
    fields = [f.attname for f in AuditEvent._meta.concrete_fields]
    for written, read in zip((first, second), stored):
        assert {f: getattr(read, f) for f in fields} == {f: getattr(written, f) for f in fields}
        assert compute_hash(read) == read.hash
    assert stored[0].detail == detail and stored[0].ip == "2001:db8::1"
    assert stored[0].user_agent == "Ünïcode agent/1.0" and stored[0].actor_id == actor.pk
    assert (stored[0].seq, stored[1].seq, stored[1].prev_hash) == (1, 2, stored[0].hash)
    assert (head.seq, head.hash) == (2, second.hash)
    assert verify()[0]


# --- an entry outside any transaction (a read) --------------------------------------------------
def stored_chain(conn, hospital) -> tuple[list[int], tuple]:
    """(the entries' seqs, the head's (seq, hash)) of a hospital's chain, read on `conn`."""
    with conn.cursor() as cursor:
        cursor.execute("SELECT seq FROM hospitals_auditevent WHERE chain = %s ORDER BY seq", [chain_name(hospital.pk)])
        seqs = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT seq, hash FROM hospitals_auditchainhead WHERE chain = %s", [chain_name(hospital.pk)])
        return seqs, cursor.fetchone()


def test_an_entry_outside_a_transaction_is_committed_on_its_own(flushable_audit, hospital_a):
    """A read is not in a transaction: its entry is one of its own (on MariaDB begun with the
    head's lock and committed with the writes, two round trips). Another connection sees it
    committed, and this one is back in autocommit with the entry's id read right."""
    actor = UserFactory()
    first = audit_record(action="view", object_type="patient", object_id=1, hospital=hospital_a, actor=actor)
    with CaptureQueriesContext(connection) as ctx:
        second = audit_record(action="view", object_type="patient", object_id=2, hospital=hospital_a, actor=actor)
    if connection.vendor == "mysql":
        assert [q["sql"].split()[0] for q in ctx.captured_queries] == ["START", "INSERT"]
    assert connection.get_autocommit() and not connection.in_atomic_block
    other = connection.copy()
    try:
        assert stored_chain(other, hospital_a) == ([1, 2], (2, second.hash))
    finally:
        other.close()
    with scopes_disabled():
        stored = AuditEvent.objects.get(pk=second.pk)
    assert (stored.seq, stored.object_id, stored.prev_hash, stored.hash) == (2, "2", first.hash, second.hash)
    assert compute_hash(stored) == stored.hash and verify()[0]


REFUSE = {
    "sqlite": "CREATE TRIGGER test_refuse BEFORE {event} ON {table} BEGIN SELECT RAISE(ABORT, 'append refused'); END",
    "mysql": "CREATE TRIGGER test_refuse BEFORE {event} ON {table} FOR EACH ROW "
             "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'append refused'",
}


@pytest.mark.parametrize("event,table", [("INSERT", "hospitals_auditevent"), ("UPDATE", "hospitals_auditchainhead")])
def test_an_entry_outside_a_transaction_that_fails_leaves_nothing(flushable_audit, hospital_a, event, table):
    """The entry's insert, or the head's update after it (on MariaDB a later statement of the
    same round trip), is refused: the error reaches the caller, nothing of the entry stays,
    the connection is usable and the chain goes on without a gap."""
    first = audit_record(action="view", object_type="patient", object_id=1, hospital=hospital_a)
    with connection.cursor() as cursor:
        cursor.execute(REFUSE[connection.vendor].format(event=event, table=table))
    try:
        with pytest.raises(DatabaseError, match="append refused"):
            audit_record(action="view", object_type="patient", object_id=2, hospital=hospital_a)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER test_refuse")
    assert connection.get_autocommit() and not connection.in_atomic_block
    assert stored_chain(connection, hospital_a) == ([1], (1, first.hash))
    third = audit_record(action="view", object_type="patient", object_id=3, hospital=hospital_a)
    assert (third.seq, third.prev_hash) == (2, first.hash)
    assert stored_chain(connection, hospital_a) == ([1, 2], (2, third.hash)) and verify()[0]


# --- append-only ---------------------------------------------------------------------------------
def test_model_refuses_update_and_delete(hospital_a):
    event = audit_record(action="create", object_type="thing", object_id=1, hospital=hospital_a)
    event.object_id = "2"
    with pytest.raises(RuntimeError, match="append-only"):
        event.save()
    with pytest.raises(RuntimeError, match="append-only"):
        event.delete()


@pytest.mark.parametrize("sql", [
    "UPDATE hospitals_auditevent SET object_id = 'forged'",
    "DELETE FROM hospitals_auditevent",
])
def test_database_trigger_refuses_raw_update_and_delete(hospital_a, sql):
    audit_record(action="create", object_type="thing", object_id=1, hospital=hospital_a)
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
    assert [e.object_id for e in events(hospital=hospital_a)] == ["1"]


def test_queryset_update_and_delete_are_refused_by_the_database(hospital_a):
    audit_record(action="create", object_type="thing", object_id=1, hospital=hospital_a)
    with scopes_disabled():
        with pytest.raises(DatabaseError), transaction.atomic():
            AuditEvent.objects.filter(hospital=hospital_a).update(object_id="forged")
        with pytest.raises(DatabaseError), transaction.atomic():
            AuditEvent.objects.filter(hospital=hospital_a).delete()
    assert [e.object_id for e in events(hospital=hospital_a)] == ["1"]


# --- tampering is found --------------------------------------------------------------------------
@pytest.fixture
def triggers_dropped(transactional_db):
    """Drop the append-only triggers as an attacker with DDL rights would. MySQL commits
    DDL implicitly, so this runs as a transactional test: afterwards the audit rows are
    removed (the flush could not) and the triggers are created again."""
    vendor = connection.vendor
    create = {"sqlite": TRIGGERS.SQLITE, "mysql": TRIGGERS.MYSQL}[vendor]
    with connection.cursor() as cursor:
        for sql in TRIGGERS.DROP:
            cursor.execute(sql)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM hospitals_auditevent")
            for sql in create:
                cursor.execute(sql)


def write_chain(hospital, n=5):
    return [audit_record(action="update", object_type="patient", object_id=i, hospital=hospital) for i in range(n)]


def test_intact_chains_pass(hospital_a, hospital_b):
    hospital_world(hospital_a, tag="ALPHA")
    hospital_world(hospital_b, tag="BETA")
    ok, out, _ = verify()
    assert ok
    assert f"Audit entries checked: {len(events())}" in out
    assert "intact" in out


def raw(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def test_edited_entry_is_found(triggers_dropped, hospital_a):
    chain = write_chain(hospital_a)
    assert verify()[0]
    raw("UPDATE hospitals_auditevent SET object_id = %s WHERE id = %s", ["999", chain[2].pk])
    ok, out, exc = verify()
    assert not ok and exc.returncode == 1
    assert f"chain {chain_name(hospital_a.pk)} seq 3: entry was altered (hash mismatch)" in out
    assert "1 problem(s)" in str(exc)


def test_edit_with_a_recomputed_hash_still_breaks_the_next_link(triggers_dropped, hospital_a):
    from hospitals.audit import compute_hash

    chain = write_chain(hospital_a)
    forged = events(pk=chain[1].pk)[0]
    forged.actor_email = "someone-else@example.org"
    raw("UPDATE hospitals_auditevent SET actor_email = %s, hash = %s WHERE id = %s",
        [forged.actor_email, compute_hash(forged), forged.pk])
    ok, out, _ = verify()
    assert not ok
    assert "seq 3: link to the previous entry is broken" in out


def test_deleted_middle_entry_is_found(triggers_dropped, hospital_a):
    chain = write_chain(hospital_a)
    raw("DELETE FROM hospitals_auditevent WHERE id = %s", [chain[2].pk])
    ok, out, _ = verify()
    assert not ok
    assert "seq 4: entries missing before seq 4" in out
    assert "seq 4: link to the previous entry is broken" in out


def test_deleted_tail_entry_is_found(triggers_dropped, hospital_a):
    chain = write_chain(hospital_a)
    raw("DELETE FROM hospitals_auditevent WHERE id = %s", [chain[-1].pk])
    ok, out, _ = verify()
    assert not ok
    assert f"chain {chain_name(hospital_a.pk)} seq 5: entries missing at the end of the chain" in out


def test_chain_option_checks_one_chain(triggers_dropped, hospital_a, hospital_b):
    chain = write_chain(hospital_a)
    write_chain(hospital_b, n=3)
    raw("UPDATE hospitals_auditevent SET object_type = 'x' WHERE id = %s", [chain[0].pk])
    ok, out, _ = verify("--chain", chain_name(hospital_b.pk))
    assert ok and "Audit entries checked: 3" in out
    assert not verify("--chain", chain_name(hospital_a.pk))[0]


def test_missing_chain_head_is_found(triggers_dropped, hospital_a):
    write_chain(hospital_a, n=2)
    AuditChainHead.objects.filter(chain=chain_name(hospital_a.pk)).delete()
    ok, out, _ = verify()
    assert not ok and "chain head is missing" in out
