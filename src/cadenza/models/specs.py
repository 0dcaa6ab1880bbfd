"""What each model family is, as plain data: its input kind, its hyper-parameters (`Net`)
and its abilities, without importing the family's code (or torch).

Why apart from the model files: `cadenza.config` validates a model's `net` against its
family's `Net` and checks its `kind`, and every stage loads the params, `fetch` and `report`
included; those must not pay for torch. The family's code is loaded only where a model is
built (`cadenza.models.load_family`). A test checks that each spec's ability flags match what
its module defines (`tests/test_config.py`).

A `Net` holds the paper's values as defaults and checks only lower bounds; the upper bounds
that keep a typo from allocating terabytes live in `cadenza.config` (`NET_INT_MAX`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cadenza.validation import check

Kind = Literal["tokens", "frames", "notes"]


@dataclass(frozen=True)
class FamilySpec:
    """One model family. `kind` is what `cadenza.data` feeds it (token ids, binary piano-roll
    frames, or (pitch, step, duration) notes); `net` its hyper-parameter dataclass. Its code
    is the module `cadenza.models.<name>` (`module`), which implements
    `cadenza.models.Family`. The flags name its optional abilities:

    * `adversarial`: brings its own optimizers and update (`make_optimizers`, `train_step`);
      its losses do not measure quality, so the trainer keeps the last epoch (no early stop)
      and applies no plateau schedule;
    * `pitch_autoregressive`: `model(x, y)` gives each pitch's logit given the pitches below
      it in the target frame (teacher forcing), and `model.decode` the greedy frame: the
      polyphonic benchmark scores it so;
    * `scores_frames`: `frame_probs` gives per-pitch probabilities of every next frame, for
      the frame NLL of `evaluate`;
    * `makes_info`: `make_info` adds what the model keeps from the training split (beyond the
      token vocabulary) to its checkpoint;
    * `embeds_pitches`: the model's `pitch_embedding` (a linear map of a multi-hot frame) is a
      per-pitch embedding worth a map (`cadenza.embeddings`; token families map their token
      embedding whatever this says).
    """

    name: str
    kind: Kind
    net: type
    adversarial: bool = False
    pitch_autoregressive: bool = False
    scores_frames: bool = False
    makes_info: bool = False
    embeds_pitches: bool = False

    @property
    def module(self) -> str:
        return f"cadenza.models.{self.name}"


# --------------------------------------------------------------------------- nets


@dataclass(frozen=True)
class TokenLMNet:
    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    layers: int = 2
    embedding: int = 128
    hidden: int = 128
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("layers", "embedding", "hidden"):
            check(getattr(self, name) >= 1, name, "must be >= 1")
        check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")


@dataclass(frozen=True)
class TransformerNet:
    layers: int = 4
    heads: int = 4
    d_model: int = 128
    ff: int = 512
    dropout: float = 0.1
    max_len: int = 512  # the context window when sampling

    def __post_init__(self) -> None:
        for name in ("layers", "heads", "d_model", "ff", "max_len"):
            check(getattr(self, name) >= 1, name, "must be >= 1")
        check(
            self.d_model % (2 * self.heads) == 0,
            "d_model",
            "must be a multiple of 2 x heads (rotary embeddings rotate pairs)",
        )
        check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")


@dataclass(frozen=True)
class UnigramNet:
    smoothing: float = 0.5  # add-k smoothing, so that no token has probability 0

    def __post_init__(self) -> None:
        check(self.smoothing > 0, "smoothing", "must be > 0")


@dataclass(frozen=True)
class RollLSTMNet:
    steps_per_beat: int = 4  # the frame grid: 16th notes
    pitches: int = 128  # frame width: 128 MIDI pitches, or the benchmark's 88 keys
    embedding: int = 128
    hidden: int = 256
    layers: int = 1
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("steps_per_beat", "pitches", "embedding", "hidden", "layers"):
            check(getattr(self, name) >= 1, name, "must be >= 1")
        check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")


@dataclass(frozen=True)
class RollNADENet:
    steps_per_beat: int = 4
    pitches: int = 128
    embedding: int = 128
    hidden: int = 256  # the time LSTM
    pitch_hidden: int = 64  # the LSTM across the pitches of a frame
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("steps_per_beat", "pitches", "embedding", "hidden", "pitch_hidden"):
            check(getattr(self, name) >= 1, name, "must be >= 1")
        check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")


@dataclass(frozen=True)
class RollMADENet:
    steps_per_beat: int = 4
    pitches: int = 128
    embedding: int = 128
    hidden: int = 256  # the time LSTM
    made_hidden: int = 512  # units per MADE layer
    made_layers: int = 2
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("steps_per_beat", "embedding", "hidden", "made_hidden", "made_layers"):
            check(getattr(self, name) >= 1, name, "must be >= 1")
        check(self.pitches >= 2, "pitches", "must be >= 2")
        check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")


@dataclass(frozen=True)
class RollBiaxialNet:
    steps_per_beat: int = 4
    pitches: int = 128
    lowest: int = 0  # MIDI pitch of column 0: 0 for the pipeline's rolls, 21 for 88 keys
    hidden: int = 128  # each time-axis LSTM layer, one copy per key, weights tied
    layers: int = 2
    note_hidden: int = 64  # each note-axis LSTM layer, across the keys of a frame
    note_layers: int = 2
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("steps_per_beat", "pitches", "hidden", "layers", "note_hidden", "note_layers"):
            check(getattr(self, name) >= 1, name, "must be >= 1")
        check(self.pitches <= 128, "pitches", "must be <= 128 (MIDI pitches 0..127)")
        check(
            0 <= self.lowest <= 128 - self.pitches,
            "lowest",
            f"must be in [0, {128 - self.pitches}]: the keys are MIDI pitches 0..127",
        )
        check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")


@dataclass(frozen=True)
class FrameVAENet:
    steps_per_beat: int = 4
    hidden: int = 256
    latent: int = 16
    beta: float = 1.0  # weight of the KL term

    def __post_init__(self) -> None:
        for name in ("steps_per_beat", "hidden", "latent"):
            check(getattr(self, name) >= 1, name, "must be >= 1")
        check(self.beta >= 0, "beta", "must be >= 0")


@dataclass(frozen=True)
class LatentLSTMNet:
    steps_per_beat: int = 4
    vae_hidden: int = 256
    latent: int = 16
    hidden: int = 128  # the LSTM over latents
    beta: float = 1.0

    def __post_init__(self) -> None:
        for name in ("steps_per_beat", "vae_hidden", "latent", "hidden"):
            check(getattr(self, name) >= 1, name, "must be >= 1")
        check(self.beta >= 0, "beta", "must be >= 0")


@dataclass(frozen=True)
class NoteRNNNet:
    hidden: int = 128
    pitch_weight: float = 0.05
    step_weight: float = 1.0
    duration_weight: float = 1.0
    temperature: float = 2.0  # the tutorial's sampling temperature for pitch

    def __post_init__(self) -> None:
        check(self.hidden >= 1, "hidden", "must be >= 1")
        for name in ("pitch_weight", "step_weight", "duration_weight"):
            check(getattr(self, name) >= 0, name, "must be >= 0")
        check(self.temperature > 0, "temperature", "must be > 0")


@dataclass(frozen=True)
class NoteGANNet:
    noise: int = 100
    max_seconds: float = 4.0  # minmax only: the top of the step and duration range
    lr: float = 1e-4
    scaling: Literal["zscore", "minmax"] = "zscore"  # paper 004: zero mean, unit std

    def __post_init__(self) -> None:
        check(self.noise >= 1, "noise", "must be >= 1")
        check(self.max_seconds > 0, "max_seconds", "must be > 0")
        check(self.lr > 0, "lr", "must be > 0")


ROLL_GAN_MAX_DENSE = 6  # dense layers in roll_gan's generator


@dataclass(frozen=True)
class RollGANNet:
    steps_per_beat: int = 4
    latent: int = 10
    lr: float = 2e-4
    beta1: float = 0.5
    generator_layers: int = 4  # dense layers before the convolutions (paper 004: 4; was 2)
    seed_dropout: bool = True  # dropout after the transposed conv and the critic's batch norm
    decode: Literal["threshold", "sample"] = "threshold"  # img2midi: on where p > 0.5

    def __post_init__(self) -> None:
        check(self.steps_per_beat >= 1, "steps_per_beat", "must be >= 1")
        check(self.latent >= 1, "latent", "must be >= 1")
        check(self.lr > 0, "lr", "must be > 0")
        check(0 <= self.beta1 < 1, "beta1", "must be in [0, 1)")
        check(
            1 <= self.generator_layers <= ROLL_GAN_MAX_DENSE,
            "generator_layers",
            f"must be in [1, {ROLL_GAN_MAX_DENSE}] (paper 004: 4)",
        )


# --------------------------------------------------------------------------- the table


SPECS: dict[str, FamilySpec] = {
    spec.name: spec
    for spec in (
        FamilySpec("token_lm", "tokens", TokenLMNet),
        FamilySpec("transformer", "tokens", TransformerNet),
        FamilySpec("unigram", "tokens", UnigramNet),
        FamilySpec("roll_lstm", "frames", RollLSTMNet, scores_frames=True, embeds_pitches=True),
        FamilySpec("roll_nade", "frames", RollNADENet, pitch_autoregressive=True),
        FamilySpec("roll_made", "frames", RollMADENet, pitch_autoregressive=True),
        FamilySpec("roll_biaxial", "frames", RollBiaxialNet, pitch_autoregressive=True),
        FamilySpec("frame_vae", "frames", FrameVAENet),
        FamilySpec("latent_lstm", "frames", LatentLSTMNet),
        FamilySpec("note_rnn", "notes", NoteRNNNet),
        FamilySpec("note_gan", "notes", NoteGANNet, adversarial=True, makes_info=True),
        FamilySpec("roll_gan", "frames", RollGANNet, adversarial=True),
    )
}
"""Family name (`family:` in params.yaml) -> its spec."""
