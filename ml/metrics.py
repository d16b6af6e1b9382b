"""Screening metrics in plain numpy (no scikit-learn).

All functions take integer labels ``y`` (indices into :data:`ml.card.CLASSES`)
and an ``(N, 3)`` array of probabilities.  A figure the data cannot support
(an AUC without positives or negatives, a sensitivity without positives) is
``None``, which becomes ``null`` in JSON.
"""

from __future__ import annotations

import math

import numpy as np

from ml.card import CLASSES, COVID

ECE_BINS = 15


def roc_auc(positive: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    positive = np.asarray(positive, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    n_pos = int(positive.sum())
    n_neg = int(positive.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(score, kind="mergesort")
    sorted_scores = score[order]
    ranks = np.empty(score.size, dtype=np.float64)
    i = 0
    while i < score.size:  # average ranks over runs of tied scores
        j = i
        while j + 1 < score.size and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = ECE_BINS) -> float | None:
    """ECE of the top-label confidence: the bin-size-weighted mean of
    |accuracy - confidence| over ``n_bins`` equal-width confidence bins."""
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y)
    if len(y) == 0:
        return None
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    # bins (0, 1/n], (1/n, 2/n], ...; a confidence of exactly 0 joins the first
    idx = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def decide(probs: np.ndarray, threshold: float) -> np.ndarray:
    """The label the product shows: ``covid`` when P(covid) reaches the
    operating threshold, otherwise the likelier of pneumonia and normal."""
    probs = np.asarray(probs)
    others = [i for i in range(len(CLASSES)) if i != COVID]
    rest = np.asarray(others)[probs[:, others].argmax(axis=1)]
    return np.where(probs[:, COVID] >= threshold, COVID, rest)


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else float(num / den)


def summarize(y, probs, threshold: float, groups: dict[str, np.ndarray] | None = None) -> dict:
    """The evaluation report: n, accuracy, macro_auc, covid_auc, ece and
    per-class sensitivity/specificity (at the product decision), auc and n.

    ``groups`` maps a breakdown name (``by_source``, ...) to an array of group
    values; each group gets the same figures.
    """
    y = np.asarray(y, dtype=int)
    probs = np.asarray(probs, dtype=np.float64).reshape(len(y), len(CLASSES))
    pred = decide(probs, threshold) if len(y) else np.zeros(0, int)
    per_class = {}
    for k, name in enumerate(CLASSES):
        pos = y == k
        hit = pred == k
        per_class[name] = {
            "sensitivity": _ratio(int((pos & hit).sum()), int(pos.sum())),
            "specificity": _ratio(int((~pos & ~hit).sum()), int((~pos).sum())),
            "auc": roc_auc(pos, probs[:, k]) if len(y) else None,
            "n": int(pos.sum()),
        }
    aucs = [per_class[c]["auc"] for c in CLASSES]
    report = {
        "n": int(len(y)),
        "accuracy": _ratio(int((pred == y).sum()), len(y)),
        "macro_auc": None if any(a is None for a in aucs) else float(np.mean(aucs)),
        "covid_auc": per_class["covid"]["auc"],
        "ece": expected_calibration_error(probs, y),
        "threshold": float(threshold),
        "per_class": per_class,
    }
    for key, values in (groups or {}).items():
        values = np.asarray(values)
        report[key] = {
            str(g): summarize(y[values == g], probs[values == g], threshold)
            for g in sorted(set(values.tolist()))
        }
    return report


#: COVID thresholds at which evaluation reports the sensitivity/specificity trade-off.
OPERATING_THRESHOLDS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7)


def operating_points(y, p_covid, thresholds) -> list[dict]:
    """COVID-vs-rest sensitivity and specificity at each threshold (a figure
    without positives or negatives is None): the table a site uses to re-set
    the threshold on its own data."""
    is_covid = np.asarray(y) == COVID
    p_covid = np.asarray(p_covid, dtype=np.float64)
    out = []
    for t in sorted(set(float(t) for t in thresholds)):
        flag = p_covid >= t
        out.append({"threshold": t,
                    "sensitivity": _ratio(int((flag & is_covid).sum()), int(is_covid.sum())),
                    "specificity": _ratio(int((~flag & ~is_covid).sum()), int((~is_covid).sum()))})
    return out


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature T minimising the validation negative log-likelihood of
    softmax(logits / T): a log-spaced grid search refined around the best."""
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=int)

    def nll(t):
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -logp[np.arange(len(y)), y].mean()

    grid = np.exp(np.linspace(math.log(0.05), math.log(100.0), 240))
    best = min(grid, key=nll)
    fine = np.exp(np.linspace(math.log(best / 1.1), math.log(best * 1.1), 101))
    return float(min(fine, key=nll))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def choose_threshold(p_covid: np.ndarray, is_covid: np.ndarray, target_sensitivity: float) -> float:
    """Largest threshold whose COVID sensitivity reaches ``target_sensitivity``.

    Candidate thresholds are the COVID probabilities of the COVID images; the
    highest one that still keeps the required share of them at or above it
    maximises specificity under the sensitivity constraint.
    """
    pos = np.sort(np.asarray(p_covid, dtype=np.float64)[np.asarray(is_covid, dtype=bool)])
    if pos.size == 0:
        return 0.5
    # keep at least ceil(target * n) positives at or above the threshold
    k = int(math.ceil(target_sensitivity * pos.size - 1e-9))
    k = min(max(k, 1), pos.size)
    return float(pos[pos.size - k])
