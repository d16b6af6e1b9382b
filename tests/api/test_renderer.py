"""The API's JSON renderer (orjson) writes what DRF's JSONRenderer writes."""

import dataclasses
import datetime
import decimal
import json
import uuid
import zoneinfo

import numpy as np
import pytest
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy
from rest_framework.renderers import JSONRenderer as DrfJSONRenderer

from hospitals.api.renderers import JSONRenderer
from tests.api.conftest import _throttle_cache, make_partner  # noqa: F401  (fixtures)
from tests.fhir_facade.conftest import fhir_api, worlds  # noqa: F401  (fixtures)

PARIS = zoneinfo.ZoneInfo("Europe/Paris")


@dataclasses.dataclass
class Point:
    x: int


VALUES = {
    "aware UTC datetime, microseconds": datetime.datetime(2026, 12, 7, 22, 1, 2, 345678, tzinfo=datetime.UTC),
    "Paris datetime": datetime.datetime(2026, 7, 1, 9, 30, tzinfo=PARIS),
    "naive datetime": datetime.datetime(2026, 1, 2, 3, 4, 5),
    "date": datetime.date(2026, 2, 28),
    "time": datetime.time(7, 8, 9, 123456),
    "timedelta": datetime.timedelta(hours=2, seconds=3),
    "decimal": decimal.Decimal("0.1"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "lazy text": gettext_lazy("Patients"),
    "safe string": mark_safe("<b>x</b>"),
    "non-ASCII text": "Müller, Zoë – 李",
    "line separators": "a\u2028b\u2029c",
    "int keys": {1: "one", 2: {3: [True, None]}},
    "tuple": (1, "two", 3.5),
    "set": {7},
    "numpy scalars": [np.float32(0.25), np.int64(3)],
    "floats": [0.1, 1.5e-05, 0.123456789012345, -0.0, 1e16],
    "big integer": 2**70,
    "nested": {"results": [{"id": i, "probabilities": {"covid": i / 7}} for i in range(5)], "next": None},
    "empty": {},
}


@pytest.mark.parametrize("name", VALUES)
def test_writes_the_json_drf_writes(name):
    data = {"value": VALUES[name]}
    ours, theirs = JSONRenderer().render(data), DrfJSONRenderer().render(data)
    assert json.loads(ours) == json.loads(theirs)
    if name != "floats":  # the same bytes, but for a float's spelling (1e-05 / 1e-5)
        assert ours == theirs
    assert b"\xe2\x80\xa8" not in ours and b"\xe2\x80\xa9" not in ours


def test_a_float_reads_back_as_the_same_number():
    floats = [0.1, 1.5e-05, 1 / 3, 2.5e-300, 1e16, 123456.789]
    assert json.loads(JSONRenderer().render(floats)) == floats


def test_none_is_an_empty_body_and_indent_pretty_prints_as_drf_does():
    assert JSONRenderer().render(None) == b""
    data = {"a": [1, {"b": datetime.date(2026, 1, 1)}]}
    ours = JSONRenderer().render(data, "application/json; indent=2")
    assert ours == DrfJSONRenderer().render(data, "application/json; indent=2")
    assert b"\n  " in ours


def test_what_neither_can_write_fails_as_before():
    with pytest.raises(TypeError):
        JSONRenderer().render({"x": object()})
    with pytest.raises(TypeError):  # DRF's encoder knows no dataclass: orjson is not let write it
        JSONRenderer().render({"x": Point(1)})


def test_api_and_fhir_pages_are_the_json_drf_wrote(worlds, fhir_api):  # noqa: F811
    """Real pages (patients, screenings with their AI results' probabilities, a FHIR Bundle):
    the bytes sent parse to what DRF's renderer writes of the same data; pretty-printed on request."""
    _, api = fhir_api
    for path in ("/api/v1/hospitals/alpha/patients/", "/api/v1/hospitals/alpha/screenings/",
                 "/fhir/alpha/Patient", "/fhir/alpha/DiagnosticReport"):
        response = api.get(path)
        assert response.status_code == 200, path
        assert isinstance(response.accepted_renderer, JSONRenderer), path
        assert json.loads(response.content) == json.loads(DrfJSONRenderer().render(response.data)), path
        assert response.content.startswith(b"{") and b"\n" not in response.content
    assert json.loads(api.get("/api/v1/hospitals/alpha/screenings/").content)["results"][0]["result"]["probabilities"]
    pretty = api.get("/api/v1/hospitals/alpha/patients/", HTTP_ACCEPT="application/json; indent=2")
    assert pretty.content == DrfJSONRenderer().render(pretty.data, "application/json; indent=2")
    assert b"\n  " in pretty.content
