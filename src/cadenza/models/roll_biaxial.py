"""Pitch-tied bi-axial LSTM (BALSTM; Johnson, "Generating Polyphonic Music Using Tied
Parallel Networks", EvoMusArt 2017).

`roll_lstm`, `roll_nade` and `roll_made` learn one weight per key: what they learn about
"a major third above the bass" in C must be learned again in D. Here every key runs a copy of
the same time-axis LSTM (weights tied across pitch, like a convolution along the keyboard),
reading what it sees from where it stands:

* its position (the MIDI pitch / 127) and its pitch class (one-hot of 12);
* its vicinity: which keys within an octave either side were on in the previous frame
  (25 values, off the keyboard = off);
* its context: how many keys of each pitch class were on in the previous frame, counted from
  its own pitch class (12 values), so a C-major chord looks the same to C as G major to G.

A second LSTM then walks up the keys of the frame being predicted (the note axis): at key n it
reads key n's time-axis output, what key n read from the previous frame (the paper's note
axis reads the time-axis output only), and whether key n-1 was chosen, and gives P(key n on | keys
below, past frames). The frame's probability is the product of these conditionals, as in
RNN-NADE, so the frame NLL is exact and the benchmark scores it like `roll_nade`.

Left out from the paper: the beat input (the benchmark's pickles carry no meter) and the
articulation output (their frames say only which keys sound).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cadenza.models.roll_nade import loss, sample, walk_keys  # noqa: F401 - roll_nade's interface
from cadenza.models.specs import RollBiaxialNet

VICINITY = 12  # keys either side of a note that its time-axis LSTM sees: an octave
FEATURES = 1 + 12 + (2 * VICINITY + 1) + 12  # position, pitch class, vicinity, context


class RollBiaxial(nn.Module):
    # buffers, a row per key: its position and pitch class (P, 13), its pitch class alone
    # (P, 12), and the pitch classes counted from its own (P, 12): column j = (pc + j) mod 12
    fixed: torch.Tensor
    class_onehot: torch.Tensor
    relative: torch.Tensor

    def __init__(self, net: RollBiaxialNet) -> None:
        super().__init__()
        self.pitches = net.pitches
        midi = torch.arange(net.lowest, net.lowest + net.pitches)
        pitch_class = midi % 12
        fixed = torch.cat([(midi.float() / 127)[:, None], F.one_hot(pitch_class, 12).float()], 1)
        self.register_buffer("fixed", fixed, persistent=False)
        self.register_buffer("class_onehot", F.one_hot(pitch_class, 12).float(), persistent=False)
        self.register_buffer(
            "relative", (pitch_class[:, None] + torch.arange(12)) % 12, persistent=False
        )
        between = net.dropout if net.layers > 1 else 0.0
        self.time_rnn = nn.LSTM(FEATURES, net.hidden, net.layers, batch_first=True, dropout=between)
        self.drop = nn.Dropout(net.dropout)
        between = net.dropout if net.note_layers > 1 else 0.0
        self.note_rnn = nn.LSTM(
            net.hidden + FEATURES + 1,
            net.note_hidden,
            net.note_layers,
            batch_first=True,
            dropout=between,
        )
        self.head = nn.Linear(net.note_hidden, 1)

    def key_inputs(self, frames: torch.Tensor) -> torch.Tensor:
        """What each key's time-axis LSTM reads at each frame: (B, T, P) -> (B, T, P, F)."""
        b, t, p = frames.shape
        vicinity = F.pad(frames, (VICINITY, VICINITY)).unfold(-1, 2 * VICINITY + 1, 1)
        context = (frames @ self.class_onehot)[..., self.relative]  # (B, T, P, 12)
        return torch.cat([self.fixed.expand(b, t, p, -1), vicinity, context], dim=-1)

    def time_context(self, frames: torch.Tensor, state=None):
        """frames (B, T, P) -> each key's context for the next frame (B, T, P, H + F), and
        the state. The context is the key's tied time-LSTM output, one run over the B x P key
        sequences, followed by what the key read from the frame itself: as in `roll_made`,
        "this note goes on sounding" needs no trip through the LSTM."""
        b, t, p = frames.shape
        keys = self.key_inputs(frames)
        hidden, state = self.time_rnn(keys.transpose(1, 2).reshape(b * p, t, FEATURES), state)
        hidden = hidden.reshape(b, p, t, -1).transpose(1, 2)
        return torch.cat([self.drop(hidden), keys], dim=-1), state

    def pitch_logits(self, context: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Teacher-forced conditionals: contexts (N, P, H + F), target frames (N, P) -> logits
        (N, P) of P(key n | keys < n of the target, past frames)."""
        below = F.pad(target[:, :-1], (1, 0)).unsqueeze(-1)  # key n-1, 0 below the lowest
        out, _ = self.note_rnn(torch.cat([context, below], dim=-1))
        return self.head(self.drop(out))[..., 0]

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
        """Frames from contexts (N, P, H + F), key by key: sampled with a generator, else the
        greedy choice (p > 0.5) at each key given the choices below it."""
        return walk_keys(
            self.note_rnn,
            self.head,
            lambda p, below: torch.cat([context[:, p : p + 1], below], dim=-1),
            len(context),
            self.pitches,
            generator,
            temperature,
        )


def build(net: RollBiaxialNet, info: dict) -> RollBiaxial:
    return RollBiaxial(net)
