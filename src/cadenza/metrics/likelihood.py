"""Likelihood metrics: token NLL (nats), perplexity and top-1 accuracy; frame-level NLL and
Bay et al.'s frame accuracy for piano-roll models.

Accumulated as sums so that a test split of any length can be streamed through in windows;
`summarise` turns the sums into means.
"""

from __future__ import annotations

import math

import numpy as np


def token_sums(log_probs: np.ndarray, targets: np.ndarray, ignore: int = -1
               ) -> tuple[float, int, int]:
    """(sum of -log p(target), number correct, number counted) over (N, V) log-probs."""
    log_probs, targets = np.asarray(log_probs), np.asarray(targets)
    keep = targets != ignore
    lp, t = log_probs[keep], targets[keep]
    nll = float(-lp[np.arange(len(t)), t].sum())
    correct = int((lp.argmax(axis=1) == t).sum())
    return nll, correct, int(len(t))


def summarise(nll_sum: float, correct: int, count: int) -> dict[str, float]:
    if count == 0:
        return {"nll": float("nan"), "perplexity": float("nan"), "accuracy": float("nan")}
    nll = nll_sum / count
    return {"nll": nll, "perplexity": math.exp(nll), "accuracy": correct / count}


def frame_nll(probs: np.ndarray, targets: np.ndarray, eps: float = 1e-7) -> float:
    """Frame-level NLL of piano-roll predictions (Boulanger-Lewandowski et al. 2012), in nats:
    -sum over pitches of [y log p + (1 - y) log(1 - p)], averaged over frames.

    `probs` and `targets` are (frames, pitches): the predicted on-probability of each pitch in
    each frame (frame t predicted from frames < t) and the true binary frames. Probabilities
    are clipped to [eps, 1 - eps] so that one confident mistake is large, not infinite.
    """
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    y = np.asarray(targets, dtype=bool)
    if len(y) == 0:
        return float("nan")
    return float(-np.where(y, np.log(p), np.log1p(-p)).sum() / len(y))


def frame_accuracy(predicted: np.ndarray, targets: np.ndarray) -> float:
    """Bay, Ehmann & Downie (2009) frame-level accuracy: TP / (TP + FP + FN), with the
    counts summed over all frames and pitches (true negatives do not count)."""
    pred, y = np.asarray(predicted, dtype=bool), np.asarray(targets, dtype=bool)
    tp = np.count_nonzero(pred & y)
    wrong = np.count_nonzero(pred ^ y)
    return float(tp / (tp + wrong)) if tp + wrong else float("nan")
