"""`manage.py seed_demo [--password P] [--json]`: demo hospitals, staff and patients.

Idempotent: a second run finds every account, membership and patient by its natural key
(email, hospital + user, hospital + MRN) and creates nothing new. The data comes from a
fixed random seed, and every patient record is written through the patient services
inside the hospital's scope, so the demo also has status timelines and an audit trail.
Names, MRNs (DEMO-...), phone numbers (555-01xx) and addresses are fictitious."""

import datetime
import json
import random

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from hospitals import services as hospital_services
from hospitals.audit import audit_record
from hospitals.models import Hospital, Membership, Role, User
from patients import services as patient_services
from patients.models import LabResult, LabTestType, Patient, Sex, Status, StatusSource

DEFAULT_PASSWORD = "Demo-Ward-Round-2020"
SEED = 20200311  # fixed: the same demo on every machine
SUPERUSER_EMAIL = "admin@demo.local"
HOSPITALS = [
    ("demo-general", "Demo General Hospital", "G"),
    ("demo-north", "Demo North Clinic", "N"),
]
STAFF_ROLES = [Role.HOSPITAL_ADMIN, Role.CLINICIAN, Role.RADIOLOGIST, Role.REGISTRAR, Role.VIEWER]
PATIENTS_PER_HOSPITAL = 15

GIVEN_NAMES = {
    Sex.FEMALE: ["Amelia", "Sofia", "Hannah", "Leila", "Marta", "Noor", "Grace", "Ingrid", "Yuki", "Chloe", "Priya",
                 "Elena", "Fatima", "Olivia", "Zara"],
    Sex.MALE: ["Liam", "Mateo", "Omar", "Jonas", "Kenji", "Lucas", "Arjun", "Samuel", "Tomas", "Ethan", "Karim",
               "Diego", "Felix", "Noah", "Viktor"],
}
FAMILY_NAMES = ["Andersen", "Baptiste", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ivanova",
                "Jensen", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Petrov", "Quinn", "Rossi",
                "Santos", "Tanaka", "Underwood", "Varga", "Weber", "Yilmaz", "Zimmermann"]
STREETS = ["Example Street", "Sample Road", "Placeholder Lane", "Fictional Avenue", "Demo Square"]

# Status histories, as (lab result before the step or None, target status, source, reason).
PLANS = [
    [],  # still suspected, awaiting results
    [(LabResult.NEGATIVE, Status.NEGATIVE, StatusSource.LAB_RESULT, "RT-PCR negative, symptoms resolved.")],
    [(LabResult.POSITIVE, Status.INFECTED, StatusSource.LAB_RESULT, "RT-PCR positive with fever and cough.")],
    [(LabResult.POSITIVE, Status.CARRIER, StatusSource.LAB_RESULT, "Antigen positive, no clinical signs.")],
    [(LabResult.POSITIVE, Status.INFECTED, StatusSource.LAB_RESULT, "RT-PCR positive, bilateral opacities on CXR."),
     (LabResult.NEGATIVE, Status.RECOVERED, StatusSource.LAB_RESULT, "Two negative tests, discharged.")],
    [(LabResult.POSITIVE, Status.CARRIER, StatusSource.LAB_RESULT, "Positive contact screening, asymptomatic."),
     (None, Status.INFECTED, StatusSource.CLINICIAN, "Developed fever and dyspnoea.")],
    [(LabResult.POSITIVE, Status.CARRIER, StatusSource.LAB_RESULT, "Antigen positive at admission screening."),
     (LabResult.NEGATIVE, Status.RECOVERED, StatusSource.LAB_RESULT, "Negative follow-up test.")],
    [(LabResult.POSITIVE, Status.INFECTED, StatusSource.LAB_RESULT, "RT-PCR positive, severe pneumonia."),
     (None, Status.DECEASED, StatusSource.CLINICIAN, "Died of respiratory failure in intensive care.")],
    [(None, Status.NEGATIVE, StatusSource.CLINICIAN, "Symptoms explained by another diagnosis.")],
    [(LabResult.INCONCLUSIVE, None, None, None)],  # suspected, inconclusive test: retest pending
]


class Command(BaseCommand):
    help = "Create (or refresh) the demo hospitals, staff accounts and patients. Safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("--password", help=f"Password for every demo account (default: {DEFAULT_PASSWORD}).")
        parser.add_argument("--json", action="store_true", help="Print the logins as JSON only.")

    def handle(self, *args, **options):
        password = options.get("password") or DEFAULT_PASSWORD
        try:
            validate_password(password)
        except ValidationError as exc:
            raise CommandError("The password is too weak: " + " ".join(exc.messages)) from exc
        rng = random.Random(SEED)
        logins = []
        with transaction.atomic():
            admin = self._user(SUPERUSER_EMAIL, password, "Platform", "Admin", superuser=True)
            logins.append({"email": admin.email, "password": password, "role": "superuser", "hospital": ""})
            for slug, name, code in HOSPITALS:
                hospital = Hospital.objects.filter(slug=slug).first() or hospital_services.hospital_create(
                    name=name, slug=slug, actor=admin)
                staff = {}
                for role in STAFF_ROLES:
                    label = Role(role).label
                    user = self._user(f"{role.replace('_', '-')}@{slug}.local", password, "Demo", label)
                    self._membership(user=user, hospital=hospital, role=role, actor=admin)
                    staff[role] = user
                    logins.append({"email": user.email, "password": password, "role": role, "hospital": slug})
                with scope(hospital=hospital):
                    self._patients(hospital=hospital, code=code, staff=staff, rng=rng)
        self._print(logins, as_json=options.get("json", False))

    def _user(self, email, password, first_name, last_name, superuser=False) -> User:
        user = hospital_services.user_find_by_email(email=email)
        if user is None:
            return hospital_services.user_create(email=email, password=password, first_name=first_name,
                                                 last_name=last_name, verified=True, is_superuser=superuser)
        if not user.check_password(password):  # re-run with another --password
            user.set_password(password)
            user.save(update_fields=["password"])
        return user

    def _membership(self, *, user, hospital, role, actor) -> None:
        # Not membership_invite: that one emails the person, and a seed must not send mail.
        with scopes_disabled():
            membership, created = Membership.objects.get_or_create(
                user=user, hospital=hospital, defaults={"role": role, "invited_by": actor})
        if created:
            audit_record(action="create", object_type="membership", object_id=membership.pk, hospital=hospital,
                         actor=actor, detail={"role": role, "seed": True})

    def _patients(self, *, hospital, code, staff, rng) -> None:
        today = timezone.localdate()
        registrar, clinician = staff[Role.REGISTRAR], staff[Role.CLINICIAN]
        for n in range(1, PATIENTS_PER_HOSPITAL + 1):
            # Draw every value before the existence check, so the sequence (and so the
            # data) is the same whether or not earlier patients already exist.
            sex = rng.choice([Sex.FEMALE, Sex.MALE])
            given, family = rng.choice(GIVEN_NAMES[sex]), rng.choice(FAMILY_NAMES)
            birth_date = datetime.date(1935, 1, 1) + datetime.timedelta(days=rng.randrange(0, 365 * 70))
            phone = f"+1 555 01{rng.randrange(0, 100):02d}"
            address = f"{rng.randrange(1, 200)} {rng.choice(STREETS)}, Demo City"
            plan = PLANS[(n - 1) % len(PLANS)]
            test_type = rng.choice([LabTestType.RT_PCR, LabTestType.ANTIGEN])
            mrn = f"DEMO-{code}-{n:04d}"
            if Patient.objects.filter(hospital=hospital, mrn=mrn).exists():
                continue
            patient = patient_services.patient_create(
                hospital=hospital, actor=registrar, mrn=mrn, given_name=given, family_name=family, sex=sex,
                birth_date=birth_date, phone=phone, email="", address=address, national_id="",
            )
            for step, (result, to_status, source, reason) in enumerate(plan):
                lab_test = None
                if result is not None:
                    lab_test = patient_services.labtest_create(
                        patient=patient, test_type=test_type, result=result, actor=clinician,
                        sample_date=today - datetime.timedelta(days=2 * (len(plan) - step)),
                        notes="Demo sample." if result != LabResult.INCONCLUSIVE else "Insufficient sample, retest.",
                    )
                if to_status is not None:
                    patient_services.patient_change_status(
                        patient=patient, to_status=to_status, effective_date=today, reason=reason,
                        source=source, lab_test=lab_test, actor=clinician,
                    )

    def _print(self, logins, *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(logins, indent=2))
            return
        headers = ("role", "hospital", "email", "password")
        rows = [tuple(login[h] or "-" for h in headers) for login in logins]
        widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
        line = "  ".join("{:<%d}" % w for w in widths)
        self.stdout.write(line.format(*headers))
        self.stdout.write(line.format(*("-" * w for w in widths)))
        for row in rows:
            self.stdout.write(line.format(*row))
        password = logins[0]["password"]
        self.stdout.write(self.style.SUCCESS(f"Demo data ready. Password for every demo account: {password}"))
