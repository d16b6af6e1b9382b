"""Patients of one hospital, their COVID-19 status over time and their lab tests.

Status is a state machine (`TRANSITIONS`): a patient starts as suspected; a clinician
records infected (confirmed, with clinical or radiological signs), carrier (confirmed
positive without them) or negative; infected and carrier end in recovered or deceased.
Every change is a `StatusChange` row. The system may suggest a status (a lab result,
a screening review); a clinician decides."""

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from hospitals.managers import HospitalScopedManager
from hospitals.models import Hospital


class Status(models.TextChoices):
    SUSPECTED = "suspected", "Suspected"
    INFECTED = "infected", "Infected"
    CARRIER = "carrier", "Carrier"
    NEGATIVE = "negative", "Negative"
    RECOVERED = "recovered", "Recovered"
    DECEASED = "deceased", "Deceased"


# Allowed next statuses. Infected and carrier move into each other as signs appear or
# resolve; negative and recovered patients can be suspected again or test positive later;
# deceased is final (a wrong entry is corrected by a platform admin, not a transition).
TRANSITIONS: dict[str, frozenset[str]] = {
    Status.SUSPECTED: frozenset({Status.INFECTED, Status.CARRIER, Status.NEGATIVE}),
    Status.INFECTED: frozenset({Status.CARRIER, Status.RECOVERED, Status.DECEASED}),
    Status.CARRIER: frozenset({Status.INFECTED, Status.RECOVERED, Status.DECEASED}),
    Status.NEGATIVE: frozenset({Status.SUSPECTED, Status.INFECTED, Status.CARRIER}),
    Status.RECOVERED: frozenset({Status.SUSPECTED, Status.INFECTED, Status.CARRIER}),
    Status.DECEASED: frozenset(),
}


class Sex(models.TextChoices):
    FEMALE = "female", "Female"
    MALE = "male", "Male"
    OTHER = "other", "Other"
    UNKNOWN = "unknown", "Unknown"


class Patient(models.Model):
    """A patient registered at one hospital. The MRN is unique within that hospital."""

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="patients")
    mrn = models.CharField("MRN", max_length=40, help_text="Medical record number, unique in this hospital.")
    given_name = models.CharField(max_length=100)
    family_name = models.CharField(max_length=100)
    sex = models.CharField(max_length=10, choices=Sex.choices, default=Sex.UNKNOWN)
    birth_date = models.DateField()
    phone = models.CharField(max_length=40, blank=True)
    email = models.EmailField(blank=True)
    address = models.TextField(blank=True)
    national_id = models.CharField(max_length=40, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.SUSPECTED, editable=False)
    status_since = models.DateField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    history = HistoricalRecords()
    objects = HospitalScopedManager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hospital", "mrn"], name="patient_mrn_per_hospital")]
        # One index per filter and ordering of the API, the portal and the FHIR facade, each
        # behind the hospital (every query is one hospital's). InnoDB appends the id, so an
        # equality prefix also serves the API's default order (-id).
        indexes = [
            models.Index(fields=["hospital", "status"]),
            # The lists' order, with the MRN last: the portal's search (a part of a name or
            # the start of an MRN) is tested on the index entries, without reading the rows.
            models.Index(fields=["hospital", "family_name", "given_name", "mrn"]),
            models.Index(fields=["hospital", "status", "family_name", "given_name", "mrn"]),
            models.Index(fields=["hospital", "updated_at"]),
            models.Index(fields=["hospital", "created_at"]),
            models.Index(fields=["hospital", "status_since"]),
            # The admin's changelist across hospitals (a platform admin's), in its default order.
            models.Index(fields=["family_name", "given_name"]),
        ]
        ordering = ["family_name", "given_name", "id"]

    def __str__(self):
        return f"{self.family_name}, {self.given_name} ({self.mrn})"

    @property
    def full_name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    def allowed_transitions(self) -> list[str]:
        return sorted(TRANSITIONS[self.status], key=lambda s: list(Status.values).index(s))


class HospitalChildModel(models.Model):
    """A row that belongs to a patient. It carries the hospital too (scoping never
    depends on a join), and it must be the patient's hospital."""

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="+")

    objects = HospitalScopedManager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if self.hospital_id != self.patient.hospital_id:
            raise ValueError("A patient's records must belong to the patient's hospital.")
        super().save(*args, **kwargs)


class StatusSource(models.TextChoices):
    CLINICIAN = "clinician", "Clinician"
    SCREENING_REVIEW = "screening_review", "Review of a screening"
    LAB_RESULT = "lab_result", "Lab result"


class StatusChange(HospitalChildModel):
    """One step of a patient's status timeline: who, when, effective from, why, on what basis."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.CharField(max_length=20, choices=Status.choices, blank=True)
    to_status = models.CharField(max_length=20, choices=Status.choices)
    effective_date = models.DateField()
    reason = models.TextField()
    source = models.CharField(max_length=20, choices=StatusSource.choices, default=StatusSource.CLINICIAN)
    lab_test = models.ForeignKey("LabTest", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-changed_at", "-id"]
        indexes = [
            models.Index(fields=["hospital", "changed_at"]),
            models.Index(fields=["hospital", "to_status"]),
            models.Index(fields=["hospital", "source"]),
            models.Index(fields=["hospital", "effective_date"]),
            # The admin's changelist across hospitals (a platform admin's), in its default order.
            models.Index(fields=["changed_at"]),
        ]

    def __str__(self):
        return f"{self.from_status or 'new'} -> {self.to_status}"


class LabTestType(models.TextChoices):
    RT_PCR = "rt_pcr", "RT-PCR"
    ANTIGEN = "antigen", "Antigen"


class LabResult(models.TextChoices):
    POSITIVE = "positive", "Positive"
    NEGATIVE = "negative", "Negative"
    INCONCLUSIVE = "inconclusive", "Inconclusive"


class LabTest(HospitalChildModel):
    """An RT-PCR or antigen test of a sample taken on `sample_date`."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="lab_tests")
    test_type = models.CharField(max_length=20, choices=LabTestType.choices)
    result = models.CharField(max_length=20, choices=LabResult.choices)
    sample_date = models.DateField()
    notes = models.TextField(blank=True)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["-sample_date", "-id"]
        indexes = [
            models.Index(fields=["hospital", "sample_date"]),
            models.Index(fields=["hospital", "recorded_at"]),
            models.Index(fields=["hospital", "test_type"]),
            models.Index(fields=["hospital", "result"]),
            # The admin's changelist across hospitals (a platform admin's), in its default order.
            models.Index(fields=["sample_date"]),
        ]

    def __str__(self):
        return f"{self.get_test_type_display()} {self.get_result_display()} ({self.sample_date})"
