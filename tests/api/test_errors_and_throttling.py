"""Problem details for 405 and 429, throttles per client, per user and per hospital upload,
and the OpenAPI schema (validated, with the three scopes)."""

import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import yaml
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from hospitals.api.throttling import CredentialRateThrottle
from hospitals.models import Role
from tests.factories import PatientFactory, png_bytes

from .base import assert_problem

pytestmark = pytest.mark.django_db


@pytest.fixture
def low_rates(settings):
    def set_rates(**rates):
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
            **django_settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], **rates}}

    return set_rates


def test_method_not_allowed_is_a_problem(hospital_a, make_partner):
    _, api = make_partner(hospital_a)
    body = assert_problem(api.delete("/api/v1/hospitals/alpha/patients/"), 405)
    assert body["instance"] == "/api/v1/hospitals/alpha/patients/"


def test_throttled_per_client_with_problem_details(hospital_a, make_partner, low_rates):
    low_rates(credential="3/min")
    _, api = make_partner(hospital_a)
    _, other = make_partner(hospital_a, name="Other client")
    for _ in range(3):
        assert api.get("/api/v1/hospitals/alpha/").status_code == 200
    body = assert_problem(api.get("/api/v1/hospitals/alpha/"), 429)
    assert body["retry_after"] > 0
    assert api.get("/api/v1/hospitals/alpha/")["Retry-After"]
    assert other.get("/api/v1/hospitals/alpha/").status_code == 200, "counted per client"


def test_throttled_per_user(hospital_a, make_member, low_rates):
    low_rates(credential="2/min")
    api = APIClient()
    api.force_login(make_member(hospital_a, Role.VIEWER))
    assert api.get("/api/v1/hospitals/alpha/").status_code == 200
    assert api.get("/api/v1/hospitals/alpha/").status_code == 200
    assert_problem(api.get("/api/v1/hospitals/alpha/"), 429)


def test_uploads_throttled_per_hospital(hospital_a, make_partner, unscoped, low_rates):
    low_rates(upload="1/min")
    patient = PatientFactory(hospital=hospital_a)
    _, first = make_partner(hospital_a)
    _, second = make_partner(hospital_a, name="Second client")

    def upload(api, seed):
        return api.post("/api/v1/hospitals/alpha/screenings/", {
            "patient": patient.pk, "file": SimpleUploadedFile("c.png", png_bytes(seed=seed), "image/png")},
            format="multipart")

    assert upload(first, 1).status_code == 201
    assert_problem(upload(second, 2), 429)  # another client of the same hospital
    assert second.get("/api/v1/hospitals/alpha/screenings/").status_code == 200  # reads are not upload-limited


def test_schema_validates_without_warnings(tmp_path):
    out = tmp_path / "schema.yml"
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn", "--file", str(out)],
        capture_output=True, text=True, cwd=django_settings.BASE_DIR,
        env={**__import__("os").environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    schema = yaml.safe_load(out.read_text())
    flows = schema["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]
    assert set(flows["scopes"]) == {"read", "write", "screening:upload"}
    upload = schema["paths"]["/api/v1/hospitals/{hospital_slug}/screenings/"]["post"]
    assert {"oauth2": ["screening:upload"]} in upload["security"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            assert {"401", "403", "404", "429"} <= set(operation["responses"]), (method, path)


def test_docs_pages_use_local_assets(client):
    for url in ("/api/v1/docs/", "/api/v1/redoc/"):
        html = client.get(url).content.decode()
        assert "cdn.jsdelivr" not in html and "unpkg.com" not in html
        assert "/static/drf_spectacular_sidecar/" in html
    assert client.get("/api/v1/schema/").status_code == 200


def credential_request(client_pk: int):
    """What CredentialRateThrottle reads of a request: the partner client it authenticated."""
    return SimpleNamespace(partner_client=SimpleNamespace(pk=client_pk))


def test_concurrent_requests_of_a_client_are_each_counted(settings, low_rates, monkeypatch):
    """Twelve web threads at once, three requests each, against the cache every web node shares
    (Redis where it runs): exactly the rate passes, none is lost to a concurrent write."""
    settings.API_THROTTLE_CACHE = "default"
    low_rates(credential="10/min")
    monkeypatch.setattr(CredentialRateThrottle, "timer", staticmethod(lambda: 1_800_000_030.0))
    request = credential_request(uuid.uuid4().int % 10**9)
    start = threading.Barrier(12)

    def attempts():
        start.wait()
        return [CredentialRateThrottle().allow_request(request, None) for _ in range(3)]

    with ThreadPoolExecutor(12) as pool:
        allowed = [ok for result in pool.map(lambda _: attempts(), range(12)) for ok in result]
    assert allowed.count(True) == 10


def test_the_rate_window_slides(low_rates, monkeypatch):
    """10/min: ten requests half-way through a minute fill it; a quarter into the next minute
    the previous one still weighs 7.5 requests, so two more fit, and Retry-After says when
    the third will."""
    low_rates(credential="10/min")
    now = [1_800_000_030.0]  # 30 s into a window
    monkeypatch.setattr(CredentialRateThrottle, "timer", staticmethod(lambda: now[0]))
    request = credential_request(1)

    def attempt():
        throttle = CredentialRateThrottle()
        return throttle.allow_request(request, None), throttle

    assert all(attempt()[0] for _ in range(10))
    ok, throttle = attempt()
    assert not ok and throttle.wait() == 30
    now[0] += 45  # 15 s into the next window
    assert [attempt()[0] for _ in range(2)] == [True, True]
    ok, throttle = attempt()
    assert not ok and throttle.wait() == 3  # at 18 s the previous window weighs 7
    now[0] += 3
    assert attempt()[0] and not attempt()[0]
