"""Seed 004's MidiGAN: a dense GAN over single notes, each (pitch, step, duration) scaled to
[-1, 1].

Generator: noise 100 -> 128 -> 256 -> 512, each with batch norm and LeakyReLU, -> 3 outputs
with tanh. Discriminator: 3 -> 512 -> 256 -> 128 with dropout 0.3 -> sigmoid. Both trained
with binary cross-entropy and Adam at 1e-4 (seed 004). A piece is a run of generated notes
joined in order. Step and duration are scaled from [0, `max_seconds`] (longer ones clipped).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cadenza.config import GenerateParams, ModelParams, TrainParams, _check
from cadenza.models.gan import adversarial_losses, alternating_step
from cadenza.models.note_rnn import notes_from_features
from cadenza.representations.tokens import Notes

KIND = "notes"
EARLY_STOP = False  # adversarial losses do not measure quality: keep the last epoch


@dataclass(frozen=True)
class Net:
    noise: int = 100
    max_seconds: float = 4.0
    lr: float = 1e-4

    def __post_init__(self) -> None:
        _check(self.noise >= 1, "noise", "must be >= 1")
        _check(self.max_seconds > 0, "max_seconds", "must be > 0")
        _check(self.lr > 0, "lr", "must be > 0")


class NoteGAN(nn.Module):
    def __init__(self, net: Net) -> None:
        super().__init__()
        self.net = net
        layers, width = [], net.noise
        for size in (128, 256, 512):
            layers += [nn.Linear(width, size), nn.BatchNorm1d(size), nn.LeakyReLU(0.2)]
            width = size
        self.generator = nn.Sequential(*layers, nn.Linear(width, 3), nn.Tanh())
        self.discriminator = nn.Sequential(
            nn.Linear(3, 512), nn.LeakyReLU(0.2), nn.Dropout(0.3),
            nn.Linear(512, 256), nn.LeakyReLU(0.2), nn.Dropout(0.3),
            nn.Linear(256, 128), nn.LeakyReLU(0.2), nn.Dropout(0.3),
            nn.Linear(128, 1))  # logits: the sigmoid is inside the BCE

    def scale(self, notes: torch.Tensor) -> torch.Tensor:
        """(pitch, step_s, duration_s) -> [-1, 1]^3."""
        top = torch.tensor([127.0, self.net.max_seconds, self.net.max_seconds],
                           device=notes.device)
        return torch.minimum(notes, top) / top * 2 - 1

    def unscale(self, x: torch.Tensor) -> torch.Tensor:
        top = torch.tensor([127.0, self.net.max_seconds, self.net.max_seconds])
        return (x.cpu() + 1) / 2 * top


def build(net: Net, info: dict) -> NoteGAN:
    return NoteGAN(net)


def make_optimizers(model: NoteGAN, train: TrainParams) -> list[torch.optim.Optimizer]:
    return [torch.optim.Adam(model.generator.parameters(), lr=model.net.lr),
            torch.optim.Adam(model.discriminator.parameters(), lr=model.net.lr)]


def _losses(model: NoteGAN, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    real = model.scale(x.reshape(-1, 3))
    fake = model.generator(torch.randn(len(real), model.net.noise, device=real.device))
    return adversarial_losses(model.discriminator, real, fake)


def train_step(model: NoteGAN, x: torch.Tensor, y: torch.Tensor,
               optimizers: list[torch.optim.Optimizer]) -> float:
    """One discriminator update, then one generator update; returns the generator loss."""
    return alternating_step(_losses, model, x, optimizers)


def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss on real and generated notes (logged; not a quality score)."""
    return _losses(model, x)[0]


@torch.no_grad()
def sample(model: nn.Module, mp: ModelParams, info: dict, prompt: np.ndarray,
           gen: GenerateParams, generator: torch.Generator) -> Notes:
    model.eval()
    noise = torch.randn(gen.length, model.net.noise, generator=generator) * gen.temperature
    device = next(model.parameters()).device
    features = model.unscale(model.generator(noise.to(device)).float()).numpy()
    return notes_from_features(features.astype(np.float64))
