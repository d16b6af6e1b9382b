import datetime

import factory
from allauth.account.models import EmailAddress

from hospitals.models import Hospital, Membership, Role, User
from patients.models import LabTest, Patient, Sex

PASSWORD = "correct horse battery staple"


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
