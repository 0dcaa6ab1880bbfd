"""Paper 004's MidiGAN: a dense GAN over single notes, each (pitch, step, duration) z-scored.

Generator: noise 100 -> 128 -> 256 -> 512, each with batch norm and LeakyReLU, -> 3 outputs
with tanh. Discriminator: 3 -> 512 -> 256 -> 128 with dropout 0.3 -> sigmoid. Both trained
with binary cross-entropy and Adam at 1e-4 (paper 004, sections 4.2.2-4.2.3). A piece is a run
of generated notes joined in order.

Scaling (`scaling`): paper 004 (section 4.2.1) normalises the notes "to have a zero mean and a
unit standard deviation" (`zscore`, the default): each feature minus its training-set mean,
over its training-set standard deviation (population, ddof 0; a constant feature keeps
std 1). The statistics come from the training split through `make_info` (a model built
without them takes them from its first training batch, see `train_step`) and live in the
model's buffers, so the checkpoint carries them and generation un-scales with exactly the
numbers training scaled with. As in the seed, the generator's tanh cannot leave [-1, 1], so
it only reaches one standard deviation either side of the mean; un-scaled steps below 0 are
clipped to 0. `minmax` is the first implementation: pitch from [0, 127], step and duration
from [0, `max_seconds`] (longer ones clipped) to [-1, 1].
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from cadenza.config import GenerateParams, ModelParams, TrainParams
from cadenza.models.gan import alternating_step, discriminator_loss
from cadenza.models.note_rnn import notes_from_features
from cadenza.models.specs import NoteGANNet
from cadenza.representations.tokens import Notes

FEATURES = ("pitch", "step", "duration")

log = logging.getLogger(__name__)


def note_statistics(features: np.ndarray) -> dict[str, list[float]]:
    """Per-feature mean and population standard deviation of (N, 3) note features, in
    float64; a feature with no spread gets std 1, so that scaling stays finite."""
    x = np.asarray(features, dtype=np.float64).reshape(-1, len(FEATURES))
    if len(x) == 0:
        raise ValueError("note_gan: no training notes to take the z-score statistics from")
    std = x.std(axis=0)
    return {"mean": x.mean(axis=0).tolist(), "std": np.where(std > 0, std, 1.0).tolist()}


def make_info(train_units: dict[str, np.ndarray], mp: ModelParams) -> dict:
    """What the model keeps from the training split: the z-score statistics of every
    training note (nothing for `minmax`, whose range is fixed)."""
    if mp.net.scaling != "zscore":
        return {}
    parts = [
        np.asarray(u, dtype=np.float64).reshape(-1, len(FEATURES)) for u in train_units.values()
    ]
    return note_statistics(np.concatenate(parts) if parts else np.zeros((0, 3)))


class NoteGAN(nn.Module):
    mean: torch.Tensor  # buffers of the zscore scaling
    std: torch.Tensor
    fitted: torch.Tensor

    def __init__(self, net: NoteGANNet, stats: dict | None = None) -> None:
        super().__init__()
        self.net = net
        layers, width = [], net.noise
        for size in (128, 256, 512):
            layers += [nn.Linear(width, size), nn.BatchNorm1d(size), nn.LeakyReLU(0.2)]
            width = size
        self.generator = nn.Sequential(*layers, nn.Linear(width, 3), nn.Tanh())
        self.discriminator = nn.Sequential(
            nn.Linear(3, 512),
            nn.LeakyReLU(0.2),
            nn.Dropout(0.3),
            nn.Linear(512, 256),
            nn.LeakyReLU(0.2),
            nn.Dropout(0.3),
            nn.Linear(256, 128),
            nn.LeakyReLU(0.2),
            nn.Dropout(0.3),
            nn.Linear(128, 1),
        )  # logits: the sigmoid is inside the BCE
        if net.scaling == "zscore":  # buffers: saved in the checkpoint with the weights
            given = stats is not None and "mean" in stats and "std" in stats
            mean = stats["mean"] if stats is not None and given else [0.0] * 3
            std = stats["std"] if stats is not None and given else [1.0] * 3
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float64))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float64))
            self.register_buffer("fitted", torch.tensor(given))

    def fit(self, notes: torch.Tensor) -> None:
        """Take the z-score statistics from these notes (N, 3)."""
        stats = note_statistics(notes.detach().cpu().double().numpy())
        self.mean.copy_(torch.tensor(stats["mean"], dtype=torch.float64))
        self.std.copy_(torch.tensor(stats["std"], dtype=torch.float64))
        self.fitted.fill_(True)

    def scale(self, notes: torch.Tensor) -> torch.Tensor:
        """(pitch, step_s, duration_s) rows -> the generator's space (float32)."""
        if self.net.scaling == "zscore":
            return ((notes.double() - self.mean) / self.std).float()
        top = torch.tensor([127.0, self.net.max_seconds, self.net.max_seconds], device=notes.device)
        return torch.minimum(notes, top) / top * 2 - 1

    def unscale(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of `scale` (below the minmax clip), on the CPU (float32)."""
        if self.net.scaling == "zscore":
            return (x.double() * self.std + self.mean).float().cpu()
        top = torch.tensor([127.0, self.net.max_seconds, self.net.max_seconds])
        return (x.cpu() + 1) / 2 * top


def build(net: NoteGANNet, info: dict) -> NoteGAN:
    return NoteGAN(net, info)


def make_optimizers(model: NoteGAN, train: TrainParams) -> list[torch.optim.Optimizer]:
    return [
        torch.optim.Adam(model.generator.parameters(), lr=model.net.lr),
        torch.optim.Adam(model.discriminator.parameters(), lr=model.net.lr),
    ]


def _make_fake(model: NoteGAN, device: torch.device) -> Callable[[int], torch.Tensor]:
    return lambda n: model.generator(torch.randn(n, model.net.noise, device=device))


def train_step(
    model: NoteGAN, x: torch.Tensor, y: torch.Tensor, optimizers: list[torch.optim.Optimizer]
) -> float:
    """One discriminator update, then one generator update; returns the generator loss.

    A z-scoring model built without statistics (a caller that did not pass `make_info`'s)
    takes them from its first batch, with a warning: close to, not exactly, the training
    split's."""
    if model.net.scaling == "zscore" and not bool(model.fitted):
        log.warning(
            "note_gan: no z-score statistics in the model's info (the data loader "
            "did not call note_gan.make_info); taking them from the first batch"
        )
        model.fit(x.reshape(-1, 3))
    real = model.scale(x.reshape(-1, 3))
    return alternating_step(model.discriminator, real, _make_fake(model, real.device), optimizers)


def loss(model: NoteGAN, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss on real and generated notes (logged; not a quality score)."""
    real = model.scale(x.reshape(-1, 3))
    return discriminator_loss(model.discriminator, real, _make_fake(model, real.device)(len(real)))


@torch.no_grad()
def sample(
    model: NoteGAN,
    mp: ModelParams,
    info: dict,
    prompt: np.ndarray,
    gen: GenerateParams,
    generator: torch.Generator,
) -> Notes:
    model.eval()
    noise = torch.randn(gen.length, model.net.noise, generator=generator) * gen.temperature
    device = next(model.parameters()).device
    features = model.unscale(model.generator(noise.to(device)).float()).numpy()
    features = features.astype(np.float64)
    features[:, 1:] = np.maximum(features[:, 1:], 0.0)  # no negative step or duration
    return notes_from_features(features)
