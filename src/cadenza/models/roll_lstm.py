"""Piano-roll LSTM with one sigmoid per pitch: paper 003's sigmoid model (Huang & Wu), and the
factorised-output LSTM of the polyphonic benchmark (Boulanger-Lewandowski et al. 2012).

Each frame's active pitches are summed as pitch embeddings (a multi-hot frame times an
embedding matrix), an LSTM reads the frames, and a linear layer gives one logit per pitch for
the next frame. Trained with binary cross-entropy; its test loss is the frame-level NLL.
Pitches are independent given the past, which is why RNN-NADE-style outputs do better.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cadenza.config import GenerateParams, ModelParams
from cadenza.models.specs import RollLSTMNet
from cadenza.representations.rolls import roll_to_notes
from cadenza.representations.tokens import Notes


class RollLSTM(nn.Module):
    def __init__(self, net: RollLSTMNet) -> None:
        super().__init__()
        self.pitch_embedding = nn.Linear(net.pitches, net.embedding, bias=False)  # sum of emb.
        self.rnn = nn.LSTM(
            net.embedding,
            net.hidden,
            num_layers=net.layers,
            batch_first=True,
            dropout=net.dropout if net.layers > 1 else 0.0,
        )
        self.head = nn.Linear(net.hidden, net.pitches)

    def forward(self, frames: torch.Tensor, state=None) -> tuple[torch.Tensor, object]:
        """frames (B, T, P) in {0, 1} -> next-frame logits (B, T, P), state."""
        hidden, state = self.rnn(self.pitch_embedding(frames), state)
        return self.head(hidden), state


def build(net: RollLSTMNet, info: dict) -> RollLSTM:
    return RollLSTM(net)


def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy per pitch, averaged over frames and pitches."""
    logits, _ = model(x)
    return F.binary_cross_entropy_with_logits(logits.float(), y)


@torch.no_grad()
def frame_probs(model: nn.Module, frames: torch.Tensor, seq_len: int) -> np.ndarray:
    """Teacher-forced P(pitch on) for frames 1..T-1 of a stream, carrying the state."""
    model.eval()
    device = next(model.parameters()).device
    out, state = [], None
    for s in range(0, len(frames) - 1, seq_len):
        x = frames[s : min(s + seq_len, len(frames) - 1)].to(device).float()[None]
        logits, state = model(x, state)
        out.append(torch.sigmoid(logits[0].float()).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 128))


@torch.no_grad()
def sample(
    model: nn.Module,
    mp: ModelParams,
    info: dict,
    prompt: np.ndarray,
    gen: GenerateParams,
    generator: torch.Generator,
) -> Notes:
    """Continue the prompt frame by frame, each pitch drawn from its temperature-scaled
    sigmoid."""
    model.eval()
    device = next(model.parameters()).device
    frames = torch.as_tensor(prompt if len(prompt) else np.zeros((1, 128), np.uint8))
    logits, state = model(frames[None].to(device).float())
    out = []
    for _ in range(gen.length):
        p = torch.sigmoid(logits[0, -1].float().cpu() / gen.temperature)
        frame = (torch.rand(128, generator=generator) < p).float()
        out.append(frame)
        logits, state = model(frame[None, None].to(device), state)
    return roll_to_notes(torch.stack(out).numpy() > 0, mp.net.steps_per_beat)
