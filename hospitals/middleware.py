"""Opens the tenant scope once per portal request.

Security invariant: for every URL that carries `hospital_slug`, a user who is not an
active member of that hospital gets the same 404 as for a hospital that does not exist,
and every view below runs inside `scope(hospital=...)`, so scoped managers can only
return that hospital's rows. No header or query parameter can choose the hospital."""

from django.contrib.auth.views import redirect_to_login
from django.http import Http404
from django.urls import Resolver404, resolve
from django_scopes import scope, scopes_disabled

from .admin_site import admin_hospital_ids
from .security import active_memberships


class TenantScopeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.hospital = None
        request.membership = None
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return self.get_response(request)

        slug = match.kwargs.get("hospital_slug")
        if getattr(getattr(match.func, "cls", None), "opens_hospital_scope", False):
            # API views (hospitals.api.base) authenticate tokens and open the scope themselves.
            return self.get_response(request)
        if slug is not None:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            membership = next((m for m in active_memberships(request) if m.hospital.slug == slug), None)
            if membership is None:
                raise Http404("No such hospital.")
            request.hospital = membership.hospital
            request.membership = membership
            with scope(hospital=membership.hospital):
                return self.get_response(request)

        if match.app_name == "admin" and request.user.is_authenticated:
            # The admin's own per-request answer (hospitals.admin_site), read again by its
            # pages: None for a platform superuser (every hospital), else the administered ones.
            ids = admin_hospital_ids(request)
            if ids is None:
                with scopes_disabled():
                    return self.get_response(request)
            with scope(hospital=list(ids)):
                return self.get_response(request)

        return self.get_response(request)
