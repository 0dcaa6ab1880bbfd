"""The `unigram` baseline of paper 003: every token drawn by its training-set frequency.

No context and no training: the log-frequencies from the training data are the logits,
whatever came before. Anything a real model does worse than this, it has not learned.
"""

from __future__ import annotations

import torch
from torch import nn

from cadenza.models.specs import UnigramNet
from cadenza.models.token_lm import loss, sample  # noqa: F401 - the family interface


class Unigram(nn.Module):
    def __init__(self, counts: list[int], smoothing: float) -> None:
        super().__init__()
        freq = torch.tensor(counts, dtype=torch.float32) + smoothing
        self.log_prob = nn.Parameter(torch.log(freq / freq.sum()), requires_grad=False)

    def forward(self, ids: torch.Tensor, state=None) -> tuple[torch.Tensor, object]:
        """Same distribution at every position; `state` is a dummy so sampling goes on."""
        return self.log_prob.expand(*ids.shape, -1), ()


def build(net: UnigramNet, info: dict) -> Unigram:
    return Unigram(info["counts"], net.smoothing)
