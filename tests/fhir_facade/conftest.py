"""Fixtures of the FHIR facade tests: the API tests' partner clients (real tokens from
/o/token/) and fresh throttle counters, plus two hospital worlds with a reviewed PNG
screening each and a DICOM scan with its own screening."""

import pytest
from django_scopes import scope

from screening.models import AiResult
from tests.api.conftest import _throttle_cache, make_partner  # noqa: F401  (fixtures)
from tests.factories import add_screening, airesult_for, hospital_world

MODEL_SHA256 = "ab12cd34ef56" + "0" * 52  # what tests.factories.airesult_for stores
OTHER_MODEL_SHA256 = "cd" * 32  # hospital A's DICOM film
B_ONLY_MODEL_SHA256 = "be" * 32  # hospital B's: a model A never used


def add_dicom(world, *, model_sha256: str) -> None:
    """A DICOM film of the world's patient (`world.dicom_scan`), screened
    (`world.dicom_screening`, `world.dicom_result`) by another model (`model_sha256`)
    than the PNG film, not reviewed."""
    from screening import services
    from tests.screening.conftest import dicom_bytes

    with scope(hospital=world.hospital):
        screening = services.scan_upload(patient=world.patient, data=dicom_bytes(), filename="film.dcm",
                                         actor=world.clinician)
        world.dicom_screening = screening
        world.dicom_scan = screening.scan
        world.dicom_result = airesult_for(screening, covid=0.2, model_version="1.3.0")
        # A second model (another sha256): AI results are immutable, so set it in the table.
        AiResult.objects.filter(pk=world.dicom_result.pk).update(model_sha256=model_sha256)
        world.dicom_result.model_sha256 = model_sha256


@pytest.fixture
def worlds(hospital_a, hospital_b):
    a, b = hospital_world(hospital_a, tag="ALPHA"), hospital_world(hospital_b, tag="BETA")
    for world, tag, sha in ((a, "ALPHA", OTHER_MODEL_SHA256), (b, "BETA", B_ONLY_MODEL_SHA256)):
        add_screening(world, tag=tag)
        add_dicom(world, model_sha256=sha)
    return a, b


@pytest.fixture
def fhir_api(worlds, make_partner):  # noqa: F811
    """Hospital A's partner client with every scope, as (NewClient, APIClient)."""
    return make_partner(worlds[0].hospital)
