"""Bulk import of chest X-ray files for one patient, through the same service as the
portal's upload form (validation, private storage, a queued screening, the audit trail).

    python manage.py import_scans --hospital SLUG --user EMAIL --patient MRN FILE... [--json] [--wait [--timeout S]]

One line per file: the file, its status, the label or the reason. `--json` prints a list
of {file, status, label, reason, screening_id} instead. A bad file is "rejected" with the
validation message and nothing is stored for it; the other files are imported."""

import json
import time
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from hospitals.models import Membership, User
from hospitals.permissions import role_can
from hospitals.tenancy import ScopedCommand
from patients.models import Patient
from screening.models import FINAL_STATUSES, Screening
from screening.selectors import screening_result
from screening.services import scan_upload

POLL_SECONDS = 0.5


class Command(ScopedCommand):
    help = (
        "Import chest X-ray files (PNG, JPEG or DICOM, recognised by content) for one patient and queue a "
        "screening for each. --user is required: every upload is recorded in the audit trail as made by a named, "
        "accountable member of the hospital (an active membership whose role may upload scans), never by an "
        "anonymous system account. Exit status 1 when a file was rejected or, with --wait, a screening was still "
        "pending at the timeout."
    )

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", metavar="FILE", help="Files to import.")
        parser.add_argument("--patient", required=True, metavar="MRN", help="The patient's MRN in this hospital.")
        parser.add_argument("--user", required=True, metavar="EMAIL",
                            help="The member the uploads are recorded as (must be allowed to upload scans).")
        parser.add_argument("--json", action="store_true", help="Print a JSON list instead of one line per file.")
        parser.add_argument("--wait", action="store_true",
                            help="Wait until every screening has reached a final state (done, failed, rejected, "
                                 "cannot_assess).")
        parser.add_argument("--timeout", type=float, default=300.0,
                            help="With --wait: give up after this many seconds (default 300); screenings still "
                                 "pending are reported as they are and the exit status is 1.")

    def handle_scoped(self, hospital, *args, files, patient, user, json: bool = False, wait: bool = False,
                      timeout: float = 300.0, **options):
        actor = self._uploader(hospital, user)
        target = Patient.objects.filter(hospital=hospital, mrn=patient).first()
        if target is None:
            raise CommandError(f"No patient with MRN '{patient}' in {hospital.slug}.")

        rows = []
        for name in files:
            row = {"file": name, "status": "rejected", "label": None, "reason": "", "screening_id": None}
            try:
                data = Path(name).read_bytes()
            except OSError as exc:
                row["reason"] = f"{name}: cannot read the file ({exc.strerror or exc})."
                rows.append(row)
                continue
            try:
                screening = scan_upload(patient=target, data=data, filename=Path(name).name, actor=actor)
            except ValidationError as exc:
                row["reason"] = " ".join(exc.messages)
            else:
                row.update(status=screening.status, screening_id=screening.pk)
            rows.append(row)

        pending = [row["screening_id"] for row in rows if row["screening_id"]]
        if wait and pending:
            self._wait(pending, timeout)
        self._refresh(rows)
        self._print(rows, as_json=json)

        rejected = sum(1 for row in rows if row["screening_id"] is None)
        still_pending = sum(1 for row in rows if row["screening_id"] and row["status"] not in FINAL_STATUSES)
        problems = []
        if rejected:
            problems.append(f"{rejected} file(s) rejected")
        if wait and still_pending:
            problems.append(f"{still_pending} screening(s) still pending after {timeout:g} s")
        if problems:
            raise CommandError("; ".join(problems) + ".", returncode=1)

    def _uploader(self, hospital, email: str) -> User:
        account = User.objects.filter(email__iexact=email, is_active=True).first()
        membership = (Membership.objects.filter(user=account, hospital=hospital, is_active=True).first()
                      if account else None)
        if membership is None:
            raise CommandError(f"{email} is not an active member of {hospital.slug}.")
        if not role_can(membership.role, "scan.upload"):
            raise CommandError(f"{email} ({membership.get_role_display()}) may not upload scans.")
        return account

    def _wait(self, ids: list[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not Screening.objects.filter(pk__in=ids).exclude(status__in=FINAL_STATUSES).exists():
                return
            time.sleep(POLL_SECONDS)

    def _refresh(self, rows: list[dict]) -> None:
        screenings = Screening.objects.in_bulk([row["screening_id"] for row in rows if row["screening_id"]])
        for row in rows:
            screening = screenings.get(row["screening_id"])
            if screening is None:
                continue
            result = screening_result(screening=screening)
            row.update(status=screening.status, reason=screening.reason, label=result.label if result else None)

    def _print(self, rows: list[dict], *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        for row in rows:
            detail = row["label"] or row["reason"]
            self.stdout.write(f"{row['file']}: {row['status']}" + (f" ({detail})" if detail else ""))
