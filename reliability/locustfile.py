"""Locust users for `python -m reliability.load` (G1, G2, G4 of RELIABILITY.md).

HospitalUser: a session of a partner system of one hospital (its API client's token): lists and reads
patients, screenings and AI results, uploads a chest film now and then and reviews
results. AbusiveClient (named on the command line): one client of another hospital that sends reads
and uploads without pause; its 429 answers are expected and counted apart.

Clients and their tokens come from the JSON file named by LOAD_CLIENTS (written by the runner)."""

import itertools
import json
import os
import random

from locust import HttpUser, between, constant, events, task

CLIENTS = json.loads(open(os.environ["LOAD_CLIENTS"]).read()) if os.environ.get("LOAD_CLIENTS") else {}
FILM = open(os.environ["LOAD_FILM"], "rb").read() if os.environ.get("LOAD_FILM") else b""
HEADERS = {"X-Forwarded-Proto": "https"}  # as behind the TLS proxy (DJANGO_BEHIND_TLS_PROXY)
_next = itertools.count()
ABUSE = {"sent": 0, "throttled": 0, "ok": 0, "other": 0}


class HospitalUser(HttpUser):
    wait_time = between(2, 6)

    def on_start(self):
        pool = CLIENTS["normal"]
        self.credential = pool[next(_next) % len(pool)]
        self.base = f"/api/v1/hospitals/{self.credential['slug']}"
        self.headers = {**HEADERS, "Authorization": f"Bearer {self.credential['token']}"}

    def get(self, path, name):
        return self.client.get(self.base + path, headers=self.headers, name=name)

    @task(4)
    def list_patients(self):
        self.get("/patients/?page_size=20", "GET patients/")

    @task(2)
    def patient_history(self):
        self.get(f"/patients/{random.choice(self.credential['patients'])}/history/", "GET patients/<id>/history/")

    @task(2)
    def list_screenings(self):
        self.get("/screenings/?page_size=20", "GET screenings/")

    @task(1)
    def upload(self):
        self.client.post(self.base + "/screenings/", headers=self.headers, name="POST screenings/ (upload)",
                         data={"patient": random.choice(self.credential["patients"])},
                         files={"file": ("film.png", FILM, "image/png")})

    @task(1)
    def review(self):
        results = self.get("/ai-results/?page_size=5", "GET ai-results/").json().get("results", [])
        if results:
            result = random.choice(results)
            self.client.post(self.base + "/reviews/", headers=self.headers, name="POST reviews/", json={
                "result": result["id"], "decision": "confirm", "clinical_label": result["label"],
                "radiological_signs": False, "reason": "load test reading"})


class AbusiveClient(HttpUser):
    """One partner client that ignores every rate limit."""

    fixed_count = 1
    wait_time = constant(0)

    def on_start(self):
        self.credential = CLIENTS["abuser"]
        self.base = f"/api/v1/hospitals/{self.credential['slug']}"
        self.headers = {**HEADERS, "Authorization": f"Bearer {self.credential['token']}"}

    @task
    def hammer(self):
        with self.client.get(self.base + "/patients/?page_size=20", headers=self.headers, name="abuse: GET patients/",
                             catch_response=True) as response:
            ABUSE["sent"] += 1
            if response.status_code == 429:
                ABUSE["throttled"] += 1
                response.success()
            elif response.status_code == 200:
                ABUSE["ok"] += 1
            else:
                ABUSE["other"] += 1


@events.test_stop.add_listener
def write_abuse_counts(environment, **kwargs):
    if os.environ.get("LOAD_ABUSE_OUT"):
        with open(os.environ["LOAD_ABUSE_OUT"], "w") as fh:
            json.dump(ABUSE, fh)
