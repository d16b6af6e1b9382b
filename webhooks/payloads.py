"""The `data` of each event: ids and states a partner needs to fetch the details from the
API, and no more. Minimal PHI: the patient's id and MRN, never names, contacts, free-text
reasons or notes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # no model imports at run time: patients and screening import this module
    from patients.models import StatusChange
    from screening.models import AiResult, Review, Screening


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def _patient(patient_id: int, mrn: str) -> dict:
    return {"id": patient_id, "mrn": mrn}


def result_data(result: AiResult | None) -> dict | None:
    if result is None:
        return None
    return {"id": result.pk, "label": result.label, "covid_probability": result.covid_probability,
            "covid_positive": result.covid_positive, "decision": result.decision, "threshold": result.threshold,
            "model_name": result.model_name, "model_version": result.model_version}


def screening_data(screening: Screening, result: AiResult | None = None) -> dict:
    """screening.completed / screening.failed. `reason` is the system's message (never
    typed by a person), e.g. why an image could not be assessed."""
    return {
        "patient": _patient(screening.patient_id, screening.patient.mrn),
        "screening": {"id": screening.pk, "status": screening.status, "reason": screening.reason,
                      "scan_id": screening.scan_id, "created_at": _iso(screening.created_at)},
        "result": result_data(result),
    }


def review_data(review: Review) -> dict:
    """review.recorded. The reviewer's free-text reason is left out (it may name people)."""
    return {
        "patient": _patient(review.patient_id, review.patient.mrn),
        "screening": {"id": review.screening_id},
        "result": result_data(review.result),
        "review": {"id": review.pk, "decision": review.decision, "clinical_label": review.clinical_label,
                   "radiological_signs": review.radiological_signs, "reviewed_at": _iso(review.reviewed_at)},
    }


def status_change_data(change: StatusChange) -> dict:
    """patient.status_changed. The reason text is left out (free text)."""
    return {
        "patient": _patient(change.patient_id, change.patient.mrn),
        "status_change": {"id": change.pk, "from": change.from_status or None, "to": change.to_status,
                          "effective_date": _iso(change.effective_date), "source": change.source,
                          "lab_test_id": change.lab_test_id, "changed_at": _iso(change.changed_at)},
    }
