"""Web nodes never import the inference stack: a fresh process loads the WSGI application,
resolves and serves a few pages and the API schema (which imports every API view and
serializer), publishes nothing, and has no TensorFlow, Keras or ONNX Runtime in
sys.modules. Workers load them; the web processes stay small."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "keras", "onnxruntime", "tf2onnx", "onnx")

CODE = f"""
import os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
from config.wsgi import application
from django.test.utils import setup_test_environment
from django.urls import resolve
from django.test import Client
import screening.tasks, screening.services, screening.views, screening.api.views  # the upload path
setup_test_environment()
for path in ("/", "/accounts/login/", "/api/v1/schema/", "/h/demo/", "/h/demo/patients/",
             "/api/v1/hospitals/demo/screenings/", "/fhir/demo/Patient"):
    resolve(path)
client = Client()
codes = [client.get(path).status_code for path in ("/accounts/login/", "/api/v1/schema/")]
heavy = sorted({{name.split(".")[0] for name in sys.modules}} & set({HEAVY!r}))
print(codes, heavy)
"""


def test_the_wsgi_application_does_not_import_the_inference_stack():
    out = subprocess.run([sys.executable, "-c", CODE], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    codes, heavy = out.stdout.strip().splitlines()[-1].rsplit("] ", 1)
    assert codes == "[200, 200", out.stdout  # the pages were really served
    assert heavy == "[]", f"web process imported {heavy}"
