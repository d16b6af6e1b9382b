"""Portal pages about the hospital itself: home (picker), dashboard, members, audit trail.

Every view under `/h/<slug>/` runs inside the hospital's scope with `request.hospital`
and `request.membership` set by `TenantScopeMiddleware`; role checks use `require_action`."""

import json
from datetime import UTC

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from patients import selectors as patient_selectors

from . import exports, selectors, services
from .audit import audit_record
from .dashboard import CACHE_SECONDS
from .dashboard import dashboard as dashboard_figures
from .decorators import require_action
from .forms import AuditFilterForm, MemberInviteForm, MemberRoleForm, add_service_errors

AUDIT_PAGE_SIZE = 50
RECENT_CHANGES = 10


@login_required
def home(request):
    """Send the user to their hospital, or let them pick one."""
    memberships = selectors.user_memberships(user=request.user)
    if len(memberships) == 1:
        return redirect("hospitals:dashboard", hospital_slug=memberships[0].hospital.slug)
    return render(request, "hospitals/home.html", {"memberships": memberships})


@require_action("patient.view")
def dashboard(request, hospital_slug):
    """Patients per status and their trend, screenings, reviews and the latest status changes."""
    figures = dashboard_figures(hospital=request.hospital)
    recent = _recent_changes(request, key=figures["recent_key"])
    if recent["patients"]:
        # The recent changes name patients, so this page is a read of patient data.
        patient_selectors.patient_audit_read(request=request, patient_ids=recent["patients"], action="list")
    return render(request, "hospitals/dashboard.html", {**figures, "recent_changes": recent["html"]})


def _recent_changes(request, *, key: str) -> dict:
    """The latest status changes rendered (a `SafeString`, which the cache keeps), and the
    patients they name (in the order shown).

    Cached under a key that a new status change or an edit of a patient changes
    (`recent_key` of `hospitals.dashboard.dashboard`): a renamed author, or a change a platform
    admin edits or deletes, shows within the figures' `CACHE_SECONDS`. Reading and rendering
    them was 40 % of the page's CPU."""
    recent = cache.get(key)
    if recent is None:
        changes = patient_selectors.status_change_recent(hospital=request.hospital, limit=RECENT_CHANGES)
        recent = {"html": render_to_string("hospitals/_recent_changes.html",
                                           {"recent_changes": changes, "hospital": request.hospital}),
                  "patients": list(dict.fromkeys(c.patient_id for c in changes))}
        cache.set(key, recent, CACHE_SECONDS)
    return recent


# --- Members ----------------------------------------------------------------------------------

def _member_or_404(request, pk: int):
    """A membership of the current hospital only; another hospital's id is a 404."""
    membership = selectors.member_list(hospital=request.hospital).filter(pk=pk).first()
    if membership is None:
        raise Http404("No such member.")
    return membership


@require_action("members.manage")
def members(request, hospital_slug):
    return render(request, "hospitals/members.html", {"members": selectors.member_list(hospital=request.hospital)})


@require_action("members.manage")
@require_http_methods(["GET", "POST"])
def member_invite(request, hospital_slug):
    form = MemberInviteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            membership = services.membership_invite(
                hospital=request.hospital, invited_by=request.user, request=request, **form.cleaned_data
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Invitation sent to %(email)s.") % {"email": membership.user.email})
            return redirect("hospitals:members", hospital_slug=request.hospital.slug)
    return render(request, "hospitals/member_invite.html", {"form": form})


@require_action("members.manage")
@require_http_methods(["GET", "POST"])
def member_edit(request, hospital_slug, pk):
    """GET: the member's page. POST `op=role` changes the role, `op=deactivate` revokes
    access (and ends the member's sessions), `op=reactivate` restores it."""
    member = _member_or_404(request, pk)
    form = MemberRoleForm(initial={"role": member.role})
    action_errors: list[str] = []
    if request.method == "POST":
        op = request.POST.get("op", "role")
        done = None
        try:
            if op == "role":
                form = MemberRoleForm(request.POST)
                if form.is_valid():
                    services.membership_change_role(membership=member, role=form.cleaned_data["role"],
                                                    actor=request.user, request=request)
                    done = _("%(email)s is now %(role)s.") % {"email": member.user.email,
                                                                  "role": member.get_role_display().lower()}
            elif op == "deactivate":
                services.membership_deactivate(membership=member, actor=request.user, request=request)
                done = _("%(email)s no longer has access; their sessions were ended.") % {"email": member.user.email}
            elif op == "reactivate":
                services.membership_reactivate(membership=member, actor=request.user, request=request)
                done = _("%(email)s has access again.") % {"email": member.user.email}
            else:
                action_errors.append(_("Unknown operation."))
        except ValidationError as exc:
            if op == "role":
                add_service_errors(form, exc)
            else:
                action_errors.extend(exc.messages)
            member.refresh_from_db()
        if done:
            messages.success(request, done)
            return redirect("hospitals:members", hospital_slug=request.hospital.slug)
    return render(request, "hospitals/member_edit.html",
                  {"member": member, "form": form, "action_errors": action_errors})


# --- Audit trail ------------------------------------------------------------------------------

def _audit_events(request):
    """The hospital's audit events narrowed by the filter form (the list and the export
    share it). Returns (form, queryset)."""
    form = AuditFilterForm(request.GET or None)
    events = selectors.audit_event_list(hospital=request.hospital)
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        if data["action"]:
            events = events.filter(action=data["action"])
        if data["object_type"]:
            events = events.filter(object_type=data["object_type"].strip())
        if data["actor"]:
            events = events.filter(actor_email__iexact=data["actor"].strip())
        if data["date_from"]:
            events = events.filter(at__date__gte=data["date_from"])
        if data["date_to"]:
            events = events.filter(at__date__lte=data["date_to"])
    elif form.is_bound:
        events = events.none()
    return form, events


@require_action("audit.view")
def audit_list(request, hospital_slug):
    form, events = _audit_events(request)
    page = Paginator(events, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "hospitals/audit_list.html", {
        "form": form, "page": page, "querystring": query.urlencode(),
        "rows": [(event, json.dumps(event.detail, sort_keys=True)) for event in page],
    })


# Every field the entry's hash covers (see hospitals.audit._canonical), so a reader can
# recompute each hash and follow the prev_hash links without database access.
AUDIT_CSV_COLUMNS = ["seq", "at", "chain", "hospital_id", "actor_id", "actor_email", "action", "object_type",
                     "object_id", "detail", "ip", "user_agent", "prev_hash", "hash"]
_AT, _DETAIL = AUDIT_CSV_COLUMNS.index("at"), AUDIT_CSV_COLUMNS.index("detail")


@require_action("audit.view")
def audit_export(request, hospital_slug):
    """Stream the filtered trail as CSV, oldest first, with the chain fields (seq,
    prev_hash, hash) so the export can be checked offline. The export is itself audited.
    Values are written exactly as hashed (no formula escaping), or the hashes would not
    verify."""
    form, events = _audit_events(request)
    filters = {k: str(v) for k, v in (form.cleaned_data.items() if form.is_bound and form.is_valid() else []) if v}
    audit_record(action="export", object_type="audit_event", hospital=request.hospital, request=request,
                 detail={"filters": filters})
    rows = events.order_by("seq").values_list(*AUDIT_CSV_COLUMNS)

    def audit_rows():
        for row in rows.iterator(chunk_size=1000):
            values = list(row)
            values[_AT] = values[_AT].astimezone(UTC).isoformat(timespec="microseconds")
            values[_DETAIL] = json.dumps(values[_DETAIL], sort_keys=True, separators=(",", ":"))
            yield values

    return exports.csv_response(hospital=request.hospital, filename=exports.export_filename(request.hospital, "audit"),
                                header=AUDIT_CSV_COLUMNS, rows=audit_rows(), cell=exports.plain_cell)


# --- Data exports -------------------------------------------------------------------------------

@require_action("data.export")
def export_list(request, hospital_slug):
    return render(request, "hospitals/exports.html")


EXPORTS = {"patients": ("patient", exports.patient_rows), "screenings": ("screening", exports.screening_rows)}


@require_action("data.export")
def export_csv(request, hospital_slug, what):
    """Stream every patient or every screening of the hospital as CSV (text cells that a
    spreadsheet would run as formulas are escaped). Each export is audited."""
    if what not in EXPORTS:
        raise Http404("No such export.")
    object_type, build = EXPORTS[what]
    header, rows = build(hospital=request.hospital)
    audit_record(action="export", object_type=object_type, hospital=request.hospital, request=request,
                 detail={"format": "csv"})
    return exports.csv_response(hospital=request.hospital, filename=exports.export_filename(request.hospital, what),
                                header=header, rows=rows)


# --- Partner API clients ------------------------------------------------------------------------

@require_action("members.manage")
def api_clients(request, hospital_slug):
    from .api.selectors import partner_client_list

    return render(request, "hospitals/api_clients.html", {"clients": partner_client_list(hospital=request.hospital)})


@require_action("members.manage")
@require_http_methods(["GET", "POST"])
def api_client_create(request, hospital_slug):
    """Create a client. The answer shows its secret once: only a hash is stored, so the page
    is not cached and there is no way to show the secret again."""
    from django.views.decorators.cache import add_never_cache_headers

    from .api.services import partner_client_create
    from .forms import ApiClientForm

    form = ApiClientForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            new = partner_client_create(hospital=request.hospital, name=form.cleaned_data["name"],
                                        scopes=form.cleaned_data["scopes"], actor=request.user, request=request)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            response = render(request, "hospitals/api_client_created.html", {"new": new})
            add_never_cache_headers(response)
            return response
    return render(request, "hospitals/api_client_create.html", {"form": form})


@require_action("members.manage")
@require_http_methods(["GET", "POST"])
def api_client_revoke(request, hospital_slug, pk):
    """GET: confirm; POST: revoke (tokens deleted, no new ones)."""
    from .api.selectors import partner_client_list
    from .api.services import partner_client_revoke

    client = partner_client_list(hospital=request.hospital).filter(pk=pk).first()
    if client is None:
        raise Http404("No such API client.")
    if request.method == "POST":
        try:
            partner_client_revoke(client=client, actor=request.user, request=request)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, _("%(name)s was revoked; its tokens no longer work.") % {"name": client.name})
        return redirect("hospitals:api_clients", hospital_slug=request.hospital.slug)
    return render(request, "hospitals/api_client_revoke.html", {"client": client})
