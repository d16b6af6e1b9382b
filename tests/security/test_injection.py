"""C2: no raw SQL built from strings outside a reviewed allow-list (a static scan of the
project's Python). C3: error answers carry no traceback, SQL or settings names. C4: a
patient name with a line break and PHI never reaches the application log raw."""

import ast
import logging
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from ..factories import hospital_world

ROOT = Path(settings.BASE_DIR)
SKIP_DIRS = {".venv", "tests", "node_modules", "var", ".git", "static"}

# Files that may build SQL text, each reviewed: identifiers only, from code, never from a request.
ALLOW_LIST = {
    "hospitals/migrations/0002_audit_append_only.py": "trigger DDL constants of the append-only audit table",
    "hospitals/management/commands/backup_drill.py": "table names from the model registry, quoted by the backend",
}
ALLOW_DIRS = {
    "bench": "benchmarks run by an operator on their own database (database names from arguments)",
    "reliability": "the load and fault-injection harness, run by an operator, never by a request",
}


def built_string(node) -> bool:
    """An f-string, %-formatting, concatenation or .format() call."""
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
        return True
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"


def raw_sql_sites(path: Path) -> list[str]:
    sites = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name in ("raw", "extra") and isinstance(node.func, ast.Attribute):
            sites.append(f"{path.relative_to(ROOT)}:{node.lineno} .{name}(")
        elif name == "RawSQL":
            sites.append(f"{path.relative_to(ROOT)}:{node.lineno} RawSQL")
        elif name in ("execute", "executemany") and node.args and built_string(node.args[0]):
            sites.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}() of a built string")
    return sites


def project_files():
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if not SKIP_DIRS.intersection(parts):
            yield path


def test_no_raw_sql_outside_the_allow_list(figure):
    scanned, flagged, allowed = 0, [], []
    for path in project_files():
        scanned += 1
        relative = str(path.relative_to(ROOT))
        sites = raw_sql_sites(path)
        if relative in ALLOW_LIST or relative.split("/")[0] in ALLOW_DIRS:
            allowed += sites
        else:
            flagged += sites
    assert scanned > 50
    assert not flagged, "raw SQL outside the allow-list:\n" + "\n".join(flagged)
    stale = [p for p in ALLOW_LIST if not (ROOT / p).exists()]
    assert not stale, f"allow-list entries that no longer exist: {stale}"
    figure("C2 static", f"raw-SQL sites outside allow-list 0 ({scanned} files scanned; {len(allowed)} reviewed "
           f"sites in {len(ALLOW_LIST)} files and {len(ALLOW_DIRS)} tool folders)", outside=0, allowed=len(allowed))


def test_the_scan_finds_what_it_bans(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("Patient.objects.raw('x')\nqs.extra(where=['1'])\nRawSQL('x', [])\n"
                     "cursor.execute(f'SELECT {x}')\ncursor.execute('SELECT %s' % x)\n"
                     "cursor.execute('SELECT %s', [x])\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert len(raw_sql_sites(probe)) == 5  # the parameterised query is fine
    finally:
        ROOT = saved


# --- C3 ----------------------------------------------------------------------------------------------
LEAK = re.compile(r"Traceback \(most recent call last\)|File \"/|django\.db\.|SELECT .* FROM|INSERT INTO|"
                  r"IntegrityError|OperationalError|SECRET_KEY|DATABASES|DATABASE_URL|site-packages|"
                  r"\bsqlite3?\b|MySQLdb", re.IGNORECASE)


@pytest.fixture
def error_world(hospital_a, make_partner):
    world = hospital_world(hospital_a, tag="ALPHA")
    _, world.token_api = make_partner(hospital_a)
    return world


def test_error_answers_leak_no_internals(error_world, figure):
    w = error_world
    clinician = Client(raise_request_exception=False)
    clinician.force_login(w.clinician)
    api = w.token_api
    api.raise_request_exception = False
    slug = "alpha"
    patients = reverse("api:patient-list", kwargs={"hospital_slug": slug})
    requests = [
        (Client(), "get", "/no/such/page/", {}),
        (Client(), "post", reverse("account_login"), {"login": "' OR 1=1 --", "password": "x"}),
        (clinician, "get", f"/h/{slug}/patients/99999999999999999999999/", {}),
        (clinician, "get", f"/h/{slug}/patients/?q=%27%20OR%201%3D1%20--&status=nope&page=-1", {}),
        (clinician, "post", reverse("patients:create", kwargs={"hospital_slug": slug}),
         {"mrn": "x" * 500, "birth_date": "2020-13-45", "sex": "robot"}),
        (clinician, "post", reverse("patients:change_status", kwargs={"hospital_slug": slug, "pk": w.patient.pk}),
         {"to_status": "'; DROP TABLE patients_patient; --", "effective_date": "yesterday"}),
        (api, "get", patients + "?ordering=password", {}),
        (api, "get", patients + "?ordering=1;DROP%20TABLE%20x", {}),
        (api, "get", patients + "?updated_since=not-a-date&page_size=99999999999", {}),
        (api, "get", patients + "?cursor=%00%ff'", {}),
        (api, "get", patients + "1" * 30 + "/", {}),
        (api, "post", patients, {"mrn": None, "birth_date": "0000-00-00", "sex": ["x"]}),
        (api, "put", reverse("api:patient-detail", kwargs={"hospital_slug": slug, "pk": w.patient.pk}), "{bad json"),
        (api, "get", f"/fhir/{slug}/Patient?_lastUpdated=gt9999-99-99&unknown=1", {}),
        (api, "get", f"/fhir/{slug}/Observation?patient=Patient/'%20OR%201=1", {}),
        (api, "delete", f"/fhir/{slug}/Patient/{w.patient.pk}", {}),
    ]
    leaks, statuses = [], []
    for client, method, url, data in requests:
        kwargs = {"content_type": "application/json"} if isinstance(data, str) else {}
        response = getattr(client, method)(url, data, **kwargs)
        statuses.append(response.status_code)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        match = LEAK.search(body.decode(errors="replace"))
        if match:
            leaks.append(f"{method} {url} ({response.status_code}): {match.group(0)!r}")
        assert response.status_code < 500, (method, url, response.status_code)
    assert not leaks, "\n".join(leaks)
    assert sum(s >= 400 for s in statuses) >= 10  # the probes did reach error paths
    figure("C3", f"responses with stack/SQL leakage 0 (of {len(requests)} error probes; 5xx 0)",
           probes=len(requests), leaks=0)


# --- C4 ----------------------------------------------------------------------------------------------
def test_phi_and_line_breaks_never_reach_the_log_raw(hospital_a, caplog, figure):
    from django_scopes import scope

    from patients import services as patient_services

    world = hospital_world(hospital_a, tag="ALPHA")
    client = Client()
    client.force_login(world.clinician)
    given = "Eve\r\nFAKE LOG LINE user=admin action=delete"
    phi = {"given": "Eve", "family": "Zyxwvut-Unique", "mrn": "MRN-PHI-55813", "birth": "1961-07-04"}
    caplog.set_level(logging.DEBUG)
    with scope(hospital=hospital_a):
        patient = patient_services.patient_create(
            hospital=hospital_a, actor=world.admin, mrn=phi["mrn"], given_name=given, family_name=phi["family"],
            sex="female", birth_date=__import__("datetime").date(1961, 7, 4))
    slug = "alpha"
    client.get(reverse("patients:detail", kwargs={"hospital_slug": slug, "pk": patient.pk}))
    client.get(reverse("patients:list", kwargs={"hospital_slug": slug}) + f"?q={phi['family']}")
    client.post(reverse("patients:change_status", kwargs={"hospital_slug": slug, "pk": patient.pk}),
                {"to_status": "infected", "effective_date": "2020-01-01", "reason": given + " " + phi["family"]})
    client.get(f"/h/{slug}/patients/%0D%0AFAKE%20LOG%20LINE/")  # a 404 that Django logs, path included
    Client().post(reverse("account_login"), {"login": phi["family"] + "@x.org\r\nFAKE LOG LINE",
                                             "password": "hunter2-secret-password"})
    text = "\n".join(f"{r.name} {r.levelname} {r.getMessage()}" for r in caplog.records)
    assert caplog.records, "the flow logged nothing: the test would prove nothing"
    found = [value for value in (phi["family"], phi["mrn"], "1961-07-04", "hunter2-secret-password") if value in text]
    injected = sum("\nFAKE LOG LINE" in r.getMessage() or "\rFAKE LOG LINE" in r.getMessage()
                   for r in caplog.records)
    assert not found, f"PHI or secrets in the log: {found}\n{text}"
    assert injected == 0, text
    figure("C4", f"PHI/secrets found in app logs 0; newline injections 0 ({len(caplog.records)} log records "
           "over a register/view/search/status/404/sign-in flow)", records=len(caplog.records))
