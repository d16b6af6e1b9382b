"""The one place an API request enters a hospital's scope.

Security invariant (like the portal's `TenantScopeMiddleware`): for every API view under
`/api/v1/hospitals/<slug:hospital_slug>/`, a credential that is not bound to that hospital
(a partner client of another hospital, a portal user without an active membership) gets
the same 404 as a hospital that does not exist; the role (session) or OAuth2 scope
(partner client) is then checked per action (403); only then does the handler run, inside
`scope(hospital=...)`, so scoped managers return that hospital's rows only. No header,
query parameter or body field can choose the hospital.

Use `HospitalGenericViewSet` (or `HospitalAPIView`) as the base of any API view below a
hospital slug, and declare `action_policies`: viewset action (or HTTP method, lower case,
for an APIView) -> a `hospitals.permissions.POLICY` action. An action that is not declared
is refused (fail closed)."""

from contextlib import ExitStack

from django.urls import path
from django.utils.cache import patch_cache_control
from django_scopes import scope
from rest_framework import exceptions, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from hospitals import selectors
from hospitals.audit import audit_record
from hospitals.permissions import POLICY, role_can

from .scopes import ACTION_SCOPES

HOSPITAL_URL_KWARG = "hospital_slug"


def hospital_api_path(route: str, view, name: str | None = None):
    """A `path()` below `hospitals/<slug:hospital_slug>/` (relative to `api/v1/`)."""
    return path(f"hospitals/<slug:{HOSPITAL_URL_KWARG}>/{route}", view, name=name)


def _check_policies(policies: dict[str, str]) -> None:
    unknown = set(policies.values()) - set(POLICY)
    if unknown:
        raise ValueError(f"Unknown POLICY actions {sorted(unknown)}")


class HospitalScopedAPIMixin:
    """See the module docstring. After it ran, `request.hospital` is the URL's hospital,
    `request.membership` the session user's membership (None for a partner client),
    `request.partner_client` the client (None for a session user)."""

    # Tells hospitals.middleware.TenantScopeMiddleware that this view opens the scope itself.
    opens_hospital_scope = True
    action_policies: dict[str, str] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _check_policies(cls.action_policies)

    def dispatch(self, request, *args, **kwargs):
        with ExitStack() as stack:
            self._scope_stack = stack
            return super().dispatch(request, *args, **kwargs)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication, check_permissions, throttles
        self._scope_stack.enter_context(scope(hospital=request.hospital))

    # --- the checks, in order: 401, 404, 403 -----------------------------------------------
    def check_permissions(self, request):
        if getattr(self, "swagger_fake_view", False):
            return
        if request.user is None or not request.user.is_authenticated:
            raise exceptions.NotAuthenticated()
        self.resolve_hospital(request)
        policy_action = self.policy_action(request)
        if policy_action is not None and not self.credential_may(request, policy_action):
            raise exceptions.PermissionDenied(f"This credential may not do this ({self.permission_hint(policy_action)}).")
        super().check_permissions(request)

    def resolve_hospital(self, request) -> None:
        """Bind the URL's hospital to the credential, or answer 404 like a missing one."""
        slug = self.kwargs.get(HOSPITAL_URL_KWARG)
        client = getattr(request, "partner_client", None)
        membership = None
        if client is not None:
            if slug is None or client.hospital.slug != slug or not client.hospital.is_active:
                raise exceptions.NotFound("No such hospital.")
            hospital = client.hospital
        else:
            membership = selectors.membership_for(user=request.user, hospital_slug=slug) if slug else None
            if membership is None:
                raise exceptions.NotFound("No such hospital.")
            hospital = membership.hospital
        for target in (request, request._request):
            target.hospital = hospital
            target.membership = membership
            if client is None:
                target.partner_client = None

    def policy_action(self, request) -> str | None:
        """The POLICY action of this request; None where the method is not allowed at all
        (the handler answers 405). Undeclared actions are refused."""
        if isinstance(self, viewsets.ViewSetMixin):
            key = getattr(self, "action", None)
        else:
            key = request.method.lower()
            if key not in self.http_method_names or not hasattr(self, key):
                key = None
        if key is None:
            return None
        if key not in self.action_policies:
            raise exceptions.PermissionDenied("This operation is not available.")
        return self.action_policies[key]

    def credential_may(self, request, policy_action: str) -> bool:
        if getattr(request, "partner_client", None) is not None:
            required = ACTION_SCOPES.get(policy_action)
            return required is not None and request.auth is not None and request.auth.allow_scopes([required])
        return role_can(request.membership.role, policy_action)

    def permission_hint(self, policy_action: str) -> str:
        if getattr(self.request, "partner_client", None) is not None:
            return f"scope {ACTION_SCOPES.get(policy_action, policy_action)!r} required"
        return policy_action

    # --- answers ---------------------------------------------------------------------------
    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        # Hospital data (patients above all) must not be kept by browsers or proxies.
        patch_cache_control(response, no_store=True, private=True)
        return response

    audit_object_type: str = ""

    def audit_objects(self, objects, action: str) -> None:
        """Audit a read (`action` "list" or "view") of these objects. Viewsets of patient
        data override it or set `audit_object_type`; reads are never left unaudited."""
        if not self.audit_object_type:
            raise NotImplementedError(f"{type(self).__name__} must audit its reads")
        self.audit_read(object_type=self.audit_object_type, objects=objects, action=action)

    def audit_read(self, *, object_type: str, objects, action: str = "list", patient_ids=None) -> None:
        """Audit a read of records that are not patients themselves (lab tests, screenings,
        results, reviews): the ids and the patients they belong to. Patients are audited
        with `patients.selectors.patient_audit_read`."""
        objects = list(objects)
        if not objects:
            return
        if patient_ids is None:
            patient_ids = sorted({o.patient_id for o in objects})
        if action == "view":
            audit_record(action="view", object_type=object_type, object_id=objects[0].pk,
                         hospital=self.request.hospital, request=self.request, detail={"patients": patient_ids})
        else:
            audit_record(action="list", object_type=object_type, hospital=self.request.hospital,
                         request=self.request, detail={"ids": [o.pk for o in objects], "patients": patient_ids})


class HospitalAPIView(HospitalScopedAPIMixin, APIView):
    """An APIView below a hospital slug; `action_policies` keys are HTTP methods."""


class HospitalGenericViewSet(HospitalScopedAPIMixin, viewsets.GenericViewSet):
    """A GenericViewSet below a hospital slug; mix in `AuditedListMixin`,
    `AuditedRetrieveMixin` and write actions that call services. Set
    `queryset = Model.objects.none()`: `get_queryset` returns that model's rows of
    `request.hospital` (nothing during schema generation); override `refine_queryset`
    to add joins."""

    lookup_value_regex = r"[0-9]{1,18}"  # longer ids cannot exist; they answer 404, not an overflow

    def get_queryset(self):
        model = self.queryset.model
        if getattr(self, "swagger_fake_view", False):
            return model.objects.none()
        return self.refine_queryset(model.objects.filter(hospital=self.request.hospital))

    def refine_queryset(self, queryset):
        return queryset

    def load_related(self, objects: list) -> None:
        """Read what the serializer shows of these objects beyond their rows (a page of the list,
        or the object of a detail), where `refine_queryset` does not join it."""


class AuditedListMixin:
    """`list`: filtered, cursor-paginated, the page audited as one read."""

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        self.load_related(page)
        self.audit_objects(page, "list")
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class AuditedRetrieveMixin:
    """`retrieve`: one object of the hospital (another hospital's id: 404), audited."""

    def retrieve(self, request, *args, **kwargs):
        obj = self.get_object()
        self.load_related([obj])
        self.audit_objects([obj], "view")
        return Response(self.get_serializer(obj).data)

