"""Chest X-ray scans, the screening jobs that run the classifier on them, the immutable
AI results and the clinicians' reviews.

The database is the source of truth: a `Screening` row says where a job is; the broker
only carries its id. Files live in private storage under a hospital prefix with
server-generated names and are served only through authenticated, hospital-scoped views."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from patients.models import HospitalChildModel, Patient


def scan_path(instance, filename: str) -> str:
    """`scans/h<hospital>/<uuid>.<ext>`: the client's filename never reaches the disk."""
    return f"scans/h{instance.hospital_id}/{uuid.uuid4().hex}.{instance.format}"


def derivative_path(instance, filename: str) -> str:
    return f"derived/h{instance.hospital_id}/{uuid.uuid4().hex}.png"


def decoded_path(instance, filename: str) -> str:
    return f"derived/h{instance.hospital_id}/{uuid.uuid4().hex}.npz"


class ScanFormat(models.TextChoices):
    PNG = "png", "PNG"
    JPEG = "jpeg", "JPEG"
    DICOM = "dcm", "DICOM"


class Scan(HospitalChildModel):
    """An uploaded chest X-ray of one patient, validated (fully decoded) before it was stored.

    `preview` is an 8-bit PNG derivative for display: browsers cannot show DICOM, and it
    carries no metadata (no EXIF, no DICOM header), so no PHI leaks through it.

    `decoded` is the image as validation decoded it (`ml.preprocessing.DecodedImage`, the
    decoder's working resolution in float32, with its own sha256): the worker screens it
    without decoding the original a second time. Scans stored before it existed have none,
    and the worker decodes their original."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="scans")
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    uploaded_at = models.DateTimeField(auto_now_add=True)
    file = models.FileField(upload_to=scan_path, max_length=200)
    preview = models.FileField(upload_to=derivative_path, max_length=200)
    decoded = models.FileField(upload_to=decoded_path, max_length=200, blank=True)
    decoded_sha256 = models.CharField(max_length=64, blank=True)
    original_filename = models.CharField(max_length=255, help_text="As uploaded; for display only.")
    size_bytes = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)
    format = models.CharField(max_length=10, choices=ScanFormat.choices)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    bit_depth = models.PositiveSmallIntegerField()
    view_position = models.CharField(max_length=16, blank=True, help_text="DICOM ViewPosition (PA, AP, LL...).")
    study_uid = models.CharField(max_length=64, blank=True)
    series_uid = models.CharField(max_length=64, blank=True)
    duplicate_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                     help_text="An earlier scan of this patient with the same content.")

    class Meta:
        ordering = ["-uploaded_at", "-id"]
        indexes = [
            models.Index(fields=["patient", "sha256"]),
            models.Index(fields=["hospital", "uploaded_at"]),
            models.Index(fields=["hospital", "format"]),
            # The admin's changelist across hospitals (a platform admin's), in its default order.
            models.Index(fields=["uploaded_at"]),
        ]

    def __str__(self):
        return f"Scan {self.pk} ({self.get_format_display()}, {self.width}x{self.height})"

    @property
    def is_duplicate(self) -> bool:
        return self.duplicate_of_id is not None


class ScreeningStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    REJECTED = "rejected", "Rejected"
    CANNOT_ASSESS = "cannot_assess", "Cannot assess"


FINAL_STATUSES = frozenset({ScreeningStatus.DONE, ScreeningStatus.FAILED, ScreeningStatus.REJECTED,
                            ScreeningStatus.CANNOT_ASSESS})
# Awaiting a review: read by the model (done) and not reviewed, which `review_priority` holds
# (see Screening) in an index of (hospital, status, review_priority, created_at, id, patient).
AWAITING_REVIEW = Q(status=ScreeningStatus.DONE, review_priority__isnull=False)


class Screening(HospitalChildModel):
    """One run of the classifier over a scan: queued -> running -> done | failed |
    rejected | cannot_assess. `attempts` counts claims by workers; past the maximum the
    job fails instead of looping. `task_id` is the broker delivery that holds the claim."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="screenings")
    scan = models.ForeignKey(Scan, on_delete=models.PROTECT, related_name="screenings")
    status = models.CharField(max_length=20, choices=ScreeningStatus.choices, default=ScreeningStatus.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    reason = models.TextField(blank=True, help_text="Why it failed, was rejected or cannot be assessed.")
    task_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The reading queue's key: the COVID-19 probability of the latest result while the
    # screening awaits its review (done, not reviewed), else null. Written with the result and
    # cleared with the review (`services`), so the queue walks an index instead of computing
    # every waiting screening's latest result and sorting them for each page.
    review_priority = models.FloatField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The reading queue in its order; the patient last, for the patients awaiting review.
            models.Index(fields=["hospital", "status", "-review_priority", "created_at", "id", "patient"]),
            models.Index(fields=["status", "enqueued_at"]),
            models.Index(fields=["hospital", "-created_at"]),
            models.Index(fields=["hospital", "status"]),
            models.Index(fields=["hospital", "status", "created_at"]),
            models.Index(fields=["hospital", "finished_at"]),
            models.Index(fields=["hospital", "started_at"]),
            models.Index(fields=["hospital", "enqueued_at"]),
            # The admin's changelist across hospitals (a platform admin's), in its default order.
            models.Index(fields=["created_at"]),
        ]

    def __str__(self):
        return f"Screening {self.pk} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class AiLabel(models.TextChoices):
    COVID = "covid", "COVID-19"
    PNEUMONIA = "pneumonia", "Other pneumonia"
    NORMAL = "normal", "Normal"


#: The decisions the classifier writes (`AiResult.decision`), with their words for people.
AI_DECISIONS = {"covid_suspected": "COVID-19 suspected", "covid_not_suspected": "COVID-19 not suspected"}


class AiResult(HospitalChildModel):
    """What the model said about one screening. Never changed after it is written (the
    application refuses updates, the admin and API show it read-only); unique per
    screening and model version, so a redelivered task cannot add a second one."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="+")
    screening = models.ForeignKey(Screening, on_delete=models.PROTECT, related_name="results")
    probabilities = models.JSONField()
    label = models.CharField(max_length=20, choices=AiLabel.choices)
    covid_probability = models.FloatField()
    covid_positive = models.BooleanField(help_text="COVID probability at or above the model's threshold.")
    decision = models.CharField(max_length=30)
    threshold = models.FloatField()
    model_name = models.CharField(max_length=100)
    model_version = models.CharField(max_length=50)
    model_sha256 = models.CharField(max_length=64)
    preprocessing_version = models.CharField(max_length=50)
    input_sha256 = models.CharField(max_length=64)
    heatmap = models.FileField(upload_to=derivative_path, max_length=200, blank=True)
    quality = models.JSONField(default=dict, blank=True)
    timings_ms = models.JSONField(default=dict)
    worker = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["screening", "model_version"],
                                               name="airesult_one_per_screening_and_model")]
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["hospital", "created_at"]),
            models.Index(fields=["hospital", "label"]),
            # The screening list's label filter: the hospital's screenings with such a result,
            # read from this index alone (a third of a large hospital's results), then probed
            # by the list's walk down the screenings' ids.
            models.Index(fields=["hospital", "label", "screening"]),
            models.Index(fields=["hospital", "covid_positive"]),
            models.Index(fields=["hospital", "covid_probability"]),
            models.Index(fields=["hospital", "model_sha256"]),
            # The admin's changelist across hospitals (a platform admin's), in its default order.
            models.Index(fields=["created_at"]),
            # The admin's model-version filter: its choices, one index dive per version.
            models.Index(fields=["model_version"]),
        ]

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise RuntimeError("AI results are immutable.")
        super().save(*args, **kwargs)

    def __str__(self):
        return f"{self.get_label_display()} (P(COVID)={self.covid_probability:.2f}, {self.model_version})"


class ReviewDecision(models.TextChoices):
    CONFIRM = "confirm", "Confirm the AI label"
    OVERRIDE = "override", "Override the AI label"


class Review(HospitalChildModel):
    """A radiologist's or clinician's reading of a screening. `clinical_label` is the
    human label, kept apart from the AI's; `radiological_signs` records whether the film
    shows signs of COVID-19 pneumonia, which separates infected from carrier."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="+")
    screening = models.ForeignKey(Screening, on_delete=models.PROTECT, related_name="reviews")
    result = models.ForeignKey(AiResult, on_delete=models.PROTECT, related_name="reviews")
    decision = models.CharField(max_length=10, choices=ReviewDecision.choices)
    clinical_label = models.CharField(max_length=20, choices=AiLabel.choices)
    radiological_signs = models.BooleanField(help_text="Radiological signs of COVID-19 pneumonia on this film.")
    reason = models.TextField()
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reviewed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-reviewed_at", "-id"]
        indexes = [
            models.Index(fields=["hospital", "reviewed_at"]),
            models.Index(fields=["hospital", "decision"]),
            models.Index(fields=["hospital", "clinical_label"]),
            # The admin's changelist across hospitals (a platform admin's), in its default order.
            models.Index(fields=["reviewed_at"]),
        ]

    def __str__(self):
        return f"{self.get_decision_display()}: {self.get_clinical_label_display()}"

