"""Model families: the `family` named in params.yaml -> its spec and its code.

Every family is one module with the same plain interface (`Family`), so one trainer, one
generator and one evaluator serve them all. What a family is (its input kind, its `Net`
hyper-parameters, its optional abilities) is declared as data in `cadenza.models.specs`
(`SPECS`), which imports no torch: the params can be validated by every stage, and the
callers ask the spec, not the module, what a family can do. The code itself is imported only
by `load_family`, where a model is built, trained, sampled or scored.

Optional abilities, each declared by a `FamilySpec` flag and typed by a protocol here:
`Adversarial` (`adversarial`), `FrameScorer` (`scores_frames`), `InfoMaker` (`makes_info`);
`PitchAutoregressiveModel` types the model of a `pitch_autoregressive` family.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from cadenza.models.specs import SPECS

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from cadenza.config import GenerateParams, ModelParams, TrainParams
    from cadenza.representations.tokens import Notes

__all__ = [
    "SPECS",
    "Adversarial",
    "Family",
    "FrameScorer",
    "InfoMaker",
    "PitchAutoregressiveModel",
    "load_family",
]


@runtime_checkable
class Family(Protocol):
    """What every family module defines. `net` is the family's own `Net` (its spec's), and
    `model` the module that `build` returned; `info` is what the model keeps from the
    training split (`cadenza.data.make_info`: the vocabulary, a GAN's scaling statistics)."""

    def build(self, net: Any, info: dict, /) -> nn.Module:
        """A fresh model for hyper-parameters `net`."""
        ...

    def loss(self, model: Any, x: torch.Tensor, y: torch.Tensor, /) -> torch.Tensor:
        """The mean loss of a batch of windows, `y` = `x` shifted by one unit."""
        ...

    def sample(
        self,
        model: Any,
        mp: ModelParams,
        info: dict,
        prompt: Any,
        gen: GenerateParams,
        generator: torch.Generator,
        /,
    ) -> Notes:
        """Continue `prompt` (units of the family's kind from a test piece) into notes."""
        ...


@runtime_checkable
class Adversarial(Family, Protocol):
    """A family that updates two networks its own way (`FamilySpec.adversarial`)."""

    def make_optimizers(self, model: Any, train: TrainParams, /) -> list[torch.optim.Optimizer]:
        """One optimizer per network; the first one's learning rate is logged."""
        ...

    def train_step(
        self, model: Any, x: torch.Tensor, y: torch.Tensor, optimizers: list, /
    ) -> float:
        """One update of every network on a batch; returns the loss to log."""
        ...


@runtime_checkable
class FrameScorer(Family, Protocol):
    """A piano-roll family with a per-pitch probability (`FamilySpec.scores_frames`)."""

    def frame_probs(self, model: Any, frames: torch.Tensor, seq_len: int, /) -> np.ndarray:
        """P(pitch on) for every next frame of a stream, teacher-forced."""
        ...


@runtime_checkable
class InfoMaker(Family, Protocol):
    """A family that keeps more than the vocabulary from its training split
    (`FamilySpec.makes_info`)."""

    def make_info(self, train_units: dict[str, Any], mp: ModelParams, /) -> dict:
        """Plain data saved in the checkpoint and passed to `build`."""
        ...


class PitchAutoregressiveModel(Protocol):
    """The model a `pitch_autoregressive` family builds (`FamilySpec.pitch_autoregressive`)."""

    def __call__(self, frames: torch.Tensor, targets: torch.Tensor, /) -> torch.Tensor:
        """Logits of each pitch of the target frames given the pitches below, teacher-forced."""
        ...

    def time_context(self, frames: torch.Tensor, /) -> tuple[torch.Tensor, Any]:
        """The context of each next frame (B, T, H), and the recurrent state."""
        ...

    def pitch_logits(self, context: torch.Tensor, target: torch.Tensor, /) -> torch.Tensor:
        """Logits (N, P) of each pitch of the N target frames given the pitches below it,
        from those frames' contexts (N, H): teacher-forced, as `__call__`."""
        ...

    def decode(self, context: torch.Tensor, /) -> torch.Tensor:
        """The greedy frame for each context, pitch by pitch."""
        ...


def load_family(name: str) -> Family:
    """The code of family `name`; imports torch (and the family's module) on first use."""
    return cast(Family, importlib.import_module(SPECS[name].module))
