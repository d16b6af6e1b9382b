"""Fixtures for webhook tests: a hospital with an admin, a clinician and a patient, an
endpoint with its secret, and a real HTTP receiver on 127.0.0.1 (http.server in a
thread) that verifies signatures and can fail a number of times before it accepts."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from django_scopes import scope, scopes_disabled

from hospitals.models import Role
from tests.factories import HospitalFactory, MembershipFactory, PatientFactory, UserFactory
from webhooks import services, signing


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """What the test server got and how it answers: `fail_first` requests get
    `fail_status` (or `fail_location` as a redirect), the rest 200."""

    url: str = ""
    fail_first: int = 0
    fail_status: int = 500
    fail_location: str = ""
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def verified(self, secret: str) -> list[bool]:
        return [signing.verify(secret=secret, body=r.body, timestamp=r.headers.get("X-Webhook-Timestamp"),
                               signature_header=r.headers.get("X-Webhook-Signature")) for r in self.requests]


@pytest.fixture
def receiver():
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with state.lock:
                state.requests.append(Received(self.path, dict(self.headers), body))
                failing = len(state.requests) <= state.fail_first
            if failing:
                self.send_response(state.fail_status)
                if state.fail_location:
                    self.send_header("Location", state.fail_location)
                payload = b"receiver is down " * 200  # longer than the logged snippet
            else:
                self.send_response(200)
                payload = b'{"ok": true}'
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def allow_local(settings):
    """The receiver listens on loopback, which production refuses."""
    settings.WEBHOOK_ALLOW_PRIVATE_DESTINATIONS = True
    settings.WEBHOOK_TIMEOUT_SECONDS = 5


@pytest.fixture
def hook(db, allow_local, receiver):
    """A hospital with an admin, a clinician and a patient, and an endpoint subscribed
    to every event that points at the receiver."""
    with scopes_disabled():
        hospital = HospitalFactory(name="Hook General", slug="hook")
        admin = UserFactory(email="admin@hook.test")
        MembershipFactory(user=admin, hospital=hospital, role=Role.HOSPITAL_ADMIN)
        clinician = UserFactory(email="clinician@hook.test")
        MembershipFactory(user=clinician, hospital=hospital, role=Role.CLINICIAN)
        patient = PatientFactory(hospital=hospital, mrn="HOOK-0001", given_name="Secretgiven",
                                 family_name="Secretfamily")
    with scope(hospital=hospital):
        endpoint, secret = services.endpoint_create(
            hospital=hospital, url=receiver.url, actor=admin, description="Partner EHR",
            events=["screening.completed", "screening.failed", "review.recorded", "patient.status_changed"])
    return SimpleNamespace(hospital=hospital, admin=admin, clinician=clinician, patient=patient, endpoint=endpoint,
                           secret=secret, receiver=receiver)
