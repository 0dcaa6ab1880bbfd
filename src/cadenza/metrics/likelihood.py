"""Likelihood metrics for token models: NLL in nats, perplexity and top-1 accuracy.

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
