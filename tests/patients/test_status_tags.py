"""The portal's status badges (`patients/templatetags/patient_status.py`)."""

import pytest
from django.template import engines

from patients.models import Status


def render(source, **context):
    return engines["django"].from_string("{% load patient_status %}" + source).render(context)


@pytest.mark.parametrize("status", list(Status))
def test_a_badge_shows_the_status_label_for_its_value_or_its_member(status):
    badge = f'<span class="badge status-{status.value}">{status.label}</span>'
    assert render("{% status_badge s %}", s=status.value) == badge
    assert render("{% status_badge s %}", s=status) == badge


def test_a_value_that_is_no_status_shows_as_it_is_escaped():
    assert (render("{% status_badge s %}", s='x"><script>')
            == '<span class="badge status-x&quot;&gt;&lt;script&gt;">x&quot;&gt;&lt;script&gt;</span>')


def test_a_transition_shows_both_statuses_or_the_new_one_alone():
    assert render("{% status_transition a b %}", a="", b="suspected") == (
        '<span class="badge status-suspected">Suspected</span>')
    assert render("{% status_transition a b %}", a="suspected", b=Status.INFECTED) == (
        '<span class="badge status-suspected">Suspected</span> <span aria-hidden="true">→</span>'
        '<span class="visually-hidden">to</span> <span class="badge status-infected">Infected</span>')

