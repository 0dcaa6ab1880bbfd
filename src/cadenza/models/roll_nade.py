"""Piano-roll LSTM with a pitch-autoregressive output: the pitches of a frame are modelled
jointly, one after another, as in RNN-NADE (Boulanger-Lewandowski et al., ICML 2012) and the
biaxial / TP-LSTM-NADE models (Johnson 2017).

A time LSTM reads the past frames, as in `roll_lstm`. Inside each frame a small pitch LSTM
walks up the keyboard: at pitch p it sees the time LSTM's state and whether pitch p-1 is on,
and gives P(pitch p on | pitches below, past frames). The product of these conditionals is
the frame's probability, so the frame NLL is exact; a factorised sigmoid output (one
independent Bernoulli per pitch) cannot express that C and E go together.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cadenza.config import GenerateParams, ModelParams
from cadenza.models.specs import RollNADENet
from cadenza.representations.rolls import roll_to_notes
from cadenza.representations.tokens import Notes

if TYPE_CHECKING:
    from cadenza.models.roll_biaxial import RollBiaxial  # shares this sampler
    from cadenza.models.roll_made import RollMADE  # shares this sampler


def choose(
    logit: torch.Tensor, generator: torch.Generator | None, temperature: float
) -> torch.Tensor:
    """Each row's key on (1.0) or off, from its logit: drawn with probability
    sigmoid(logit / temperature) given a generator, else the greedy choice (p > 0.5). The draw
    is made on the CPU, so a seed gives the same frames on any device. Shared by the
    pitch-autoregressive families' `decode`."""
    prob = torch.sigmoid(logit.float() / temperature)
    if generator is None:
        return (prob > 0.5).float()
    return (torch.rand(len(prob), generator=generator) < prob.cpu()).float().to(prob.device)


def walk_keys(
    rnn: nn.LSTM,
    head: nn.Linear,
    step_input: Callable[[int, torch.Tensor], torch.Tensor],
    n: int,
    pitches: int,
    generator: torch.Generator | None,
    temperature: float,
) -> torch.Tensor:
    """N frames (N, P), each chosen key by key from the bottom: at key p the pitch LSTM `rnn`
    reads `step_input(p, below)` (below: (N, 1, 1), whether key p-1 was chosen, 0 under the
    lowest key) and `head` turns its output into key p's logit. It is the sampling twin of
    the teacher-forced `pitch_logits` of `roll_nade` and `roll_biaxial`, which run the same
    LSTM over a whole known frame at once; one loop serves both families."""
    below = torch.zeros(n, 1, 1, device=head.weight.device)
    state = None
    out = []
    for p in range(pitches):
        hidden, state = rnn(step_input(p, below), state)
        on = choose(head(hidden)[:, 0, 0], generator, temperature)
        out.append(on)
        below = on.view(n, 1, 1)
    return torch.stack(out, dim=1)


class RollNADE(nn.Module):
    def __init__(self, net: RollNADENet) -> None:
        super().__init__()
        self.pitches = net.pitches
        self.pitch_embedding = nn.Linear(net.pitches, net.embedding, bias=False)
        self.time_rnn = nn.LSTM(net.embedding, net.hidden, batch_first=True)
        self.drop = nn.Dropout(net.dropout)
        self.context = nn.Linear(net.hidden, net.pitch_hidden)
        # input at pitch p: the frame's context, a learned embedding of p, is pitch p-1 on
        self.position = nn.Embedding(net.pitches, net.pitch_hidden)
        self.pitch_rnn = nn.LSTM(1 + 2 * net.pitch_hidden, net.pitch_hidden, batch_first=True)
        self.head = nn.Linear(net.pitch_hidden, 1)

    def time_context(self, frames: torch.Tensor, state=None):
        """frames (B, T, P) -> per-frame context for the pitch LSTM (B, T, H), state."""
        hidden, state = self.time_rnn(self.pitch_embedding(frames), state)
        return self.context(self.drop(hidden)), state

    def pitch_logits(self, context: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Teacher-forced conditionals: context (N, H), target frames (N, P) -> logits (N, P)
        of P(pitch p | pitches < p of the target, context)."""
        n, p = target.shape
        below = F.pad(target[:, :-1], (1, 0)).unsqueeze(-1)  # pitch p-1, 0 before the first
        inputs = torch.cat(
            [below, self.position.weight.expand(n, -1, -1), context.unsqueeze(1).expand(-1, p, -1)],
            dim=-1,
        )
        out, _ = self.pitch_rnn(inputs)
        return self.head(out)[..., 0]

    def forward(self, frames: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Logits of the next frames' conditionals: (B, T, P)."""
        context, _ = self.time_context(frames)
        return self.pitch_logits(context.flatten(0, 1), targets.flatten(0, 1)).view_as(targets)

    @torch.no_grad()
    def decode(
        self,
        context: torch.Tensor,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """Frames from contexts (N, H), pitch by pitch: sampled with a generator, else the
        greedy choice (p > 0.5) at each pitch given the choices below it."""
        n = len(context)

        def step_input(p: int, below: torch.Tensor) -> torch.Tensor:
            return torch.cat(
                [below, self.position.weight[p].expand(n, 1, -1), context.unsqueeze(1)], dim=-1
            )

        return walk_keys(
            self.pitch_rnn, self.head, step_input, n, self.pitches, generator, temperature
        )


def build(net: RollNADENet, info: dict) -> RollNADE:
    return RollNADE(net)


def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the conditionals, averaged over frames and pitches."""
    return F.binary_cross_entropy_with_logits(model(x, y).float(), y)


@torch.no_grad()
def sample(
    model: RollNADE | RollMADE | RollBiaxial,
    mp: ModelParams,
    info: dict,
    prompt: np.ndarray,
    gen: GenerateParams,
    generator: torch.Generator,
) -> Notes:
    model.eval()
    device = next(model.parameters()).device
    frames = torch.as_tensor(prompt if len(prompt) else np.zeros((1, model.pitches), np.uint8))
    context, state = model.time_context(frames[None].to(device).float())
    out = []
    for _ in range(gen.length):
        frame = model.decode(context[0, -1:], generator, gen.temperature)
        out.append(frame[0].cpu())
        context, state = model.time_context(frame[None].to(device), state)
    return roll_to_notes(torch.stack(out).numpy() > 0, mp.net.steps_per_beat)
