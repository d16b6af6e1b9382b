from . import selectors
from .permissions import POLICY, role_can


def tenant(request):
    """The current hospital, the user's other hospitals and what the role may do."""
    membership = getattr(request, "membership", None)
    role = membership.role if membership else None
    user = getattr(request, "user", None)
    return {
        "hospital": getattr(request, "hospital", None),
        "membership": membership,
        "can": {action.replace(".", "_"): role_can(role, action) for action in POLICY},
        "my_memberships": (
            selectors.user_memberships(user=user) if user is not None and user.is_authenticated else []
        ),
    }
