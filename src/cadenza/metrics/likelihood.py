"""Likelihood metrics: token NLL (nats), perplexity and top-1 accuracy; frame-level NLL and
Bay et al.'s frame accuracy for piano-roll models.

Accumulated as sums so that a test split of any length can be streamed through in windows;
`summarise` turns the sums into means.
"""

from __future__ import annotations

import math

import numpy as np

TOKEN_SUMS = ("nll_sum", "n_known", "correct", "count", "n_unk")  # what token_sums returns


def token_sums(
    log_probs: np.ndarray, targets: np.ndarray, ignore: int = -1, unk: int = -1
) -> np.ndarray:
    """Sums over (N, V) log-probs: [-log p(target) over known targets, known targets,
    correct predictions, targets, `<unk>` targets].

    Honest with out-of-vocabulary targets (id `unk`): the model cannot name the real token,
    so an `<unk>` target is always an accuracy error, and predicting `<unk>` is never
    right; `<unk>` targets are left out of the NLL (p(<unk>) lumps every unseen token
    together, which would flatter a small vocabulary) and their share is reported instead.
    """
    log_probs, targets = np.asarray(log_probs), np.asarray(targets)
    keep = targets != ignore
    lp, t = log_probs[keep], targets[keep]
    known = t != unk
    nll = float(-lp[np.arange(len(t)), t][known].sum())
    correct = int(((lp.argmax(axis=1) == t) & known).sum())
    return np.array([nll, known.sum(), correct, len(t), len(t) - known.sum()], dtype=float)


def summarise(
    nll_sum: float, n_known: float, correct: float, count: float, n_unk: float
) -> dict[str, float]:
    """Means from `token_sums`: NLL per known target (nats), perplexity, accuracy over all
    targets (`<unk>` ones wrong), and the share of `<unk>` targets."""
    nan = float("nan")
    return {
        "nll": nll_sum / n_known if n_known else nan,
        "perplexity": math.exp(nll_sum / n_known) if n_known else nan,
        "accuracy": correct / count if count else nan,
        "unk_share": n_unk / count if count else nan,
    }


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
