"""Django admin for hospitals, people and the audit trail, and the tenant plumbing every
ModelAdmin of the project uses (`TenantAdminMixin`, `TenantInlineMixin`).

Security invariant: a hospital admin (active `hospital_admin` membership, not a
superuser) sees only rows of the hospitals they administer, in every changelist, change
form, FK dropdown, autocomplete, inline, list filter and history view, and another
hospital's object id is answered 404 exactly like a missing one. Two layers do this: the
scope that `TenantScopeMiddleware` opens for /admin/ (scoped managers) and the explicit
filters below, so a model whose manager is not scoped (Hospital, User) is limited too.

Permissions of non-superusers come from their membership role through
`hospitals.permissions.POLICY` (see `hospital_admin_policy` on each ModelAdmin), never
from Django model permissions. Writes go through the services, which audit them."""

from collections import defaultdict

from django import forms
from django.contrib import admin
from django.contrib.admin.options import TO_FIELD_VAR
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import UserChangeForm as DjangoUserChangeForm
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.http import Http404
from django_scopes import scopes_disabled
from oauth2_provider import models as oauth2_models

from . import services
from .admin_site import admin_hospital_ids
from .audit import audit_record
from .models import AuditEvent, Hospital, Membership, Role, User
from .permissions import role_can

PERMISSIONS = ("view", "add", "change", "delete")


def tenant_choices(model, request) -> models.QuerySet | None:
    """The rows of `model` a user may pick in a form or filter (None: no limit)."""
    ids = admin_hospital_ids(request)
    if ids is None:
        return None
    if model is Hospital:
        return Hospital.objects.filter(pk__in=ids)
    if model is User:
        return User.objects.filter(memberships__hospital_id__in=ids).distinct()
    if any(f.name == "hospital" for f in model._meta.get_fields()):
        return model._default_manager.filter(hospital_id__in=ids)
    return None


class NotFoundFirstMixin:
    """An object the user may not see is answered 404 before any permission check, exactly
    like a missing one (Django would answer 403 for some views and redirect to the index
    with "doesn't exist" for others, which tells the two apart)."""

    def get_object_or_404(self, request, object_id):
        to_field = request.POST.get(TO_FIELD_VAR, request.GET.get(TO_FIELD_VAR))
        obj = self.get_object(request, unquote(object_id), to_field)
        if obj is None:
            raise Http404("No such object.")
        return obj

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        # Django redirects to the index with "doesn't exist" here; answer like any missing page.
        raise Http404("No such object.")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        self.get_object_or_404(request, object_id)
        return super().change_view(request, object_id, form_url, extra_context)

    def delete_view(self, request, object_id, extra_context=None):
        self.get_object_or_404(request, object_id)
        return super().delete_view(request, object_id, extra_context)

    def history_view(self, request, object_id, extra_context=None):
        self.get_object_or_404(request, object_id)
        return super().history_view(request, object_id, extra_context)


def audit_changelist(request, response, *, object_type: str, ids_key: str):
    """One "list" entry per hospital whose rows a changelist page shows (a platform admin's
    page spans hospitals, and each hospital has its own chain), naming the ids under
    `ids_key`. The entries are one transaction, appended in hospital id order: one commit
    for the page instead of one per hospital, and two pages lock the chains' heads in the
    same order."""
    changelist = getattr(response, "context_data", None) and response.context_data.get("cl")
    if changelist is None:
        return response
    by_hospital = defaultdict(list)
    for obj in changelist.result_list:
        by_hospital[obj.hospital].append(obj.pk)
    with transaction.atomic():
        for hospital in sorted(by_hospital, key=lambda h: h.pk):
            audit_record(action="list", object_type=object_type, hospital=hospital, request=request,
                         detail={ids_key: by_hospital[hospital], "via": "admin"})
    return response


class PrefetchChangeList(ChangeList):
    """A changelist that reads the rows its `list_select_related` names by primary key, a
    query per relation, instead of joining them: across hospitals (a platform admin's list)
    MariaDB planned the join from the related table and sorted every row for a page of 100
    (0.6-4.7 s a page on the benchmark database), where the list alone walks the index
    of its order."""

    def apply_select_related(self, qs):
        if isinstance(self.list_select_related, (list, tuple)):
            return qs.prefetch_related(*self.list_select_related)
        return super().apply_select_related(qs)


class TenantAdminMixin(NotFoundFirstMixin):
    """Limits a ModelAdmin to the requesting hospital admin's hospitals
    (openwisp-utils' MultitenantAdminMixin, adapted to memberships and scopes).

    `tenant_path` is the lookup from the model to its hospital id; `hospital_admin_policy`
    maps each admin permission to a POLICY action a hospital admin's role must hold
    (None: refused); `denied_to_all` refuses a permission to superusers too."""

    tenant_path = "hospital_id"
    hospital_admin_policy: dict[str, str | None] = {}
    change_list_template = "admin/tenant_change_list.html"  # the date hierarchy through the index
    denied_to_all: frozenset[str] = frozenset()

    # -- rows ------------------------------------------------------------------------------
    def get_changelist(self, request, **kwargs):
        return PrefetchChangeList

    def tenant_filter(self, request, queryset):
        ids = admin_hospital_ids(request)
        if ids is None:
            return queryset
        if not ids:
            return queryset.none()
        queryset = queryset.filter(**{f"{self.tenant_path}__in": ids})
        return queryset.distinct() if "__" in self.tenant_path else queryset

    def get_queryset(self, request):
        return self.tenant_filter(request, super().get_queryset(request))

    def get_search_results(self, request, queryset, search_term):
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        return self.tenant_filter(request, queryset), may_have_duplicates

    def object_in_tenant(self, request, obj) -> bool:
        ids = admin_hospital_ids(request)
        if ids is None:
            return True
        if self.tenant_path == "hospital_id":
            return obj.hospital_id in ids
        return self.tenant_filter(request, self.model._base_manager.filter(pk=obj.pk)).exists()

    # -- relations a user can set -------------------------------------------------------------
    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        choices = tenant_choices(db_field.remote_field.model, request)
        if choices is not None:
            kwargs["queryset"] = choices
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        choices = tenant_choices(db_field.remote_field.model, request)
        if choices is not None:
            kwargs["queryset"] = choices
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    # -- permissions --------------------------------------------------------------------------
    def tenant_permission(self, request, perm: str, obj=None) -> bool:
        if perm in self.denied_to_all:
            return False
        ids = admin_hospital_ids(request)
        if ids is None:
            return True
        if not ids:
            return False
        action = self.hospital_admin_policy.get(perm)
        if action is None or not role_can(Role.HOSPITAL_ADMIN, action):
            return False
        return obj is None or self.object_in_tenant(request, obj)

    def has_view_permission(self, request, obj=None):
        return self.tenant_permission(request, "view", obj) or self.tenant_permission(request, "change", obj)

    def has_add_permission(self, request, *args):
        return self.tenant_permission(request, "add")

    def has_change_permission(self, request, obj=None):
        return self.tenant_permission(request, "change", obj)

    def has_delete_permission(self, request, obj=None):
        return self.tenant_permission(request, "delete", obj)

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def get_actions(self, request):
        actions = super().get_actions(request)
        # The bulk delete action bypasses delete_model (and so the services and audit).
        actions.pop("delete_selected", None)
        return actions


class TenantHistoryAdminMixin(TenantAdminMixin):
    """For simple-history admins: the stock history views fall back to the unscoped
    historical table for ids the queryset does not hold, and the per-version view saves
    a "revert" on POST whatever the permissions say. Here both are 404 for another
    hospital's object and the version view is read-only (writes go through services)."""

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        self.get_object_or_404(request, object_id)
        if request.method == "POST":
            raise Http404("Reverting from history is not possible here.")
        return super().history_form_view(request, object_id, version_id, extra_context)

    def revert_disabled(self, request, obj=None):
        return True


class TenantInlineMixin:
    """Inline rows limited to the admin's hospitals; read-only unless `editable`."""

    editable = False
    extra = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        ids = admin_hospital_ids(request)
        if ids is None:
            return queryset
        return queryset.filter(hospital_id__in=ids)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        choices = tenant_choices(db_field.remote_field.model, request)
        if choices is not None:
            kwargs["queryset"] = choices
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        # `obj` is the parent, already found through the parent admin's limited queryset.
        ids = admin_hospital_ids(request)
        return ids is None or bool(ids)


class RelatedHospitalsFilter(admin.RelatedOnlyFieldListFilter):
    """The hospitals that hold rows of the list, their ids read from the list's (hospital, ...)
    index one value at a time ("Using index for group-by"). Django's filter asks for them with
    `hospital IN (SELECT hospital_id FROM <table>)`, which MariaDB answered by materializing the
    id of every row: 90 ms for a platform admin's screenings on the benchmark database."""

    def field_choices(self, field, request, model_admin):
        ids = (model_admin.get_queryset(request).order_by(self.field_path)
               .values_list(self.field_path, flat=True).distinct())
        return field.get_choices(include_blank=False, limit_choices_to={"pk__in": list(ids)},
                                 ordering=self.field_admin_ordering(field, request, model_admin))


HospitalFilter = ("hospital", RelatedHospitalsFilter)


class RequestForm(forms.ModelForm):
    """A ModelForm that knows the request (set by `get_form`), for checks that services
    would otherwise refuse after validation (too late to show in the form)."""

    request = None


def form_with_request(form_class, request):
    return type(form_class.__name__, (form_class,), {"request": request})


# --- Hospitals ----------------------------------------------------------------------------------
@admin.register(Hospital)
class HospitalAdmin(TenantAdminMixin, admin.ModelAdmin):
    """Platform superusers manage hospitals; a hospital admin sees their own, read-only."""

    tenant_path = "pk"
    hospital_admin_policy = {"view": "members.manage"}
    denied_to_all = frozenset({"delete"})  # hospitals own records and an audit chain: deactivate instead
    list_display = ["name", "slug", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["created_at"]

    def object_in_tenant(self, request, obj):
        ids = admin_hospital_ids(request)
        return ids is None or obj.pk in ids

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "slug"] if obj is not None else self.readonly_fields

    def get_prepopulated_fields(self, request, obj=None):
        # The slug is read-only once the hospital exists (it is in every URL).
        return self.prepopulated_fields if obj is None else {}

    def save_model(self, request, obj, form, change):
        if not change:
            created = services.hospital_create(name=obj.name, slug=obj.slug, actor=request.user)
            if not obj.is_active:
                created.is_active = False
                created.save(update_fields=["is_active"])
            obj.pk, obj.created_at = created.pk, created.created_at
            obj._state.adding = False
            return
        if form.changed_data:
            super().save_model(request, obj, form, change)
            audit_record(action="update", object_type="hospital", object_id=obj.pk, hospital=obj, request=request,
                         detail={"fields": sorted(form.changed_data), "via": "admin"})


# --- Users and memberships ----------------------------------------------------------------------
class MembershipInline(TenantInlineMixin, admin.TabularInline):
    model = Membership
    fk_name = "user"
    fields = ["hospital", "role", "is_active", "created_at", "deactivated_at"]
    readonly_fields = fields


class UserAddForm(forms.ModelForm):
    """New accounts get no password; they set one through the emailed reset link."""

    class Meta:
        model = User
        fields = ["email", "first_name", "last_name"]

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        if services.user_find_by_email(email=email) is not None:
            raise ValidationError("A user with this email address already exists.")
        return email


class UserChangeForm(DjangoUserChangeForm):
    class Meta(DjangoUserChangeForm.Meta):
        model = User

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        clash = User.objects.filter(email__iexact=email).exclude(pk=self.instance.pk)
        if clash.exists():
            raise ValidationError("A user with this email address already exists.")
        return email


@admin.register(User)
class UserAdmin(TenantAdminMixin, DjangoUserAdmin):
    """Superusers manage accounts; a hospital admin sees the members of their hospitals,
    read-only (no password or permission changes of anyone)."""

    tenant_path = "memberships__hospital_id"
    hospital_admin_policy = {"view": "members.manage"}
    denied_to_all = frozenset({"delete"})  # accounts are referenced by the audit trail: deactivate instead
    form = UserChangeForm
    add_form = UserAddForm
    ordering = ["email"]
    list_display = ["email", "first_name", "last_name", "is_active", "is_superuser", "last_login"]
    list_filter = ["is_active", "is_superuser"]
    search_fields = ["email", "first_name", "last_name"]
    inlines = [MembershipInline]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Name", {"fields": ["first_name", "last_name"]}),
        ("Platform access", {"fields": ["is_active", "is_superuser", "is_staff"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    member_fieldsets = [
        (None, {"fields": ["email", "first_name", "last_name", "is_active"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"fields": ["email", "first_name", "last_name"]})]
    filter_horizontal = []

    def get_fieldsets(self, request, obj=None):
        if obj is not None and admin_hospital_ids(request) is not None:
            return self.member_fieldsets
        return super().get_fieldsets(request, obj)

    def user_change_password(self, request, id, form_url=""):
        self.get_object_or_404(request, id)
        return super().user_change_password(request, id, form_url)

    def save_model(self, request, obj, form, change):
        if not change:
            created = services.user_create(email=form.cleaned_data["email"],
                                           first_name=form.cleaned_data.get("first_name", ""),
                                           last_name=form.cleaned_data.get("last_name", ""))
            obj.pk, obj.password, obj.date_joined = created.pk, created.password, created.date_joined
            obj._state.adding = False
            audit_record(action="create", object_type="user", object_id=obj.pk, request=request,
                         detail={"via": "admin"})
            return
        super().save_model(request, obj, form, change)
        if form.changed_data:
            audit_record(action="update", object_type="user", object_id=obj.pk, request=request,
                         detail={"fields": sorted(form.changed_data), "via": "admin"})
            if "is_active" in form.changed_data and not obj.is_active:
                services.user_deactivate(user=obj, actor=request.user, request=request)


class MembershipForm(RequestForm):
    def clean(self):
        cleaned = super().clean()
        actor = self.request.user if self.request else None
        if self.instance.pk and actor is not None and self.instance.user_id == actor.pk:
            if cleaned.get("role") not in (None, Role.HOSPITAL_ADMIN):
                self.add_error("role", "You cannot remove your own admin role.")
            if cleaned.get("is_active") is False:
                self.add_error("is_active", "You cannot deactivate yourself.")
        if not self.instance.pk and cleaned.get("user") and cleaned.get("hospital"):
            if Membership.objects.filter(user=cleaned["user"], hospital=cleaned["hospital"]).exists():
                self.add_error("user", "This person already has a membership in this hospital.")
        return cleaned


@admin.register(Membership)
class MembershipAdmin(TenantAdminMixin, admin.ModelAdmin):
    """Hospital admins change roles and (de)activate members of their hospitals; invitations
    happen in the portal (they send the set-password email), or here for superusers."""

    form = MembershipForm
    hospital_admin_policy = {"view": "members.manage", "change": "members.manage"}
    denied_to_all = frozenset({"delete"})  # deactivate instead: the membership is the access record
    list_display = ["user", "hospital", "role", "is_active", "created_at"]
    list_filter = ["role", "is_active", HospitalFilter]
    search_fields = ["user__email", "user__first_name", "user__last_name"]
    autocomplete_fields = ["user"]
    list_select_related = ["user", "hospital"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        return form_with_request(super().get_form(request, obj, change, **kwargs), request)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["user", "hospital", "role"]
        return ["user", "hospital", "role", "is_active", "invited_by", "created_at", "deactivated_at"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["user", "hospital", "invited_by", "created_at", "deactivated_at"]

    def save_model(self, request, obj, form, change):
        if not change:
            created = services.membership_invite(hospital=obj.hospital, email=obj.user.email, role=obj.role,
                                                 invited_by=request.user, request=request)
            obj.pk, obj.created_at, obj.invited_by = created.pk, created.created_at, created.invited_by
            obj._state.adding = False
            return
        current = Membership.objects.get(pk=obj.pk)
        if "role" in form.changed_data:
            services.membership_change_role(membership=current, role=obj.role, actor=request.user, request=request)
        if "is_active" in form.changed_data:
            if obj.is_active:
                services.membership_reactivate(membership=current, actor=request.user, request=request)
            else:
                services.membership_deactivate(membership=current, actor=request.user, request=request)


class ExactValueFilter(admin.SimpleListFilter):
    """A filter on one column's value whose choices come from `lookups`, not from Django's
    all-values filter, which reads that column of every row of the list for them."""

    field: str

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if hasattr(cls, "field"):
            cls.parameter_name = f"{cls.field}__exact"

    def queryset(self, request, queryset):
        return queryset.filter(**{self.field: self.value()}) if self.value() else queryset


class IndexedValuesFilter(ExactValueFilter):
    """Choices: the column's values across hospitals, read from an index that starts with
    the column one value at a time ("Using index for group-by"). For columns whose values are
    names from the code or the deployment, not a hospital's data; what the filter shows stays
    the admin's hospitals' rows. Django's filter of all values reads the column of every row
    of the admin's hospitals for its choices."""

    def lookups(self, request, model_admin):
        with scopes_disabled():
            values = list(model_admin.model._default_manager.order_by(self.field)
                          .values_list(self.field, flat=True).distinct())
        return [(value, value) for value in values]


# --- Audit trail ----------------------------------------------------------------------------------
class ObjectTypeFilter(IndexedValuesFilter):
    """The kinds of object audited (the (object type, object id) index). The trail grows with
    every read of a patient."""

    title = "object type"
    field = "object_type"


@admin.register(AuditEvent)
class AuditEventAdmin(TenantAdminMixin, admin.ModelAdmin):
    """Read-only for everyone: the trail is append-only (triggers refuse UPDATE/DELETE).
    Hospital admins see their hospitals' chains; platform events (sign-ins) only superusers."""

    hospital_admin_policy = {"view": "audit.view"}
    denied_to_all = frozenset({"add", "change", "delete"})
    list_display = ["at", "hospital", "actor_email", "action", "object_type", "object_id", "ip"]
    list_filter = ["action", ObjectTypeFilter, HospitalFilter]
    search_fields = ["actor_email", "object_type", "object_id"]
    date_hierarchy = "at"
    list_select_related = ["hospital"]
    readonly_fields = [f.name for f in AuditEvent._meta.fields]


# --- Platform-only admins of other apps -------------------------------------------------------------
class PlatformOnlyAdminMixin(NotFoundFirstMixin):
    """Models that belong to no hospital (groups, allauth's email addresses, MFA
    authenticators, user sessions) are for platform superusers only, whatever Django
    permissions a hospital admin may have been given: their rows span every hospital.
    To anyone else their objects do not exist (404)."""

    def _is_platform_admin(self, request) -> bool:
        return admin_hospital_ids(request) is None

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return queryset if self._is_platform_admin(request) else queryset.none()

    def has_module_permission(self, request):
        return self._is_platform_admin(request) and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return self._is_platform_admin(request) and super().has_view_permission(request, obj)

    def has_add_permission(self, request, *args):
        return self._is_platform_admin(request) and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None):
        return self._is_platform_admin(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._is_platform_admin(request) and super().has_delete_permission(request, obj)


TENANT_APPS = {"hospitals", "patients", "screening"}


def _make_platform_only(site: admin.AdminSite) -> None:
    for model, model_admin in list(site._registry.items()):
        if model._meta.app_label in TENANT_APPS or isinstance(model_admin, PlatformOnlyAdminMixin):
            continue
        admin_class = type(model_admin)
        site.unregister(model)
        site.register(model, type(f"PlatformOnly{admin_class.__name__}", (PlatformOnlyAdminMixin, admin_class), {}))


# OAuth2 applications and tokens are partner clients of one hospital, created and revoked
# by its admins in the portal (hospitals.api.services); django-oauth-toolkit's own admin
# pages would bypass that (and list every hospital's tokens), so they are not offered.
for _dot_model in (oauth2_models.Application, oauth2_models.AccessToken, oauth2_models.RefreshToken,
                   oauth2_models.IDToken, oauth2_models.Grant):
    if admin.site.is_registered(_dot_model):
        admin.site.unregister(_dot_model)

# The apps listed before `hospitals` in INSTALLED_APPS have registered theirs by now.
_make_platform_only(admin.site)
