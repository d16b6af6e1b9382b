"""The REST API's shared plumbing: partner-client authentication, the hospital-scoped base
views every app's `api/` package builds on, problem-details errors, throttles, pagination
and the OpenAPI additions. Public names for other API code:

- `hospitals.api.base.HospitalAPIView`, `HospitalGenericViewSet` (and the mixin
  `HospitalScopedAPIMixin` they share): a view under `<slug:hospital_slug>` that needs a
  credential of that hospital and runs inside its scope. Declare `action_policies`.
- `hospitals.api.base.hospital_api_path`: the URL prefix `hospitals/<slug:hospital_slug>/`.
- `hospitals.api.fields.HospitalPrimaryKeyRelatedField`: a writable FK limited to the
  request's hospital.
"""
