"""Rows of the hospital's tables as FHIR R4 resources (plain dicts, rendered as JSON).

Ids are the database ids (Device: the model's sha256), references are relative
(`Patient/12`). Identifier systems are per hospital where the value is (the MRN:
`urn:hospital:<slug>:mrn`). Codes come from HL7, SNOMED CT, LOINC and ICD-10 where one
fits; what has no standard code (the AI labels, the status machine) uses this system's
own code systems below `urn:hospital:codesystem:`.

Nothing here queries the database beyond the relations the views prefetch."""

import datetime

from patients.models import Status
from screening.models import AiLabel, ScanFormat

# --- systems ------------------------------------------------------------------------------------
CODE_SYSTEM_BASE = "urn:hospital:codesystem:"
AI_LABEL_SYSTEM = CODE_SYSTEM_BASE + "cxr-ai-label"
OBSERVATION_CODE_SYSTEM = CODE_SYSTEM_BASE + "observation"
PATIENT_STATUS_SYSTEM = CODE_SYSTEM_BASE + "patient-status"
MODEL_SHA256_SYSTEM = "urn:hospital:model-sha256"
HOSPITAL_SLUG_SYSTEM = "urn:hospital:slug"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
UCUM = "http://unitsofmeasure.org"
DICOM_DCM = "http://dicom.nema.org/resources/ontology/DCM"
V3_OBSERVATION_VALUE = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
MEDIA_TYPE = "http://terminology.hl7.org/CodeSystem/media-type"

DISCLAIMER = ("Screening aid, not a diagnosis: an AI model's reading of a chest X-ray, to be confirmed by a "
              "clinician with the clinical picture and laboratory results.")

# The AI-asserted security label every AI Observation carries (meta.security).
AI_ASSERTED = {"system": V3_OBSERVATION_VALUE, "code": "AIAST", "display": "Artificial Intelligence asserted"}

# The clinical meaning of each label (DiagnosticReport.conclusionCode), beside our own code.
LABEL_SNOMED = {
    AiLabel.COVID: ("840539006", "Disease caused by severe acute respiratory syndrome coronavirus 2"),
    AiLabel.PNEUMONIA: ("233604007", "Pneumonia"),
    AiLabel.NORMAL: ("17621005", "Normal"),
}

# Condition.code of the infected/carrier status. Both are laboratory-confirmed COVID-19
# (ICD-10 U07.1 whatever the severity); SNOMED CT tells them apart. 189486241000119100
# is in the SNOMED CT US Edition (the international edition has no asymptomatic code).
CONDITION_CODES = {
    Status.INFECTED: {
        "snomed": ("840539006", "Disease caused by severe acute respiratory syndrome coronavirus 2"),
        "text": "COVID-19, confirmed, with clinical or radiological signs (infected)",
    },
    Status.CARRIER: {
        "snomed": ("189486241000119100", "Asymptomatic severe acute respiratory syndrome coronavirus 2 infection"),
        "text": "SARS-CoV-2 infection, confirmed, without clinical or radiological signs (carrier)",
    },
}
CONDITION_STATUSES = tuple(CONDITION_CODES)

THORAX = {"system": SNOMED, "code": "51185008", "display": "Thoracic structure"}
# Scan rows do not keep the DICOM Modality; every accepted film is a chest radiograph.
RADIOGRAPHY = {"system": DICOM_DCM, "code": "DX", "display": "Digital Radiography"}


def mrn_system(hospital) -> str:
    return f"urn:hospital:{hospital.slug}:mrn"


def instant(value: datetime.datetime | None) -> str | None:
    """A FHIR instant (UTC, microseconds kept so `_lastUpdated=gt...` paging is exact)."""
    if value is None:
        return None
    return value.astimezone(datetime.timezone.utc).isoformat()


def _ref(resource_type: str, pk) -> dict:
    return {"reference": f"{resource_type}/{pk}"}


def _coding(system: str, code: str, display: str | None = None) -> dict:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _concept(*codings: dict, text: str | None = None) -> dict:
    out = {"coding": list(codings)}
    if text:
        out["text"] = text
    return out


def _compact(resource: dict) -> dict:
    """FHIR forbids empty values: drop None, empty strings, lists and dicts."""
    return {k: v for k, v in resource.items() if v not in (None, "", [], {})}


def label_concept(label: str) -> dict:
    display = AiLabel(label).label if label in AiLabel.values else label
    codings = [_coding(AI_LABEL_SYSTEM, label, display)]
    if label in LABEL_SNOMED:
        codings.append(_coding(SNOMED, *LABEL_SNOMED[label]))
    return _concept(*codings, text=display)


def scan_reference(scan) -> dict:
    """A scan is an ImagingStudy when it is DICOM and a Media otherwise."""
    return _ref("ImagingStudy" if scan.format == ScanFormat.DICOM else "Media", scan.pk)


# --- resources ----------------------------------------------------------------------------------

def organization(hospital) -> dict:
    return {
        "resourceType": "Organization",
        "id": str(hospital.pk),
        "identifier": [{"system": HOSPITAL_SLUG_SYSTEM, "value": hospital.slug}],
        "active": hospital.is_active,
        "type": [_concept(_coding("http://terminology.hl7.org/CodeSystem/organization-type", "prov",
                                  "Healthcare Provider"))],
        "name": hospital.name,
    }


def patient(p, hospital) -> dict:
    """Demographics and the MRN; the national id is left out (partners match on the MRN).
    `hospital` is the patient's."""
    telecom = []
    if p.phone:
        telecom.append({"system": "phone", "value": p.phone})
    if p.email:
        telecom.append({"system": "email", "value": p.email})
    return _compact({
        "resourceType": "Patient",
        "id": str(p.pk),
        "meta": {"lastUpdated": instant(p.updated_at)},
        "identifier": [{
            "use": "usual",
            "type": _concept(_coding(V2_0203, "MR", "Medical record number")),
            "system": mrn_system(hospital),
            "value": p.mrn,
        }],
        "active": True,
        "name": [{"use": "official", "family": p.family_name, "given": [p.given_name]}],
        "telecom": telecom,
        "gender": p.sex,  # the model's choices are FHIR's administrative-gender codes
        "birthDate": p.birth_date.isoformat(),
        "deceasedBoolean": True if p.status == Status.DECEASED else None,
        "address": [{"text": p.address}] if p.address else [],
        "managingOrganization": {**_ref("Organization", p.hospital_id), "display": hospital.name},
    })


def observation(result) -> dict:
    """An AI result: AI-asserted, the model as Device, derived from the scan."""
    scan = result.screening.scan
    positive = result.covid_positive
    interpretation = _concept(
        _coding(V3_INTERPRETATION, "POS" if positive else "NEG", "Positive" if positive else "Negative"),
        text=(f"COVID-19 {'suspected' if positive else 'not suspected'} by the AI model "
              f"(P(COVID-19) = {result.covid_probability:.2f}, threshold {result.threshold:.2f})"),
    )
    components = []
    for label, probability in result.probabilities.items():
        display = AiLabel(label).label if label in AiLabel.values else label
        components.append({
            "code": _concept(_coding(AI_LABEL_SYSTEM, label, display), text=f"Probability of {display}"),
            "valueQuantity": {"value": probability, "unit": "probability", "system": UCUM, "code": "1"},
        })
    return {
        "resourceType": "Observation",
        "id": str(result.pk),
        "meta": {"lastUpdated": instant(result.created_at), "security": [AI_ASSERTED]},
        "status": "final",
        "category": [_concept(_coding(OBSERVATION_CATEGORY, "imaging", "Imaging"))],
        "code": _concept(_coding(OBSERVATION_CODE_SYSTEM, "cxr-covid-ai", "AI screening of a chest X-ray for COVID-19"),
                         text="AI screening of a chest X-ray for COVID-19"),
        "subject": _ref("Patient", result.patient_id),
        "effectiveDateTime": instant(result.created_at),
        "issued": instant(result.created_at),
        "valueCodeableConcept": label_concept(result.label),
        "interpretation": [interpretation],
        "note": [{"text": DISCLAIMER}],
        "bodySite": _concept(THORAX),
        "method": {"text": f"{result.model_name} {result.model_version}, preprocessing {result.preprocessing_version}"},
        "device": {**_ref("Device", result.model_sha256), "display": f"{result.model_name} {result.model_version}"},
        "derivedFrom": [scan_reference(scan)],
        "component": components,
    }


def diagnostic_report(screening) -> dict:
    """A screening with at least one AI result: preliminary until a clinician reviewed it,
    then final with the latest review's conclusion. Its results and reviews are read, newest
    first (`screening.selectors.prefetch_results` and `prefetch_reviews`); `last_updated` is
    annotated."""
    results, reviews = screening.prefetched_results, screening.prefetched_reviews
    review = reviews[0] if reviews else None
    scan = screening.scan
    if review is not None:
        signs = "yes" if review.radiological_signs else "no"
        conclusion = (f"{review.get_decision_display()}: {review.get_clinical_label_display()} "
                      f"(radiological signs of COVID-19 pneumonia: {signs}). {review.reason}")
    else:
        latest = results[0]
        conclusion = (f"Not yet reviewed by a clinician. AI label: {latest.get_label_display()} "
                      f"(P(COVID-19) = {latest.covid_probability:.2f}). {DISCLAIMER}")
    issued = review.reviewed_at if review is not None else results[0].created_at
    report = {
        "resourceType": "DiagnosticReport",
        "id": str(screening.pk),
        "meta": {"lastUpdated": instant(getattr(screening, "last_updated", None) or issued)},
        "status": "final" if review is not None else "preliminary",
        "category": [_concept(_coding(V2_0074, "RAD", "Radiology"))],
        "code": _concept(_coding(LOINC, "18748-4", "Diagnostic imaging study"),
                         text="Chest X-ray screening for COVID-19"),
        "subject": _ref("Patient", screening.patient_id),
        "effectiveDateTime": instant(scan.uploaded_at),
        "issued": instant(issued),
        "performer": [_ref("Organization", screening.hospital_id)],
        "result": [_ref("Observation", r.pk) for r in results],
        "conclusion": conclusion,
        "conclusionCode": [label_concept(review.clinical_label)] if review is not None else [],
    }
    if scan.format == ScanFormat.DICOM:
        report["imagingStudy"] = [scan_reference(scan)]
    else:
        report["media"] = [{"comment": "Chest X-ray", "link": scan_reference(scan)}]
    return _compact(report)


def imaging_study(scan) -> dict:
    """A DICOM scan: one study, one series, one instance (the study and series UIDs from
    its header; nothing else of the header is shown)."""
    study = {
        "resourceType": "ImagingStudy",
        "id": str(scan.pk),
        "meta": {"lastUpdated": instant(scan.uploaded_at)},
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{scan.study_uid}"}] if scan.study_uid else [],
        "status": "available",
        "modality": [RADIOGRAPHY],
        "subject": _ref("Patient", scan.patient_id),
        "numberOfSeries": 1,
        "numberOfInstances": 1,
        "description": "Chest X-ray",
    }
    if scan.series_uid:
        study["series"] = [{"uid": scan.series_uid, "modality": RADIOGRAPHY, "numberOfInstances": 1,
                            "bodySite": THORAX, "description": scan.view_position or None}]
        study["series"] = [_compact(s) for s in study["series"]]
    return _compact(study)


def media(scan) -> dict:
    """A PNG or JPEG scan. The file itself is served by the portal only, so `content`
    describes it without a URL."""
    content_type = "image/png" if scan.format == ScanFormat.PNG else "image/jpeg"
    return {
        "resourceType": "Media",
        "id": str(scan.pk),
        "meta": {"lastUpdated": instant(scan.uploaded_at)},
        "status": "completed",
        "type": _concept(_coding(MEDIA_TYPE, "image", "Image")),
        "subject": _ref("Patient", scan.patient_id),
        "issued": instant(scan.uploaded_at),
        "bodySite": _concept(THORAX),
        "height": scan.height,
        "width": scan.width,
        "content": {"contentType": content_type, "size": scan.size_bytes, "title": "Chest X-ray"},
    }


def scan_resource(scan) -> dict:
    return imaging_study(scan) if scan.format == ScanFormat.DICOM else media(scan)


def device(model: dict) -> dict:
    """A model that produced results in this hospital: `model` has its sha256, name, version
    and first_used (see the Device view's queryset)."""
    return {
        "resourceType": "Device",
        "id": model["model_sha256"],
        "meta": {"lastUpdated": instant(model["first_used"])},
        "identifier": [{"system": MODEL_SHA256_SYSTEM, "value": model["model_sha256"]}],
        "status": "active",
        "deviceName": [{"name": model["model_name"], "type": "model-name"}],
        "type": _concept(text="AI model: chest X-ray classifier (COVID-19 screening aid)"),
        "version": [{"value": model["model_version"]}],
        "note": [{"text": DISCLAIMER}],
    }


def condition_clinical_status(next_to_status: str | None) -> str:
    """active while the status holds; resolved when the patient recovered; inactive when it
    was followed by another status (infected <-> carrier, deceased)."""
    if not next_to_status:
        return "active"
    return "resolved" if next_to_status == Status.RECOVERED else "inactive"


def condition(change) -> dict:
    """A period of infected or carrier status, from the status change that began it to the
    next change of the patient (annotated: next_to_status, next_effective_date, last_updated)."""
    codes = CONDITION_CODES[change.to_status]
    clinical = condition_clinical_status(change.next_to_status)
    return _compact({
        "resourceType": "Condition",
        "id": str(change.pk),
        "meta": {"lastUpdated": instant(change.last_updated)},
        "clinicalStatus": _concept(_coding(CONDITION_CLINICAL, clinical)),
        "verificationStatus": _concept(_coding(CONDITION_VERIFICATION, "confirmed", "Confirmed")),
        "category": [_concept(_coding(CONDITION_CATEGORY, "problem-list-item", "Problem List Item"))],
        "code": _concept(
            _coding(SNOMED, *codes["snomed"]),
            _coding(ICD10, "U07.1", "COVID-19, virus identified"),
            _coding(PATIENT_STATUS_SYSTEM, change.to_status, Status(change.to_status).label),
            text=codes["text"],
        ),
        "subject": _ref("Patient", change.patient_id),
        "onsetDateTime": change.effective_date.isoformat(),
        "abatementDateTime": change.next_effective_date.isoformat() if change.next_effective_date else None,
        "recordedDate": instant(change.changed_at),
    })
