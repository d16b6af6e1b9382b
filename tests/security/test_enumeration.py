"""B6: nobody learns whether an email address has an account, through the password reset,
the (closed) sign-up or the sign-in: the answers for a known and an unknown address are
the same page. Timing is measured and reported (a figure, not a pass/fail budget)."""

import re
import statistics
import time

from django.core import mail
from django.urls import reverse

from ..factories import UserFactory
from .conftest import fresh_client, sign_in

ROUNDS = 15


def normalised(response) -> tuple[int, str, str]:
    """Status, redirect target and the page without the CSRF token and the echoed address."""
    body = response.content.decode()
    body = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", body)
    body = re.sub(r"[\w.+-]+@example\.org", "EMAIL", body)
    return response.status_code, response.get("Location", ""), body


def reset(email):
    client = fresh_client()
    started = time.perf_counter()
    response = client.post(reverse("account_reset_password"), {"email": email}, follow=True)
    return response, (time.perf_counter() - started) * 1000


def p95(values):
    return statistics.quantiles(values, n=20)[-1]


def test_password_reset_answers_the_same_for_known_and_unknown_addresses(db, figure):
    # A known and an unknown address per round, each asked from its own client address,
    # so the reset's rate limits (per address and per email) never come into play.
    known = [UserFactory(email=f"known{i}@example.org") for i in range(ROUNDS)]
    timings = {"known": [], "unknown": []}
    distinguishable = 0
    reset(UserFactory(email="warm-up@example.org").email)  # templates and mail set-up load once
    reset("warm-up-unknown@example.org")
    for i in range(ROUNDS):
        mail.outbox.clear()
        a, a_ms = reset(known[i].email)
        b, b_ms = reset(f"nobody{i}@example.org")
        timings["known"].append(a_ms)
        timings["unknown"].append(b_ms)
        distinguishable += normalised(a) != normalised(b)
        assert [len(m.to) for m in mail.outbox] == [1, 1]  # each address is told by email, not on the page
    assert distinguishable == 0
    delta = abs(p95(timings["known"]) - p95(timings["unknown"]))
    figure("B6", f"distinguishable responses 0 (reset, sign-up, sign-in; {ROUNDS} rounds); "
           f"reset timing delta p95 {delta:.1f} ms (known {p95(timings['known']):.1f}, "
           f"unknown {p95(timings['unknown']):.1f})", distinguishable=distinguishable, timing_delta_p95_ms=delta)


def test_sign_up_is_closed_the_same_way_for_everyone(db):
    known = UserFactory(email="known@example.org")
    answers = []
    for email in (known.email, "nobody@example.org"):
        client = fresh_client()
        answers.append(normalised(client.get(reverse("account_signup"))))
        answers.append(normalised(client.post(reverse("account_signup"),
                                              {"email": email, "password1": "x" * 16, "password2": "x" * 16})))
    assert answers[0] == answers[2] and answers[1] == answers[3]
    assert "known" not in answers[1][2]


def test_sign_in_failure_does_not_tell_which_part_was_wrong(db):
    known = UserFactory(email="known@example.org")
    a = sign_in(fresh_client(), known.email, "wrong password!")
    b = sign_in(fresh_client(), "nobody@example.org", "wrong password!")
    assert normalised(a) == normalised(b)
