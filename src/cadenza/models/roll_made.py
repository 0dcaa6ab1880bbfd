"""Piano-roll LSTM with a masked autoregressive (MADE) output across the pitches of a frame.

The same factorisation as RNN-NADE (Boulanger-Lewandowski et al., ICML 2012): P(frame) is the
product over pitches p of P(pitch p on | pitches below p in this frame, past frames). RNN-NADE
computes those conditionals with a NADE whose biases come from an RNN; here a time LSTM reads
the past frames and a MADE (Germain et al., ICML 2015), a masked MLP, gives every
conditional of a frame in one parallel pass. Masks keep pitch p's output from seeing pitches
>= p of its own frame, so the frame NLL is exact, and teacher-forced training costs one
forward pass instead of `roll_nade`'s 88 sequential pitch-LSTM steps (about 5x faster an
epoch on a CPU). As in the biaxial / TP-LSTM-NADE models (Johnson 2017), the output also sees the
previous frame directly, so "this note goes on sounding" needs no trip through the LSTM.
Sampling is sequential: one MADE pass per pitch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cadenza.models.roll_nade import choose, loss, sample  # noqa: F401 - roll_nade's interface
from cadenza.models.specs import RollMADENet


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 connectivity mask."""

    mask: torch.Tensor  # a buffer

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def made_masks(pitches: int, units: int, layers: int) -> list[torch.Tensor]:
    """MADE's masks for the pitch order 0..P-1. Input pitch j has degree j + 1; hidden unit
    k gets degree m_k in 1..P-1 and sees inputs of degree <= m_k; output p sees units with
    m_k <= p, so it depends on pitches 0..p-1 only (Germain et al. 2015, eq. 12-13)."""
    degrees = [torch.arange(1, pitches + 1)]
    degrees += [torch.arange(units) % (pitches - 1) + 1 for _ in range(layers)]
    masks = [(degrees[i + 1][:, None] >= degrees[i][None, :]) for i in range(layers)]
    masks.append(torch.arange(pitches)[:, None] >= degrees[-1][None, :])
    return masks


class RollMADE(nn.Module):
    def __init__(self, net: RollMADENet) -> None:
        super().__init__()
        self.pitches = net.pitches
        self.pitch_embedding = nn.Linear(net.pitches, net.embedding, bias=False)
        self.time_rnn = nn.LSTM(net.embedding, net.hidden, batch_first=True)
        self.drop = nn.Dropout(net.dropout)
        masks = made_masks(net.pitches, net.made_hidden, net.made_layers)
        self.made = nn.ModuleList(MaskedLinear(m) for m in masks)
        # the context (LSTM state + previous frame) may reach every unit and every output
        context = net.hidden + net.pitches
        self.context_hidden = nn.Linear(context, net.made_hidden, bias=False)
        self.context_out = nn.Linear(context, net.pitches)

    def time_context(self, frames: torch.Tensor, state=None):
        """frames (B, T, P) -> context of the next frame (B, T, H + P), state. The context
        ends with the frame itself: the previous frame of the one being predicted."""
        hidden, state = self.time_rnn(self.pitch_embedding(frames), state)
        return torch.cat([self.drop(hidden), frames], dim=-1), state

    def pitch_logits(self, context: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """Conditionals of every pitch given the pitches below it in `frame`: (..., P)."""
        return self._made(frame, self.context_hidden(context), self.context_out(context))

    def _made(
        self, frame: torch.Tensor, context_hidden: torch.Tensor, context_out: torch.Tensor
    ) -> torch.Tensor:
        """The masked MLP over `frame`, with the context's projections already computed (so
        `decode` projects each context once, not once per pitch)."""
        h = self.made[0](frame) + context_hidden
        for layer in self.made[1:-1]:
            h = layer(self.drop(F.relu(h)))
        return self.made[-1](self.drop(F.relu(h))) + context_out

    def forward(self, frames: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Logits of the next frames' conditionals: (B, T, P)."""
        context, _ = self.time_context(frames)
        return self.pitch_logits(context, targets)

    @torch.no_grad()
    def decode(
        self,
        context: torch.Tensor,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """Frames from contexts (N, H + P), pitch by pitch: sampled with a generator, else
        the greedy choice (p > 0.5) at each pitch given the choices below it."""
        frame = torch.zeros(len(context), self.pitches, device=context.device)
        context_hidden, context_out = self.context_hidden(context), self.context_out(context)
        for p in range(self.pitches):
            logit = self._made(frame, context_hidden, context_out)[:, p]
            frame[:, p] = choose(logit, generator, temperature)
        return frame


def build(net: RollMADENet, info: dict) -> RollMADE:
    return RollMADE(net)
