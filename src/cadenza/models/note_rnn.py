"""Paper 004's MidiRNN, the TensorFlow tutorial "Generate music with an RNN": an LSTM(128) over
notes as (pitch, step, duration), with three heads.

Pitch is a 128-way classification (cross-entropy from logits); step and duration (seconds)
are regressions with the tutorial's "MSE with positive pressure" (MSE + 10 * mean(max(-y, 0))),
which pushes predictions away from negative times. Loss weights 0.05 / 1 / 1, Adam 0.005,
sequence length 25, and sampling at temperature 2.0, all as in the tutorial. The input pitch
is scaled to [0, 1) (pitch / 128).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cadenza.config import GenerateParams, ModelParams
from cadenza.models.specs import NoteRNNNet
from cadenza.representations.tokens import SECONDS_TO_BEATS, Notes


class NoteRNN(nn.Module):
    def __init__(self, net: NoteRNNNet) -> None:
        super().__init__()
        self.net = net
        self.rnn = nn.LSTM(3, net.hidden, batch_first=True)
        self.pitch = nn.Linear(net.hidden, 128)
        self.step = nn.Linear(net.hidden, 1)
        self.duration = nn.Linear(net.hidden, 1)

    def forward(self, notes: torch.Tensor, state=None):
        """notes (B, T, 3) as (pitch, step, duration) -> heads for the next note, state."""
        scaled = notes * torch.tensor([1 / 128, 1.0, 1.0], device=notes.device)
        hidden, state = self.rnn(scaled, state)
        return (self.pitch(hidden), self.step(hidden)[..., 0], self.duration(hidden)[..., 0]), state


def build(net: NoteRNNNet, info: dict) -> NoteRNN:
    return NoteRNN(net)


def mse_with_positive_pressure(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred, target) + 10 * torch.clamp(-pred, min=0).mean()


def loss(model: NoteRNN, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    (pitch, step, duration), _ = model(x)
    net = model.net
    return (
        net.pitch_weight * F.cross_entropy(pitch.flatten(0, 1).float(), y[..., 0].long().flatten())
        + net.step_weight * mse_with_positive_pressure(step.float(), y[..., 1])
        + net.duration_weight * mse_with_positive_pressure(duration.float(), y[..., 2])
    )


@torch.no_grad()
def sample(
    model: nn.Module,
    mp: ModelParams,
    info: dict,
    prompt: np.ndarray,
    gen: GenerateParams,
    generator: torch.Generator,
) -> Notes:
    """The tutorial's loop: draw the pitch at the net's temperature, take step and duration
    as predicted (clipped at 0), append, repeat `gen.length` times."""
    model.eval()
    device = next(model.parameters()).device
    notes = torch.as_tensor(prompt if len(prompt) else np.array([[60, 0, 0.5]], np.float32))
    (pitch, step, duration), state = model(notes[None].to(device))
    out = []
    for _ in range(gen.length):
        logits = pitch[0, -1].float().cpu() / (mp.net.temperature * gen.temperature)
        p = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
        note = [p, max(float(step[0, -1]), 0.0), max(float(duration[0, -1]), 0.01)]
        out.append(note)
        (pitch, step, duration), state = model(torch.tensor([[note]], device=device), state)
    return notes_from_features(np.array(out, dtype=np.float64))


def notes_from_features(features: np.ndarray) -> Notes:
    """(pitch, step_s, duration_s) rows -> notes in beats (at 120 bpm)."""
    onset = np.cumsum(features[:, 1]) * SECONDS_TO_BEATS
    duration = np.maximum(features[:, 2] * SECONDS_TO_BEATS, 1e-3)
    return onset, duration, np.clip(np.rint(features[:, 0]), 0, 127).astype(np.int64)
