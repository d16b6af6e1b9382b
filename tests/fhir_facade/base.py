"""Helpers of the FHIR facade tests: URLs, OperationOutcome checks and validation of
every emitted resource with `fhir.resources` (R4B models, see README "FHIR R4 facade")."""

from django.urls import reverse
from fhir.resources.R4B import get_fhir_model_class

FHIR_JSON = "application/fhir+json"
MISSING = 987654321
MISSING_SHA = "ef" * 32


def read_url(resource_type: str, pk, slug: str = "alpha") -> str:
    return reverse(f"fhir:{resource_type.lower()}-read", kwargs={"hospital_slug": slug, "pk": pk})


def search_url(resource_type: str, slug: str = "alpha") -> str:
    return reverse(f"fhir:{resource_type.lower()}-search", kwargs={"hospital_slug": slug})


def validate(resource: dict):
    """Parse `resource` with its fhir.resources model (structure, cardinality, types, no
    unknown elements); a Bundle's entries are validated one by one as well."""
    model = get_fhir_model_class(resource["resourceType"]).parse_obj(resource)
    for entry in resource.get("entry", []):
        validate(entry["resource"])
    return model


def fhir_json(response, status_code: int = 200) -> dict:
    """The body of a FHIR answer, checked for status, content type and no-store, and validated."""
    assert response.status_code == status_code, (response.status_code, response.content[:600])
    assert response["Content-Type"] == FHIR_JSON
    assert "no-store" in response["Cache-Control"]
    body = response.json()
    validate(body)
    return body


def assert_outcome(response, status_code: int, code: str | None = None) -> dict:
    body = fhir_json(response, status_code)
    assert body["resourceType"] == "OperationOutcome"
    issue = body["issue"][0]
    assert issue["severity"] == "error" and issue["diagnostics"]
    if code is not None:
        assert issue["code"] == code, issue
    return body


def entries(bundle: dict, resource_type: str | None = None) -> list[dict]:
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    resources = [e["resource"] for e in bundle.get("entry", [])]
    if resource_type:
        assert all(r["resourceType"] == resource_type for r in resources)
    return resources


def ids(bundle: dict) -> list[str]:
    return [r["id"] for r in entries(bundle)]
