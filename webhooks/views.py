"""Portal pages for a hospital's webhooks (`/h/<slug>/webhooks/`), for hospital admins
(POLICY `webhooks.manage`; other roles 403). Another hospital's endpoint or delivery id
is answered 404 exactly like a missing one. A new or rotated secret is shown once, in
the response to the POST that made it, and never stored in the session or shown again."""

import json

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from hospitals.audit import audit_record
from hospitals.decorators import require_action
from hospitals.forms import add_service_errors

from . import selectors, services
from .forms import EndpointForm
from .models import Delivery, Endpoint

PAGE_SIZE = 50


def _url(name: str, request, **kwargs) -> str:
    return reverse(name, kwargs={"hospital_slug": request.hospital.slug, **kwargs})


def _endpoint_or_404(request, pk: int) -> Endpoint:
    try:
        return selectors.endpoint_get(hospital=request.hospital, pk=pk)
    except Endpoint.DoesNotExist:
        raise Http404("No such endpoint.") from None


def _delivery_or_404(request, pk: int) -> Delivery:
    try:
        return selectors.delivery_get(hospital=request.hospital, pk=pk)
    except Delivery.DoesNotExist:
        raise Http404("No such delivery.") from None


def _show_secret(request, endpoint: Endpoint, secret: str, *, created: bool):
    response = render(request, "webhooks/secret.html", {"endpoint": endpoint, "secret": secret, "created": created})
    response["Cache-Control"] = "no-store"
    return response


@require_action("webhooks.manage")
def endpoint_list(request, hospital_slug):
    return render(request, "webhooks/list.html", {"endpoints": selectors.endpoint_list(hospital=request.hospital)})


@require_action("webhooks.manage")
@require_http_methods(["GET", "POST"])
@never_cache
def endpoint_create(request, hospital_slug):
    form = EndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            endpoint, secret = services.endpoint_create(hospital=request.hospital, actor=request.user,
                                                        request=request, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            return _show_secret(request, endpoint, secret, created=True)
    return render(request, "webhooks/form.html", {"form": form, "endpoint": None})


@require_action("webhooks.manage")
@require_http_methods(["GET", "POST"])
def endpoint_edit(request, hospital_slug, pk):
    endpoint = _endpoint_or_404(request, pk)
    initial = {"url": endpoint.url, "description": endpoint.description, "events": endpoint.events,
               "is_active": endpoint.is_active}
    form = EndpointForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.endpoint_update(endpoint=endpoint, actor=request.user, request=request, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, "Endpoint saved.")
            return redirect(_url("webhooks:list", request))
    return render(request, "webhooks/form.html", {"form": form, "endpoint": endpoint})


@require_action("webhooks.manage")
@require_http_methods(["GET", "POST"])
@never_cache
def endpoint_rotate_secret(request, hospital_slug, pk):
    """POST: a new secret replaces the old one at once (shown once). GET: back to the endpoint."""
    endpoint = _endpoint_or_404(request, pk)
    if request.method != "POST":
        return redirect(_url("webhooks:edit", request, pk=endpoint.pk))
    secret = services.endpoint_rotate_secret(endpoint=endpoint, actor=request.user, request=request)
    return _show_secret(request, endpoint, secret, created=False)


@require_action("webhooks.manage")
def delivery_list(request, hospital_slug, pk):
    endpoint = _endpoint_or_404(request, pk)
    page = Paginator(selectors.delivery_list(endpoint=endpoint), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "webhooks/deliveries.html", {"endpoint": endpoint, "page": page})


@require_action("webhooks.manage")
def delivery_detail(request, hospital_slug, pk):
    """The delivery, its body and every attempt. The body names a patient by id and MRN,
    so showing it is an audited read."""
    delivery = _delivery_or_404(request, pk)
    audit_record(action="view", object_type="webhook_delivery", object_id=delivery.pk, hospital=request.hospital,
                 request=request)
    try:
        body = json.dumps(json.loads(delivery.body), indent=2, sort_keys=True)
    except ValueError:
        body = delivery.body
    return render(request, "webhooks/delivery.html", {
        "delivery": delivery, "endpoint": delivery.endpoint, "body": body,
        "attempts": selectors.attempt_list(delivery=delivery),
        "replays": selectors.delivery_list(endpoint=delivery.endpoint).filter(replay_of=delivery),
    })


@require_action("webhooks.manage")
@require_http_methods(["GET", "POST"])
def delivery_replay(request, hospital_slug, pk):
    """POST: send the event again as a new delivery. GET: back to the delivery."""
    delivery = _delivery_or_404(request, pk)
    if request.method != "POST":
        return redirect(_url("webhooks:delivery", request, pk=delivery.pk))
    try:
        replay = services.delivery_replay(delivery=delivery, actor=request.user, request=request)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(_url("webhooks:delivery", request, pk=delivery.pk))
    messages.success(request, f"Replay queued as delivery #{replay.pk}.")
    return redirect(_url("webhooks:delivery", request, pk=replay.pk))
