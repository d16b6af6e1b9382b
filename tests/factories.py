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
