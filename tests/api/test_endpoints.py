"""Every API endpoint runs the checks of APIEndpointTest, plus its own."""

import datetime
import hashlib
import io

import numpy as np
import pytest
from django.conf import global_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_scopes import scope, scopes_disabled
from PIL import Image

from config.uploads import CHUNK_SIZE
from patients.models import Patient
from screening.models import Screening
from tests.factories import png_bytes

from .base import TODAY, APIEndpointTest, assert_problem


class TestPatients(APIEndpointTest):
    basename = "patient"
    create_scope = "write"

    @staticmethod
    def object_of(world):
        return world.patient

    def create_payload(self, world):
        return {"mrn": "NEW-001", "given_name": "Ada", "family_name": "Lovelace", "sex": "female",
                "birth_date": "1985-12-10"}

    def test_update_through_the_service(self):
        url = self.detail_url(self.a.patient.pk)
        response = self.api.patch(url, {"phone": "+1 555 0100", "status": "deceased"}, format="json")
        assert response.status_code == 200
        assert response.json()["phone"] == "+1 555 0100"
        assert response.json()["status"] == "carrier", "status is read-only here"
        assert self.audit_rows("update")

    def test_duplicate_mrn_is_a_field_error(self):
        payload = {**self.create_payload(self.a), "mrn": self.a.patient.mrn}
        body = assert_problem(self.api.post(self.list_url(), payload, format="json"), 400)
        assert "MRN already exists" in body["errors"]["mrn"][0]

    def test_future_birth_date_is_refused_by_the_service(self):
        payload = {**self.create_payload(self.a), "birth_date": "2999-01-01"}
        body = assert_problem(self.api.post(self.list_url(), payload, format="json"), 400)
        assert body["errors"]["birth_date"]

    def test_filters(self):
        assert self.api.get(self.list_url(), {"status": "carrier"}).json()["results"]
        assert not self.api.get(self.list_url(), {"status": "deceased"}).json()["results"]
        future = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)).isoformat()
        assert not self.api.get(self.list_url(), {"updated_since": future}).json()["results"]
        body = assert_problem(self.api.get(self.list_url(), {"updated_since": "yesterday"}), 400)
        assert "updated_since" in body["errors"]

    def test_history_is_one_timeline(self):
        response = self.api.get(self.detail_url(self.a.patient.pk) + "history/")
        assert response.status_code == 200
        kinds = {entry["kind"] for entry in response.json()}
        assert kinds == {"status_change", "lab_test", "screening", "ai_result", "review"}
        assert "no-store" in response["Cache-Control"]
        assert_problem(self.api.get(self.detail_url(self.b.patient.pk) + "history/"), 404)

    def test_session_user_uses_the_portal_policy_and_csrf(self, make_member):
        from rest_framework.test import APIClient

        from hospitals.models import Role

        viewer = make_member(self.a.hospital, Role.VIEWER)
        api = APIClient(enforce_csrf_checks=True)
        api.force_login(viewer)
        assert api.get(self.list_url()).status_code == 200
        # A viewer may not register patients (POLICY); CSRF is checked first for sessions.
        assert_problem(api.post(self.list_url(), self.create_payload(self.a), format="json"), 403)
        registrar = make_member(self.a.hospital, Role.REGISTRAR)
        api = APIClient(enforce_csrf_checks=True)
        api.force_login(registrar)
        without_token = api.post(self.list_url(), self.create_payload(self.a), format="json")
        assert "CSRF" in assert_problem(without_token, 403)["detail"]
        # With the CSRF cookie and the matching header (as the portal's JavaScript sends them) it works.
        from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret

        secret = _get_new_csrf_string()
        api.cookies["csrftoken"] = secret
        ok = api.post(self.list_url(), self.create_payload(self.a), format="json",
                      HTTP_X_CSRFTOKEN=_mask_cipher_secret(secret))
        assert ok.status_code == 201, ok.content


class TestStatusChanges(APIEndpointTest):
    basename = "statuschange"
    create_scope = "write"
    create_audit_action = "update"  # a status change is an update of the patient
    foreign_fields = {"patient": lambda w: w.patient, "lab_test": lambda w: w.lab_test}

    @staticmethod
    def object_of(world):
        return world.status_change

    def create_payload(self, world):
        return {"patient": world.patient.pk, "to_status": "infected", "effective_date": TODAY,
                "reason": "Fever and infiltrates", "lab_test": world.lab_test.pk}

    def test_forbidden_transition_is_a_field_error(self):
        payload = {**self.create_payload(self.a), "to_status": "negative"}
        body = assert_problem(self.api.post(self.list_url(), payload, format="json"), 400)
        assert "cannot become negative" in body["errors"]["to_status"][0]


class TestLabTests(APIEndpointTest):
    basename = "labtest"
    create_scope = "write"
    foreign_fields = {"patient": lambda w: w.patient}

    @staticmethod
    def object_of(world):
        return world.lab_test

    def create_payload(self, world):
        return {"patient": world.patient.pk, "test_type": "antigen", "result": "negative", "sample_date": TODAY}


class TestScreenings(APIEndpointTest):
    basename = "screening"
    create_scope = "screening:upload"
    foreign_fields = {"patient": lambda w: w.patient}
    multipart = True

    @staticmethod
    def object_of(world):
        return world.screening

    def create_payload(self, world):
        return {"patient": world.patient.pk, "file": SimpleUploadedFile("chest.png", png_bytes(seed=3), "image/png")}

    def test_upload_queues_a_screening_and_status_can_be_polled(self):
        response = self.api.post(self.list_url(), self.create_payload(self.a), format="multipart")
        assert response.status_code == 201
        assert response.json()["status"] == "queued"
        status = self.api.get(response["Location"])
        assert status.status_code == 200 and status.json()["is_final"] is False

    def test_status_names_the_newest_result_and_reads_only_what_it_shows(self):
        with CaptureQueriesContext(connection) as queries:
            status = self.api.get(self.detail_url(self.a.screening.pk) + "status/")
        assert status.status_code == 200
        assert status.json()["result"] == self.a.result.pk and status.json()["is_final"] is True
        read = " ".join(q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("SELECT"))
        assert "screening_review" not in read and "screening_scan" not in read and "probabilities" not in read

    @pytest.mark.parametrize("spooled", [False, True], ids=["in memory", "spooled to disk"])
    def test_a_scan_of_several_read_chunks_is_stored_as_sent(self, settings, spooled):
        """The body is read in chunks of config.uploads.CHUNK_SIZE: a scan of 2.3 of them,
        held in memory or spooled to a temporary file, arrives byte for byte."""
        if spooled:
            settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0  # every file arrives in a temporary file
        noise = np.random.default_rng(4).integers(0, 256, (1536, 1600), dtype=np.uint8)  # does not compress
        out = io.BytesIO()
        Image.fromarray(noise, mode="L").save(out, format="PNG")
        data = out.getvalue()
        assert 2 * CHUNK_SIZE < len(data) < global_settings.FILE_UPLOAD_MAX_MEMORY_SIZE
        response = self.api.post(self.list_url(), {"patient": self.a.patient.pk,
                                                   "file": SimpleUploadedFile("chest.png", data, "image/png")},
                                 format="multipart")
        assert response.status_code == 201
        with scopes_disabled():
            scan = Screening.objects.select_related("scan").get(pk=response.json()["id"]).scan
        assert scan.file.read() == data and scan.sha256 == hashlib.sha256(data).hexdigest()

    def test_write_scope_without_upload_scope_cannot_upload(self, make_partner):
        _, api = make_partner(self.a.hospital, scopes=["read", "write"], name="No uploads")
        body = assert_problem(api.post(self.list_url(), self.create_payload(self.a), format="multipart"), 403)
        assert "screening:upload" in body["detail"]

    def test_bad_file_is_refused_and_nothing_stored(self):
        with scopes_disabled():
            before = Screening.objects.count()
        payload = {"patient": self.a.patient.pk, "file": SimpleUploadedFile("x.png", b"GIF89a nope", "image/png")}
        body = assert_problem(self.api.post(self.list_url(), payload, format="multipart"), 400)
        assert body["errors"]
        with scopes_disabled():
            assert Screening.objects.count() == before

    def test_apply_suggestion(self):
        url = self.detail_url(self.a.screening.pk) + "apply-suggestion/"
        # The patient is a carrier already with a positive test and signs on the film: infected is suggested.
        response = self.api.post(url, {}, format="json")
        assert response.status_code == 201, response.content
        assert response.json()["to_status"] == "infected"
        body = assert_problem(self.api.post(url, {}, format="json"), 400)
        assert body["errors"]["non_field_errors"]


class TestAiResults(APIEndpointTest):
    basename = "airesult"

    @staticmethod
    def object_of(world):
        return world.result

    def test_read_only(self):
        url = self.detail_url(self.a.result.pk)
        assert_problem(self.api.patch(url, {"label": "normal"}, format="json"), 405)
        assert_problem(self.api.delete(url), 405)
        assert "screening aid" in self.api.get(url).json()["disclaimer"].lower()

    def test_label_filter(self):
        assert self.api.get(self.list_url(), {"label": "covid"}).json()["results"]
        assert not self.api.get(self.list_url(), {"label": "normal"}).json()["results"]


class TestReviews(APIEndpointTest):
    basename = "review"
    create_scope = "write"
    foreign_fields = {"result": lambda w: w.result}

    @staticmethod
    def object_of(world):
        return world.review

    def create_payload(self, world):
        return {"result": world.result.pk, "decision": "override", "clinical_label": "normal",
                "radiological_signs": False, "reason": "Clear film on second reading"}

    def test_confirm_must_keep_the_label(self):
        payload = {**self.create_payload(self.a), "decision": "confirm"}
        body = assert_problem(self.api.post(self.list_url(), payload, format="json"), 400)
        assert body["errors"]["clinical_label"]


def test_patients_created_through_the_api_are_recorded_as_the_client(hospital_a, make_partner):
    new, api = make_partner(hospital_a)
    response = api.post("/api/v1/hospitals/alpha/patients/", TestPatients.create_payload(None, None), format="json")
    assert response.status_code == 201
    with scope(hospital=hospital_a):
        patient = Patient.objects.get(pk=response.json()["id"])
    assert patient.created_by == new.client.service_user
    assert not new.client.service_user.is_active and not new.client.service_user.has_usable_password()
