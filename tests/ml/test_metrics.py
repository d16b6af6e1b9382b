"""Evaluation metrics against values worked out by hand.

Six images, threshold 0.30 (rows are covid, pneumonia, normal):

    #  truth      source  probabilities        shown label
    1  covid      A       0.70 0.20 0.10       covid      (0.70 >= 0.30)
    2  covid      A       0.30 0.50 0.20       covid      (0.30 >= 0.30)
    3  pneumonia  B       0.40 0.50 0.10       covid      (wrong)
    4  pneumonia  B       0.10 0.75 0.15       pneumonia
    5  normal     A       0.20 0.10 0.70       normal
    6  normal     B       0.35 0.03 0.62       covid      (wrong)

accuracy 4/6.  covid: sensitivity 2/2, specificity 2/4 (4 and 5 of 3-6),
AUC: positives {.70, .30} vs negatives {.40, .10, .20, .35}: 4 + 2 wins of
8 = 0.75.  pneumonia: sensitivity 1/2, specificity 4/4, AUC: {.50, .75} vs
{.20, .50, .10, .03}: 4 + 3.5 (one tie) of 8 = 0.9375.  normal: sensitivity
1/2, specificity 4/4, AUC 1.  macro AUC (0.75 + 0.9375 + 1) / 3.

ECE (15 bins of width 1/15; top-label confidence, argmax correctness):
bin (0.667, 0.733]: #1 (0.70, right), #5 (0.70, right) -> |1 - 0.70| = 0.30
bin (0.467, 0.533]: #2 (0.50, wrong), #3 (0.50, right) -> |0.5 - 0.5| = 0
bin (0.733, 0.800]: #4 (0.75, right) -> 0.25
bin (0.600, 0.667]: #6 (0.62, right) -> 0.38
ECE = (2 * 0.30 + 2 * 0 + 0.25 + 0.38) / 6 = 0.205.

Source A (#1, #2, #5): accuracy 1; no pneumonia, so pneumonia sensitivity,
AUC and the macro AUC are null; covid AUC {.70, .30} vs {.20} = 1.
Source B (#3, #4, #6): no covid, so covid sensitivity and AUC are null;
covid specificity 1/3.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from ml.metrics import (
    choose_threshold,
    expected_calibration_error,
    fit_temperature,
    operating_points,
    roc_auc,
    softmax,
    summarize,
)

Y = np.array([0, 0, 1, 1, 2, 2])
P = np.array([
    [0.70, 0.20, 0.10],
    [0.30, 0.50, 0.20],
    [0.40, 0.50, 0.10],
    [0.10, 0.75, 0.15],
    [0.20, 0.10, 0.70],
    [0.35, 0.03, 0.62],
])
SRC = np.array(["A", "A", "B", "B", "A", "B"])
LABELS = ["covid", "pneumonia", "normal"]


def check_report(r):
    approx = pytest.approx
    assert r["n"] == 6
    assert r["accuracy"] == approx(4 / 6)
    assert r["covid_auc"] == approx(0.75)
    assert r["macro_auc"] == approx((0.75 + 0.9375 + 1.0) / 3)
    assert r["ece"] == approx(0.205)
    pc = r["per_class"]
    assert pc["covid"] == {"sensitivity": 1.0, "specificity": 0.5, "auc": approx(0.75), "n": 2}
    assert pc["pneumonia"] == {"sensitivity": 0.5, "specificity": 1.0, "auc": approx(0.9375), "n": 2}
    assert pc["normal"] == {"sensitivity": 0.5, "specificity": 1.0, "auc": approx(1.0), "n": 2}
    a, b = r["by_source"]["A"], r["by_source"]["B"]
    assert a["n"] == 3 and a["accuracy"] == 1.0
    assert a["per_class"]["pneumonia"]["sensitivity"] is None
    assert a["per_class"]["pneumonia"]["auc"] is None
    assert a["macro_auc"] is None
    assert a["covid_auc"] == approx(1.0)
    assert b["per_class"]["covid"]["sensitivity"] is None
    assert b["covid_auc"] is None
    assert b["per_class"]["covid"]["specificity"] == approx(1 / 3)


def test_summarize_by_hand():
    check_report(summarize(Y, P, 0.30, {"by_source": SRC}))


def test_evaluate_cli_on_tiny_manifest(tmp_path, monkeypatch, capsys):
    """The evaluation CLI reads a manifest, runs every image through the
    preprocessing and reports the hand-computed figures.  The model is a stub
    that returns the table's probabilities in manifest order."""
    from PIL import Image

    import ml.inference
    from ml import evaluate

    rows = []
    for i, (y, s) in enumerate(zip(Y, SRC)):
        Image.fromarray(np.full((40, 40), 40 * i + 10, np.uint8)).save(tmp_path / f"{i}.png")
        rows.append({"path": f"{i}.png", "label": LABELS[y], "patient_id": f"p{i}", "source": s})
    with open(tmp_path / "m.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    class StubPredictor:
        image_size, threshold, name, version, sha256, model_dir = 16, 0.30, "stub", "0", "0" * 64, "-"

        def __init__(self, *a, **k):
            self.i = 0

        def predict_probs(self, x, batch_size=64):
            out = P[self.i:self.i + len(x)]
            self.i += len(x)
            return out

    monkeypatch.setattr(ml.inference, "Predictor", StubPredictor)
    check_report(evaluate.evaluate(tmp_path / "m.csv"))
    assert evaluate.main(["--manifest", str(tmp_path / "m.csv"), "--json"]) == 0
    import json

    check_report(json.loads(capsys.readouterr().out))
    assert evaluate.main(["--manifest", str(tmp_path / "m.csv")]) == 0
    table = capsys.readouterr().out
    assert "macro_auc=0.896" in table and "source=B" in table


def test_auc_and_ece_edge_cases():
    assert roc_auc(np.array([1, 1, 0]), np.array([0.2, 0.2, 0.2])) == 0.5
    assert roc_auc(np.array([1, 1]), np.array([0.1, 0.9])) is None
    assert expected_calibration_error(np.zeros((0, 3)), np.zeros(0)) is None
    r = summarize(np.zeros(0, int), np.zeros((0, 3)), 0.5)
    assert r["n"] == 0 and r["accuracy"] is None and r["macro_auc"] is None


def test_threshold_and_temperature():
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    pos = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, ], bool)
    t = choose_threshold(p, pos, 0.95)  # 10 positives: keep all ten
    assert t == 0.05
    t = choose_threshold(p, pos, 0.80)  # keep eight
    assert t == 0.2 and np.mean(p[pos] >= t) >= 0.8
    # Over-confident logits get T > 1.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 2000)
    logits = rng.normal(0, 1, (2000, 3))
    logits[np.arange(2000), y] += 1.0
    temp = fit_temperature(logits * 4, y)
    assert 3.0 < temp < 5.0
    assert softmax(logits).sum(axis=1) == pytest.approx(np.ones(2000))


def test_operating_points_by_hand():
    # covid = class 0: two covid (0.9, 0.4), three others (0.6, 0.2, 0.1)
    y = np.array([0, 0, 1, 2, 2])
    p = np.array([0.9, 0.4, 0.6, 0.2, 0.1])
    ops = operating_points(y, p, (0.5, 0.3, 0.05, 0.3))
    assert [o["threshold"] for o in ops] == [0.05, 0.3, 0.5]
    assert ops[0] == {"threshold": 0.05, "sensitivity": 1.0, "specificity": 0.0}
    assert ops[1]["sensitivity"] == 1.0 and np.isclose(ops[1]["specificity"], 2 / 3)
    assert ops[2]["sensitivity"] == 0.5 and np.isclose(ops[2]["specificity"], 2 / 3)
    assert operating_points(np.array([2]), np.array([0.9]), (0.5,))[0]["sensitivity"] is None
