"""Paper 004's ImageGAN: a DCGAN over piano-roll images of 106 pitches x 100 steps.

Generator (paper 004, section 4.3.2): a 10-d latent -> a dense layer with LeakyReLU 0.2 and
dropout 0.2 -> "another 3 Dense layers" -> a transposed convolution up to 106 x 100 -> a
plain convolution -> sigmoid, with LeakyReLU and dropout between the layers. The seed names
no widths (its figure is not in the text): ours double from 128 (128, 256, 512), then project
to 8 x 53 x 25. Discriminator: two blocks of Conv2D(16), dropout 0.2, LeakyReLU 0.2, dropout
0.2, then flatten, batch norm, dropout and one logit. Adam 2e-4 with beta1 0.5 (paper 004).
The 106 pitches are MIDI 21-126 and a column is a 16th note, as in the midi2img module the
seed used. The images are the windows the trainer cuts from the roll stream, so set
`train.seq_len` to the image width (100). A generated image becomes notes as img2midi reads
one: a cell is on where the generator says > 0.5 (`decode: threshold`).

The first implementation is still selectable: `generator_layers: 2` (dense 128, then the
projection), `seed_dropout: false` (no dropout after the transposed convolution nor before
the discriminator's output) and `decode: sample` (each cell drawn from its sigmoid).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from torch import nn

from cadenza.config import GenerateParams, ModelParams, TrainParams
from cadenza.models.gan import alternating_step, discriminator_loss
from cadenza.models.specs import RollGANNet
from cadenza.representations.rolls import roll_to_notes
from cadenza.representations.tokens import Notes

LOW, PITCHES, WIDTH = 21, 106, 100
PROJECTION = 8 * 53 * 25  # the last dense layer's output: 8 maps of 53 x 25


def dense_widths(layers: int) -> list[int]:
    """Units of the generator's dense layers before the projection to 8 x 53 x 25: 128,
    doubling (the seed gives none); the last of `layers` dense layers is the projection."""
    return [128 * 2**i for i in range(layers - 1)]


class RollGAN(nn.Module):
    def __init__(self, net: RollGANNet) -> None:
        super().__init__()
        self.net = net
        dense, width = [], net.latent
        for size in [*dense_widths(net.generator_layers), PROJECTION]:
            dense += [nn.Linear(width, size), nn.LeakyReLU(0.2), nn.Dropout(0.2)]
            width = size
        upsample = [
            nn.ConvTranspose2d(8, 16, kernel_size=(4, 4), stride=(2, 4), padding=(1, 0)),
            nn.LeakyReLU(0.2),
        ]
        if net.seed_dropout:
            upsample.append(nn.Dropout(0.2))
        self.generator = nn.Sequential(
            *dense,
            nn.Unflatten(1, (8, 53, 25)),
            *upsample,
            nn.Conv2d(16, 1, kernel_size=3, padding=1),
        )  # logits of (1, 106, 100)
        blocks = []
        for channels_in in (1, 16):
            blocks += [
                nn.Conv2d(channels_in, 16, kernel_size=3, stride=2, padding=1),
                nn.Dropout(0.2),
                nn.LeakyReLU(0.2),
                nn.Dropout(0.2),
            ]
        head = [nn.Dropout(0.2)] if net.seed_dropout else []
        self.discriminator = nn.Sequential(
            *blocks, nn.Flatten(), nn.BatchNorm1d(16 * 27 * 25), *head, nn.Linear(16 * 27 * 25, 1)
        )

    def images(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 100, 128) frames -> (B, 1, 106, 100) images."""
        return frames[..., LOW : LOW + PITCHES].transpose(1, 2)[:, None].float()

    def fake(self, n: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(n, self.net.latent, generator=generator).to(device)
        return torch.sigmoid(self.generator(z))


def build(net: RollGANNet, info: dict) -> RollGAN:
    return RollGAN(net)


def make_optimizers(model: RollGAN, train: TrainParams) -> list[torch.optim.Optimizer]:
    betas = (model.net.beta1, 0.999)
    return [
        torch.optim.Adam(model.generator.parameters(), lr=model.net.lr, betas=betas),
        torch.optim.Adam(model.discriminator.parameters(), lr=model.net.lr, betas=betas),
    ]


def train_step(
    model: RollGAN, x: torch.Tensor, y: torch.Tensor, optimizers: list[torch.optim.Optimizer]
) -> float:
    """One discriminator update, then one generator update; returns the generator loss."""
    if x.shape[1] != WIDTH:
        raise ValueError(f"roll_gan needs windows of {WIDTH} frames: set train.seq_len: {WIDTH}")
    real = model.images(x)
    return alternating_step(
        model.discriminator, real, partial(model.fake, device=real.device), optimizers
    )


def loss(model: RollGAN, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss on real and generated images (logged; not a quality score)."""
    real = model.images(x)
    return discriminator_loss(model.discriminator, real, model.fake(len(real), real.device))


@torch.no_grad()
def sample(
    model: RollGAN,
    mp: ModelParams,
    info: dict,
    prompt: np.ndarray,
    gen: GenerateParams,
    generator: torch.Generator,
) -> Notes:
    """Enough images for `gen.length` frames, side by side; a cell is on where its sigmoid
    passes 0.5 (`decode: threshold`, img2midi's reading) or with that probability
    (`decode: sample`)."""
    model.eval()
    device = next(model.parameters()).device
    n_images = -(-gen.length // WIDTH)
    p = model.fake(n_images, device, generator).cpu()[:, 0]  # (N, 106, 100)
    p = p.transpose(1, 2).reshape(-1, PITCHES)[: gen.length]
    roll = np.zeros((len(p), 128), dtype=bool)
    sample_cells = mp.net.decode == "sample"
    level = torch.rand(p.shape, generator=generator) if sample_cells else 0.5
    roll[:, LOW : LOW + PITCHES] = (p > level).numpy()
    return roll_to_notes(roll, mp.net.steps_per_beat)
