"""The facade's wire format: `application/fhir+json` answers, and every error as an
`OperationOutcome` (the FHIR counterpart of the API's problem details) with the same
status codes: 400 bad search, 401 no credential, 403 missing scope or role, 404 unknown
(or another hospital's) resource, 405, 406 non-JSON format, 429 throttled."""

from rest_framework import exceptions
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.views import exception_handler

from hospitals.api.exceptions import as_api_exception
from hospitals.api.renderers import JSONRenderer

FHIR_JSON = "application/fhir+json"

# OperationOutcome.issue.code (http://hl7.org/fhir/issue-type) of each status.
ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    415: "not-supported",
    429: "throttled",
}


def operation_outcome(diagnostics: str, code: str = "processing", severity: str = "error") -> dict:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}]}


class SearchError(exceptions.APIException):
    """A search the facade does not understand (400): unknown parameter or modifier,
    malformed value."""

    status_code = 400
    default_detail = "Invalid search."
    default_code = "invalid"


class FhirJSONRenderer(JSONRenderer):
    media_type = FHIR_JSON
    format = "json"


# What `_format` or Accept may ask for: FHIR JSON, plain JSON or anything.
JSON_FORMATS = {"json", "application/json", FHIR_JSON, "application/json+fhir", "text/json", "*/*", "application/*"}


class FhirContentNegotiation(BaseContentNegotiation):
    """JSON only: `_format` (FHIR's override) or Accept must allow it, else 406. An
    answer is always `application/fhir+json`, also to a client that asked for
    `application/json` (FHIR servers may do so)."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None, force=False):
        renderer = renderers[0]
        if not force:
            fmt = request.query_params.get("_format")
            wanted = [fmt] if fmt else [part.split(";")[0].strip().lower()
                                        for part in request.META.get("HTTP_ACCEPT", "").split(",") if part.strip()]
            if wanted and not any(w in JSON_FORMATS for w in wanted):
                raise exceptions.NotAcceptable("This server answers in JSON only (application/fhir+json).")
        return renderer, renderer.media_type


def fhir_exception_handler(exc, context):
    """DRF's answer (status, WWW-Authenticate, Retry-After) with an OperationOutcome body."""
    exc = as_api_exception(exc)
    response = exception_handler(exc, context)
    if response is None:
        return None
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    if isinstance(detail, dict):
        detail = "; ".join(f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in detail.items())
    elif isinstance(detail, list):
        detail = " ".join(map(str, detail))
    response.data = operation_outcome(str(detail), ISSUE_CODES.get(response.status_code, "processing"))
    response.content_type = FHIR_JSON
    return response

