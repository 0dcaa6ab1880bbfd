"""The `unigram` baseline of paper 003: every token drawn by its training-set frequency.

No context and no training: the log-frequencies from the training data are the logits,
whatever came before. Anything a real model does worse than this, it has not learned.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cadenza.models.token_lm import loss, sample_tokens  # noqa: F401 - the family interface

KIND = "tokens"
sample = sample_tokens


@dataclass(frozen=True)
class Net:
    smoothing: float = 0.5  # add-k smoothing, so that no token has probability 0

    def __post_init__(self) -> None:
        from cadenza.config import _check

        _check(self.smoothing > 0, "smoothing", "must be > 0")


class Unigram(nn.Module):
    def __init__(self, counts: list[int], smoothing: float) -> None:
        super().__init__()
        freq = torch.tensor(counts, dtype=torch.float32) + smoothing
        self.log_prob = nn.Parameter(torch.log(freq / freq.sum()), requires_grad=False)

    def forward(self, ids: torch.Tensor, state=None) -> tuple[torch.Tensor, object]:
        """Same distribution at every position; `state` is a dummy so sampling goes on."""
        return self.log_prob.expand(*ids.shape, -1), ()


def build(net: Net, info: dict) -> Unigram:
    return Unigram(info["counts"], net.smoothing)
