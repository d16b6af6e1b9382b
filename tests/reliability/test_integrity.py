"""Rows F1, F3, F4 and F6 of RELIABILITY.md: stored files carry checksums checked before
download and before inference; the audit trail refuses UPDATE and DELETE and its
verifier finds an edited row; timestamps are UTC; results cannot be changed through the
API or the admin. (F5, the model hash, is tests/ml/test_train_inference.py
::test_tampered_model_is_refused; F7, the backup drill, is test_backup_drill.py.)"""

import datetime
import io
from pathlib import Path

import pytest
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from hospitals.audit import audit_record, audit_verify
from hospitals.models import AuditEvent, Role
from screening.models import AiResult, Screening, ScreeningStatus
from screening.services import scan_upload
from tests.factories import add_screening, hospital_world
from tests.screening.conftest import dicom_bytes, jpeg_bytes, png_bytes

TRIGGERS = __import__("importlib").import_module("hospitals.migrations.0002_audit_append_only")


def flip_one_byte(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if at is None else at
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_corrupted_originals_are_neither_served_nor_screened(db, world, client, figure):
    """F1. One byte flipped in each stored original: the download answers an error without
    the file's bytes, and the worker's task ends the screening as failed without running
    the model (it checks the sha256 before decoding)."""
    from screening.tasks import screening_run

    client.force_login(world.uploader)
    files = {"png": png_bytes(), "jpeg": jpeg_bytes(), "dcm": dicom_bytes()}
    detected, served, inferred = 0, 0, 0
    for kind, data in files.items():
        with scope(hospital=world.hospital):
            screening = scan_upload(patient=world.patient, data=data, filename=f"f1.{kind}", actor=world.uploader)
        scan = screening.scan
        url = f"/h/{world.hospital.slug}/scans/{scan.pk}/original"
        intact = client.get(url)
        assert intact.status_code == 200 and b"".join(intact.streaming_content) == data
        flip_one_byte(Path(settings.MEDIA_ROOT) / scan.file.name)
        response = client.get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        detected += response.status_code == 500 and b"integrity check" in body
        served += response.status_code == 200 or data[:64] in body
        outcome = screening_run.apply(kwargs={"screening_id": screening.pk, "hospital_id": world.hospital.pk}).get()
        with scopes_disabled():
            screening.refresh_from_db()
            inferred += AiResult.objects.filter(screening=screening).exists()
        assert (outcome, screening.status) == (ScreeningStatus.FAILED, ScreeningStatus.FAILED)
        assert "does not match its checksum" in screening.reason
    figure("F1", f"files corrupted {len(files)}; detected {detected}/{len(files)}; served/inferred from corrupted "
                 f"{served + inferred} (originals, checked on download and before inference)",
           corrupted=len(files), detected=detected, served=served, inferred=inferred)
    assert detected == len(files) and served == 0 and inferred == 0


@pytest.fixture
def triggers_dropped(transactional_db):
    """An attacker with DDL rights drops the append-only triggers (and they come back)."""
    create = {"sqlite": TRIGGERS.SQLITE, "mysql": TRIGGERS.MYSQL}[connection.vendor]
    with connection.cursor() as cursor:
        for sql in TRIGGERS.DROP:
            cursor.execute(sql)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM hospitals_auditevent")
            cursor.execute("DELETE FROM hospitals_auditchainhead")
            for sql in create:
                cursor.execute(sql)


def _tamper_attempts(hospital) -> tuple[int, int]:
    """UPDATE and DELETE through SQL with the triggers in place: (attempts, refused)."""
    audit_record(action="view", object_type="patient", object_id=1, hospital=hospital)
    attempts = refused = 0
    for sql in ("UPDATE hospitals_auditevent SET object_id = 'forged'", "DELETE FROM hospitals_auditevent",
                "UPDATE hospitals_auditevent SET actor_email = '' WHERE seq = 1"):
        attempts += 1
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(sql)
        except DatabaseError:
            refused += 1
    return attempts, refused


def test_audit_tampering_is_refused_or_detected(hospital_a, figure, db):
    """F3 (triggers). Edits through SQL are refused by the database."""
    attempts, refused = _tamper_attempts(hospital_a)
    with scopes_disabled():
        assert list(AuditEvent.objects.values_list("object_id", flat=True)) == ["1"]
    figure("F3 triggers", f"tamper attempts via SQL {attempts}; refused {refused}/{attempts}",
           attempts=attempts, refused=refused)
    assert refused == attempts


def test_edits_with_the_triggers_dropped_are_detected(triggers_dropped, hospital_a, figure):
    """F3 (verifier). With the triggers gone, each kind of edit is found by audit_verify."""
    edits = {
        "field edited": "UPDATE hospitals_auditevent SET object_id = 'forged' WHERE seq = 2",
        "row deleted": "DELETE FROM hospitals_auditevent WHERE seq = 2",
        "tail deleted": "DELETE FROM hospitals_auditevent WHERE seq = 5",
        "timestamp moved": "UPDATE hospitals_auditevent SET at = '2020-01-01 00:00:00' WHERE seq = 3",
    }
    detected = 0
    for sql in edits.values():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM hospitals_auditevent")
            cursor.execute("DELETE FROM hospitals_auditchainhead")
        for i in range(5):
            audit_record(action="update", object_type="patient", object_id=i, hospital=hospital_a)
        assert audit_verify()[1] == []
        with connection.cursor() as cursor:
            cursor.execute(sql)
        detected += bool(audit_verify()[1])
    figure("F3 verifier", f"tamper attempts {len(edits)} (triggers dropped); detected {detected}/{len(edits)}",
           attempts=len(edits), detected=detected)
    assert detected == len(edits)


def test_least_privilege_app_role_cannot_update_or_delete_audit_rows(flushable_audit, hospital_a, figure):
    """F3 (role). On MariaDB the application's account is granted SELECT and INSERT on the
    audit table only (README "Security and reliability" lists the GRANTs): this creates
    such an account and checks what it may do. (CREATE USER and GRANT commit implicitly,
    so this is a transactional test: its rows are flushed afterwards, not rolled back.)"""
    if connection.vendor != "mysql":
        figure("F3 role", "app-role UPDATE/DELETE privilege: not run (needs MariaDB)", run=False)
        pytest.skip("the least-privilege account is a MariaDB check; the report says it was not run")
    import MySQLdb

    name = connection.settings_dict["NAME"]
    user, password = "hospital_app_probe", "probe-Pass-7731"
    audit_record(action="view", object_type="patient", object_id=1, hospital=hospital_a)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP USER IF EXISTS '{user}'@'%%'")
        cursor.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY '{password}'")
        for statement in app_role_grants(name, user):
            cursor.execute(statement)
    refused = {}
    try:
        db_settings = connection.settings_dict
        app = MySQLdb.connect(host=db_settings["HOST"] or "127.0.0.1", port=int(db_settings["PORT"] or 3306),
                              user=user, password=password, database=name)
        for what, sql in {"UPDATE": "UPDATE hospitals_auditevent SET object_id = 'x'",
                          "DELETE": "DELETE FROM hospitals_auditevent",
                          "TRUNCATE": "TRUNCATE TABLE hospitals_auditevent",
                          "DROP TRIGGER": "DROP TRIGGER audit_no_update"}.items():
            try:
                app.cursor().execute(sql)
                refused[what] = False
            except MySQLdb.OperationalError as exc:
                refused[what] = exc.args[0] in (1142, 1044, 1227)  # command denied / access denied
        cur = app.cursor()
        cur.execute("SELECT COUNT(*) FROM hospitals_auditevent")
        readable = cur.fetchone()[0] == 1
        app.close()
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP USER IF EXISTS '{user}'@'%%'")
    held = [what for what, ok in refused.items() if not ok]
    figure("F3 role", f"app-role UPDATE/DELETE privilege: {'none' if not held else ', '.join(held)} "
                      f"(refused {len(refused) - len(held)}/{len(refused)}: {', '.join(refused)})",
           run=True, refused=len(refused) - len(held), attempts=len(refused))
    assert held == [] and readable


def app_role_grants(database: str, user: str, host: str = "%") -> list[str]:
    """The application's grants: reading and adding rows everywhere, changing and deleting
    them everywhere but in the audit trail (no DDL, no TRIGGER, no TRUNCATE)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [database])
        tables = sorted(t for (t,) in cursor.fetchall() if t != "hospitals_auditevent")
    return [f"GRANT SELECT, INSERT ON `{database}`.* TO '{user}'@'{host}'",
            *(f"GRANT UPDATE, DELETE ON `{database}`.`{t}` TO '{user}'@'{host}'" for t in tables)]


def test_timestamps_are_utc(db, hospital_a, world, figure):
    """F4. USE_TZ, TIME_ZONE UTC, and what the database hands back is UTC (MariaDB: the
    connection's time_zone)."""
    audit_record(action="view", object_type="patient", object_id=1, hospital=hospital_a)
    with scope(hospital=world.hospital):
        scan_upload(patient=world.patient, data=png_bytes(), filename="f4.png", actor=world.uploader)
    with scopes_disabled():
        stamps = [*AuditEvent.objects.values_list("at", flat=True),
                  *Screening.objects.values_list("created_at", flat=True)]
    non_utc = [s for s in stamps if s.utcoffset() != datetime.timedelta(0)]
    now = timezone.now()
    skewed = [s for s in stamps if abs((now - s).total_seconds()) > 120]
    figure("F4", f"timestamps checked {len(stamps)}; non-UTC timestamps {len(non_utc)}; "
                 f"USE_TZ {settings.USE_TZ}; TIME_ZONE {settings.TIME_ZONE}",
           checked=len(stamps), non_utc=len(non_utc))
    assert settings.USE_TZ and settings.TIME_ZONE == "UTC" and non_utc == [] and skewed == []


def test_results_cannot_be_changed_through_the_api_the_admin_or_the_model(hospital_a, client, figure, db):
    """F6. Every way of writing an AI result is refused: API PUT/PATCH/DELETE/POST, the
    admin change form and delete page, and a save of a loaded row. Each result keeps the
    model version and the input's sha256."""
    from rest_framework.test import APIClient

    with scopes_disabled():
        world = hospital_world(hospital_a, tag="F6")
        add_screening(world, tag="F6")
    result = world.result
    before = {f.name: getattr(result, f.attname) for f in AiResult._meta.concrete_fields}
    api = APIClient()
    api.force_authenticate(world.admin)
    base = f"/api/v1/hospitals/{hospital_a.slug}/ai-results/"
    attempts = {
        "API PUT": api.put(f"{base}{result.pk}/", {"label": "normal"}, format="json").status_code,
        "API PATCH": api.patch(f"{base}{result.pk}/", {"label": "normal"}, format="json").status_code,
        "API DELETE": api.delete(f"{base}{result.pk}/").status_code,
        "API POST": api.post(base, {"label": "normal"}, format="json").status_code,
    }
    from django.contrib.auth import get_user_model

    superuser = get_user_model().objects.create_superuser(email="f6-root@example.org", password="x-Pass-7731")
    client.force_login(superuser)
    admin_url = f"/admin/screening/airesult/{result.pk}/change/"
    attempts["admin change POST"] = client.post(admin_url, {"label": "normal"}).status_code
    attempts["admin delete POST"] = client.post(f"/admin/screening/airesult/{result.pk}/delete/",
                                                {"post": "yes"}).status_code
    with scopes_disabled():
        loaded = AiResult.objects.get(pk=result.pk)
        loaded.label = "normal"
        try:
            loaded.save()
            attempts["model save"] = "saved"
        except RuntimeError:
            attempts["model save"] = "refused"
        after = {f.name: getattr(AiResult.objects.get(pk=result.pk), f.attname) for f in AiResult._meta.concrete_fields}
    mutable = [k for k, v in attempts.items() if v not in (403, 405, "refused")]
    figure("F6", f"write paths tried {len(attempts)}; mutable result paths {len(mutable)}; every result carries "
                 f"model version and input sha256: {bool(result.model_version and result.input_sha256)}",
           paths=len(attempts), mutable=len(mutable))
    assert mutable == [], attempts
    assert after == before and result.model_version and len(result.input_sha256) == 64
