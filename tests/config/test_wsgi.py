"""A web process loads Django, the apps, the URL patterns and their views when it imports
the WSGI application, and takes all of it out of the cyclic garbage collector's reach
(gc.freeze), so that the collector's full runs do not walk it again for every few requests."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CODE = """
import gc, json, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
views = ("patients.views", "screening.api.views", "fhir_facade.views")
before = [name in sys.modules for name in views]
import config.wsgi
print(json.dumps({"before": before, "after": [name in sys.modules for name in views],
                  "frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects()),
                  "threshold": gc.get_threshold()[0]}))
"""


def test_importing_the_wsgi_application_loads_the_views_and_freezes_them():
    out = subprocess.run([sys.executable, "-c", CODE], cwd=REPO, capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    state = json.loads(out.stdout.strip().splitlines()[-1])
    assert state["before"] == [False] * 3 and state["after"] == [True] * 3  # the URL patterns were loaded
    assert state["frozen"] > 50_000, state  # what was loaded is frozen...
    assert state["tracked"] < state["frozen"] / 20, state  # ...and hardly anything is left to the collector
    assert state["threshold"] > 700, state  # and it runs less often than Python's default
