from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render

from . import selectors


@login_required
def home(request):
    """Send the user to their hospital, or let them pick one."""
    memberships = selectors.user_memberships(user=request.user)
    if len(memberships) == 1:
        return redirect("hospitals:dashboard", hospital_slug=memberships[0].hospital.slug)
    return render(request, "hospitals/home.html", {"memberships": memberships})


def dashboard(request, hospital_slug):
    return render(request, "hospitals/dashboard.html", {})
