"""The portal's lists link each row to its pages. The lists build a row's link from the
list's URL and the row's id (one `reverse()` per page, not per row: `{% url %}` costs about
45 us), so these tests check every link against Django's own `reverse()`."""

import html
import re
from urllib.parse import urlsplit

import pytest
from django.urls import Resolver404, resolve, reverse
from django_scopes import scope

from patients.models import Sex

from ..factories import PatientFactory, add_screening, airesult_for, hospital_world, screening_for

HREF = re.compile(r'href="([^"]*)"')


def links(response) -> set[str]:
    assert response.status_code == 200
    return {html.unescape(href) for href in HREF.findall(response.content.decode())}


@pytest.fixture
def world(hospital_a):
    world = hospital_world(hospital_a, tag="Lnk")
    add_screening(world, tag="Lnk")
    with scope(hospital=hospital_a):
        # An id of six digits: printed without a thousands separator in a link.
        world.other = PatientFactory(pk=123456, hospital=hospital_a, family_name="Lnkother", sex=Sex.MALE)
        world.waiting = screening_for(world.other, actor=world.clinician, seed=1)
        world.read = screening_for(world.other, actor=world.clinician, seed=2)
        airesult_for(world.read, covid=0.31)
    return world


def page(world, name, **kwargs):
    return reverse(name, kwargs={"hospital_slug": world.hospital.slug, **kwargs})


def test_every_link_of_the_lists_opens_a_page(world, login):
    client = login(world.clinician)
    paths = [page(world, "patients:list"), page(world, "patients:list") + "?q=Lnk", page(world, "screening:worklist"),
             page(world, "patients:detail", pk=world.patient.pk), page(world, "hospitals:dashboard")]
    for path in paths:
        for href in links(client.get(path)):
            if href.startswith("/h/"):
                try:
                    resolve(urlsplit(href).path)
                except Resolver404:
                    pytest.fail(f"{path} links to {href}, which is no page")


def test_the_rows_link_to_their_patient_and_screening(world, login):
    client = login(world.clinician)
    patients = {page(world, "patients:detail", pk=p.pk) for p in (world.patient, world.other)}
    screenings = {page(world, "screening:detail", pk=s.pk) for s in (world.screening, world.waiting, world.read)}
    assert "/123456/" in page(world, "patients:detail", pk=world.other.pk)

    assert patients <= links(client.get(page(world, "patients:list")))
    assert {page(world, "patients:detail", pk=world.other.pk)} <= links(
        client.get(page(world, "patients:list") + "?q=Lnkother"))
    assert patients | screenings <= links(client.get(page(world, "screening:worklist")))
    # The patient's screenings, and the timeline's upload, AI result and review.
    assert {page(world, "screening:detail", pk=world.screening.pk)} <= links(
        client.get(page(world, "patients:detail", pk=world.patient.pk)))
    other = links(client.get(page(world, "patients:detail", pk=world.other.pk)))
    assert {page(world, "screening:detail", pk=s.pk) for s in (world.waiting, world.read)} <= other
    # The dashboard's recent status changes.
    assert {page(world, "patients:detail", pk=world.patient.pk)} <= links(client.get(page(world, "hospitals:dashboard")))
