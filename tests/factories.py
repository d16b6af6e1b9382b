import datetime
import time

import factory
from allauth.account.models import EmailAddress
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value

from hospitals.models import Hospital, Membership, Role, User
from patients.models import LabTest, Patient, Sex

PASSWORD = "correct horse battery staple"
TOTP_STEP = 30


def totp_code(secret: str, at: float | None = None) -> str:
    """The authenticator app's code at `at` (now when not given). allauth accepts only the
    current 30-second window: for now, a code with under two seconds left is not returned
    but the next window's is, once it has begun, so that it is still current when it arrives."""
    if at is None:
        left = TOTP_STEP - time.time() % TOTP_STEP
        if left < 2:
            time.sleep(left)
        at = time.time()
    return format_hotp_value(hotp_value(secret, int(at) // TOTP_STEP))


class HospitalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Hospital
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Hospital {n}")
    slug = factory.Sequence(lambda n: f"hospital-{n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.org")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def verified_email(obj, create, extracted, **kwargs):
        if create:
            obj.save()
            EmailAddress.objects.get_or_create(user=obj, email=obj.email, defaults={"primary": True, "verified": True})


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    hospital = factory.SubFactory(HospitalFactory)
    role = Role.CLINICIAN


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient

    hospital = factory.SubFactory(HospitalFactory)
    mrn = factory.Sequence(lambda n: f"MRN{n:06d}")
    given_name = factory.Faker("first_name")
    family_name = factory.Faker("last_name")
    sex = Sex.FEMALE
    birth_date = datetime.date(1970, 5, 17)
    status_since = factory.LazyFunction(datetime.date.today)


class LabTestFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LabTest

    patient = factory.SubFactory(PatientFactory)
    hospital = factory.SelfAttribute("patient.hospital")
    test_type = "rt_pcr"
    result = "positive"
    sample_date = factory.LazyFunction(datetime.date.today)
    recorded_by = factory.SubFactory(UserFactory)


def hospital_world(hospital: Hospital, *, tag: str):
    """One hospital with an admin, a clinician, a registered patient, a lab test, a status
    change and the audit rows they leave; names and MRN carry `tag` so a test can look
    for them in another hospital's responses. Returns a SimpleNamespace."""
    from types import SimpleNamespace

    from django_scopes import scope

    from hospitals.models import AuditEvent
    from patients import services as patient_services

    admin = UserFactory(email=f"admin-{tag.lower()}@example.org")
    clinician = UserFactory(email=f"clinician-{tag.lower()}@example.org")
    with scope(hospital=hospital):
        admin_membership = MembershipFactory(user=admin, hospital=hospital, role=Role.HOSPITAL_ADMIN)
        clinician_membership = MembershipFactory(user=clinician, hospital=hospital, role=Role.CLINICIAN)
        patient = patient_services.patient_create(
            hospital=hospital, actor=admin, mrn=f"{tag}-MRN-7731", given_name=f"{tag}given",
            family_name=f"{tag}family", sex=Sex.FEMALE, birth_date=datetime.date(1980, 1, 2),
        )
        lab_test = patient_services.labtest_create(
            patient=patient, test_type="rt_pcr", result="positive", sample_date=datetime.date.today(),
            actor=clinician, notes=f"{tag}note",
        )
        status_change = patient_services.patient_change_status(
            patient=patient, to_status="carrier", effective_date=datetime.date.today(), reason=f"{tag}reason",
            actor=clinician, source="lab_result", lab_test=lab_test,
        )
        audit_event = AuditEvent.objects.filter(hospital=hospital).order_by("-seq").first()
        history_id = patient.history.order_by("-history_id").first().history_id
    return SimpleNamespace(
        hospital=hospital, admin=admin, clinician=clinician, admin_membership=admin_membership,
        clinician_membership=clinician_membership, patient=patient, lab_test=lab_test,
        status_change=status_change, audit_event=audit_event, history_id=history_id,
        secrets=[patient.mrn, patient.given_name, patient.family_name, f"{tag}note", f"{tag}reason"],
    )


# --- Screening ----------------------------------------------------------------------------------

def png_bytes(*, size: tuple[int, int] = (96, 80), seed: int = 0) -> bytes:
    """A small 8-bit grayscale PNG: a vertical gradient with two darker 'lung' ellipses.
    Different seeds give different files (and so different sha256)."""
    import io

    import numpy as np
    from PIL import Image

    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = 60 + 140 * y / max(height - 1, 1)
    for cx in (0.3 * width, 0.7 * width):
        inside = ((x - cx) / (0.17 * width)) ** 2 + ((y - 0.5 * height) / (0.32 * height)) ** 2 < 1
        image[inside] -= 45
    image = np.clip(image + (seed % 7), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(image, mode="L").save(out, format="PNG")
    return out.getvalue()


def heatmap_overlay(*, size: tuple[int, int] = (96, 80), fmt: str = "JPEG") -> bytes:
    """A small RGB image standing in for a Grad-CAM overlay (JPEG, as the worker draws it;
    PNG, as results stored earlier hold)."""
    import io

    import numpy as np
    from PIL import Image

    width, height = size
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    rgb[..., 2] = 255 - rgb[..., 0]
    out = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(out, format=fmt)
    return out.getvalue()


def screening_for(patient, *, actor, status: str = "queued", reason: str = "", seed: int = 0,
                  filename: str = "chest.png"):
    """A scan of `patient` uploaded through `scan_upload`, its screening moved to `status`
    (done gets no result: see `airesult_for`). Call inside the patient's hospital scope."""
    from screening import services
    from screening.models import Screening

    screening = services.scan_upload(patient=patient, data=png_bytes(seed=seed), filename=filename, actor=actor)
    if status != "queued":
        Screening.objects.filter(pk=screening.pk).update(status=status, reason=reason)
        screening.refresh_from_db()
    return screening


def airesult_for(screening, *, covid: float = 0.82, heatmap: bool = True, model_version: str = "1.2.0"):
    """An AI result as the worker would store it (label by the 0.5 threshold), and the
    screening marked done. Call inside the hospital scope."""
    from django.core.files.base import ContentFile

    from screening.models import AiResult, Screening
    from screening.services import review_priority_for

    rest = 1.0 - covid
    probabilities = {"covid": covid, "pneumonia": round(rest * 0.6, 6), "normal": round(rest * 0.4, 6)}
    label = max(probabilities, key=probabilities.get) if covid < 0.5 else "covid"
    result = AiResult(
        hospital_id=screening.hospital_id, patient_id=screening.patient_id, screening=screening,
        probabilities=probabilities, label=label, covid_probability=covid, covid_positive=covid >= 0.5,
        decision="covid_suspected" if covid >= 0.5 else "covid_not_suspected", threshold=0.5,
        model_name="cxrnet", model_version=model_version, model_sha256="ab12cd34ef56" + "0" * 52,
        preprocessing_version="pp-3", input_sha256=screening.scan.sha256, worker="test-worker",
        timings_ms={"predict": 12.5},
    )
    if heatmap:
        result.heatmap.save("heatmap", ContentFile(heatmap_overlay()), save=False)
    result.save()
    Screening.objects.filter(pk=screening.pk).update(status="done", review_priority=review_priority_for(result))
    screening.refresh_from_db()
    return result


def add_screening(world, *, tag: str) -> None:
    """Give a `hospital_world` a reviewed screening: `world.scan`, `.screening`, `.result`
    (with a heatmap) and `.review`. The client's filename and the review's reason carry
    `tag` and join `world.secrets`."""
    from django_scopes import scope

    from screening.services import review_create

    with scope(hospital=world.hospital):
        world.screening = screening_for(world.patient, actor=world.clinician, filename=f"{tag}-film.png")
        world.scan = world.screening.scan
        world.result = airesult_for(world.screening)
        world.review = review_create(result=world.result, decision="confirm", clinical_label="covid",
                                     radiological_signs=True, reason=f"{tag}review", actor=world.clinician)
    world.secrets += [f"{tag}-film.png", f"{tag}review"]


# --- Webhooks -----------------------------------------------------------------------------------

def add_webhook(world, *, tag: str) -> None:
    """Give a `hospital_world` a webhook endpoint (`world.endpoint`, URL and description
    carry `tag`), a delivery of its status change (`world.delivery`) and one logged
    attempt (`world.attempt`). The URL and description join `world.secrets`."""
    from django.utils import timezone
    from django_scopes import scope

    from webhooks import payloads
    from webhooks.models import Attempt
    from webhooks.services import endpoint_create, event_emit

    url = f"https://{tag.lower()}-receiver.example/hooks"
    with scope(hospital=world.hospital):
        world.endpoint, world.webhook_secret = endpoint_create(
            hospital=world.hospital, url=url, events=["patient.status_changed"], description=f"{tag}hook",
            actor=world.admin)
        world.delivery = event_emit(hospital=world.hospital, event="patient.status_changed",
                                    payload=payloads.status_change_data(world.status_change))[0]
        world.attempt = Attempt.objects.create(
            hospital=world.hospital, delivery=world.delivery, number=1, started_at=timezone.now(), duration_ms=12,
            status_code=500, response_snippet=f"{tag}snippet", error="")
    world.secrets += [url, f"{tag}hook", f"{tag}snippet", world.webhook_secret]
