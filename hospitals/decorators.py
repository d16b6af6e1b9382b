"""View decorators for the portal's role checks.

Membership itself is checked by `hospitals.middleware.TenantScopeMiddleware` (non-member:
404); these decorators only ask the POLICY table whether the member's role may act."""

from functools import wraps

from django.core.exceptions import PermissionDenied
from django.http import Http404

from .permissions import POLICY, role_can


def require_action(action: str):
    """Refuse the view with 403 unless the current member's role may perform `action`.

    A view outside a hospital URL (no `request.membership`) is a programming error and
    answers 404 rather than running unscoped."""
    if action not in POLICY:
        raise ValueError(f"Unknown action {action!r}: add it to hospitals.permissions.POLICY.")

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            membership = getattr(request, "membership", None)
            if membership is None:
                raise Http404("No such hospital.")
            if not role_can(membership.role, action):
                raise PermissionDenied(f"Your role may not do this ({action}).")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
