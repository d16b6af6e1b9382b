"""One error format for the whole API: RFC 7807 problem details.

Every error answer is `application/problem+json` with `type`, `title`, `status`, `detail`
and `instance` (the request path). Validation errors (400) add `errors`: field name ->
list of messages, with `non_field_errors` for errors about the whole request. A Django
`ValidationError` raised by a service is turned into the same 400, field by field."""

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "urn:hospital-api:problem:"

TITLES = {
    400: "Invalid request",
    401: "Authentication required",
    403: "Permission denied",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    413: "Request too large",
    415: "Unsupported media type",
    429: "Too many requests",
    500: "Server error",
}


def problem(*, status_code: int, detail: str, instance: str, code: str | None = None, **extra) -> dict:
    body = {
        "type": PROBLEM_TYPE_BASE + (code or str(status_code)),
        "title": TITLES.get(status_code, "Error"),
        "status": status_code,
        "detail": detail,
        "instance": instance,
    }
    body.update(extra)
    return body


def _field_errors(data) -> dict[str, list[str]]:
    """DRF's nested error structure flattened to field -> messages (nested fields dotted)."""
    out: dict[str, list[str]] = {}

    def walk(value, prefix):
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, f"{prefix}.{key}" if prefix else str(key))
        elif isinstance(value, list) and value and all(not isinstance(v, (dict, list)) for v in value):
            out.setdefault(prefix or "non_field_errors", []).extend(str(v) for v in value)
        elif isinstance(value, list):
            for index, inner in enumerate(value):
                walk(inner, f"{prefix}.{index}" if prefix else str(index))
        else:
            out.setdefault(prefix or "non_field_errors", []).append(str(value))

    walk(data, "")
    return out


def as_api_exception(exc):
    """Django's 404, 403 and validation errors as DRF's, with DRF's own wording (a view's
    404 message may name what it looked for)."""
    if isinstance(exc, DjangoValidationError):
        return exceptions.ValidationError(as_serializer_error(exc))
    if isinstance(exc, Http404):
        return exceptions.NotFound()
    if isinstance(exc, PermissionDenied):
        return exceptions.PermissionDenied()
    return exc


def problem_exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: everything DRF would answer, as problem details."""
    exc = as_api_exception(exc)
    response = exception_handler(exc, context)
    if response is None:
        return None
    request = context.get("request")
    instance = request.path if request is not None else ""
    if isinstance(exc, exceptions.ValidationError):
        errors = _field_errors(exc.detail)
        body = problem(status_code=400, code="validation", instance=instance,
                       detail="The request has invalid fields; see `errors`.", errors=errors)
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        if isinstance(detail, (list, dict)):
            detail = "; ".join(" ".join(map(str, v)) if isinstance(v, list) else str(v)
                               for v in (detail.values() if isinstance(detail, dict) else detail))
        code = getattr(exc, "default_code", None)
        body = problem(status_code=response.status_code, detail=str(detail), instance=instance, code=code)
        if response.status_code == 400:  # a parse error: the same shape as a validation error
            body["errors"] = {"non_field_errors": [str(detail)]}
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            body["retry_after"] = int(exc.wait)
    response.data = body
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


def problem_response(request, status_code: int, detail: str, code: str | None = None) -> JsonResponse:
    """A problem-details answer outside DRF (URL not found or server error under /api/)."""
    return JsonResponse(problem(status_code=status_code, detail=detail, instance=request.path, code=code),
                        status=status_code, content_type=PROBLEM_CONTENT_TYPE)



def handler404(request, exception=None):
    """URL not found: problem details under /api/, the portal's page elsewhere."""
    if request.path.startswith("/api/"):
        return problem_response(request, 404, "No such API resource.", code="not_found")
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request):
    if request.path.startswith("/api/"):
        return problem_response(request, 500, "The server could not answer this request.", code="error")
    from django.views.defaults import server_error

    return server_error(request)
