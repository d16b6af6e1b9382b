"""The Django admin site for platform superusers and hospital admins.

Who may enter: an active platform superuser, or a user with at least one active
`hospital_admin` membership in an active hospital. Everyone else (clinicians, viewers,
`is_staff` users without such a membership) is kept out entirely: signed-in users get
403, anonymous users are sent to the portal sign-in (allauth: MFA and rate limits apply
to the admin too). Access follows the membership at every request, so deactivating a
membership or a hospital closes the admin at once; `is_staff` plays no part.

What a hospital admin sees inside is limited by `hospitals.admin.TenantAdminMixin`
and by the scope `hospitals.middleware.TenantScopeMiddleware` opens for /admin/.
This module is imported while apps load (`HospitalAdminConfig` is in INSTALLED_APPS),
so it imports no models at module level."""

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.urls import path, reverse


def admin_hospital_ids(request) -> frozenset[int] | None:
    """Hospitals the requesting user administers; None means every hospital (platform
    superuser). Cached on the request: the admin asks many times per page."""
    cached = getattr(request, "_admin_hospital_ids", False)
    if cached is not False:
        return cached
    from hospitals import selectors

    user = request.user
    if not user.is_authenticated or not user.is_active:
        ids: frozenset[int] | None = frozenset()
    elif user.is_superuser:
        ids = None
    else:
        ids = frozenset(selectors.admin_hospital_ids(user=user))
    request._admin_hospital_ids = ids
    return ids


class HospitalAdminSite(admin.AdminSite):
    site_header = "Hospital records administration"
    site_title = "Hospital records admin"
    index_title = "Administration"

    def has_permission(self, request):
        ids = admin_hospital_ids(request)
        return ids is None or bool(ids)

    def login(self, request, extra_context=None):
        """Sign-in happens in the portal (allauth); a signed-in user who may not use the
        admin gets 403, never the admin's own password form."""
        from django.contrib.auth.views import redirect_to_login

        if request.user.is_authenticated:
            if not self.has_permission(request):
                raise PermissionDenied
            return HttpResponseRedirect(reverse("admin:index", current_app=self.name))
        next_url = request.GET.get(REDIRECT_FIELD_NAME) or reverse("admin:index", current_app=self.name)
        return redirect_to_login(next_url, settings.LOGIN_URL)

    def get_urls(self):
        urls = super().get_urls()
        # Replace the "view on site" shortcut: the stock view loads any object by id
        # through the unscoped base manager and redirects to its URL.
        return [
            path("r/<path:content_type_id>/<path:object_id>/", self.admin_view(self.view_on_site),
                 name="view_on_site"),
            *urls,
        ]

    def view_on_site(self, request, content_type_id, object_id):
        from django.contrib.contenttypes.models import ContentType

        try:
            model = ContentType.objects.get_for_id(content_type_id).model_class()
        except (ContentType.DoesNotExist, ValueError):
            raise Http404 from None
        model_admin = self._registry.get(model)
        if model_admin is None:
            raise Http404
        obj = model_admin.get_object(request, object_id)
        if obj is None or not model_admin.has_view_permission(request, obj) or not hasattr(obj, "get_absolute_url"):
            raise Http404
        return HttpResponseRedirect(obj.get_absolute_url())


class HospitalAdminConfig(AdminConfig):
    """Installs `HospitalAdminSite` as `django.contrib.admin.site`."""

    default_site = "hospitals.admin_site.HospitalAdminSite"
