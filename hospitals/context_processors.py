from .permissions import POLICY, role_can
from .security import active_memberships


def tenant(request):
    """The current hospital, the user's other hospitals (the rows the middleware already
    loaded for this request) and what the role may do."""
    membership = getattr(request, "membership", None)
    role = membership.role if membership else None
    user = getattr(request, "user", None)
    return {
        "hospital": getattr(request, "hospital", None),
        "membership": membership,
        "can": {action.replace(".", "_"): role_can(role, action) for action in POLICY},
        "my_memberships": (
            active_memberships(request) if user is not None and user.is_authenticated else []
        ),
    }
