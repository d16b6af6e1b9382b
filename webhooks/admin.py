"""Django admin for webhook endpoints, deliveries and attempts: view-only for everyone.

Endpoints are managed in the portal (`/h/<slug>/webhooks/`), where writes go through the
audited services; the signing secret is never shown here. A delivery's body names a
patient by id and MRN, so opening a delivery is an audited read. Tenant limits:
`hospitals.admin.TenantAdminMixin` (hospital admins see their hospitals' rows only)."""

from django.contrib import admin

from hospitals.admin import HospitalFilter, TenantAdminMixin
from hospitals.audit import audit_record

from .models import Attempt, Delivery, Endpoint


class ReadOnlyWebhookAdmin(TenantAdminMixin, admin.ModelAdmin):
    hospital_admin_policy = {"view": "webhooks.manage"}
    denied_to_all = frozenset({"add", "change", "delete"})


@admin.register(Endpoint)
class EndpointAdmin(ReadOnlyWebhookAdmin):
    list_display = ["id", "url", "description", "is_active", "created_at", "hospital"]
    list_filter = ["is_active", HospitalFilter]
    search_fields = ["url", "description"]
    list_select_related = ["hospital"]
    fields = ["hospital", "url", "description", "events", "is_active", "secret_rotated_at", "created_by",
              "created_at", "updated_at"]  # never `secret`
    readonly_fields = fields


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyWebhookAdmin):
    list_display = ["id", "event", "endpoint", "status", "attempts", "last_status_code", "created_at", "hospital"]
    list_filter = ["status", "event", HospitalFilter]
    search_fields = ["event_id"]
    list_select_related = ["endpoint", "hospital"]
    date_hierarchy = "created_at"
    fields = ["hospital", "endpoint", "event", "event_id", "status", "attempts", "next_attempt_at", "enqueued_at",
              "last_status_code", "last_error", "delivered_at", "replay_of", "replayed_by", "created_at", "body"]
    readonly_fields = fields

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object_or_404(request, object_id)
        if request.method == "GET":
            audit_record(action="view", object_type="webhook_delivery", object_id=obj.pk, hospital=obj.hospital,
                         request=request, detail={"via": "admin"})
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(Attempt)
class AttemptAdmin(ReadOnlyWebhookAdmin):
    list_display = ["id", "delivery", "number", "started_at", "status_code", "duration_ms", "succeeded", "hospital"]
    list_filter = ["succeeded", HospitalFilter]
    list_select_related = ["delivery", "hospital"]
    fields = ["hospital", "delivery", "number", "started_at", "duration_ms", "status_code", "succeeded", "error",
              "response_snippet"]
    readonly_fields = fields
