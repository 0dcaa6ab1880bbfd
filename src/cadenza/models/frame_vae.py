"""Frame VAE of paper 000: a variational autoencoder over binarized piano-roll frames.

Encoder and decoder have one hidden layer each (paper 000); the loss is binary cross-entropy
of the reconstruction plus the KL divergence of the posterior from N(0, I), the variant the
seed found least noisy. Frames are independent: a piece is sampled by drawing one latent per
frame from the prior and joining the decoded frames, so there is no temporal structure by
design (`latent_lstm` adds it).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cadenza.config import GenerateParams, ModelParams
from cadenza.models.specs import FrameVAENet
from cadenza.representations.rolls import roll_to_notes
from cadenza.representations.tokens import Notes


class FrameVAE(nn.Module):
    def __init__(self, net: FrameVAENet) -> None:
        super().__init__()
        self.beta, self.latent = net.beta, net.latent
        self.encoder = nn.Sequential(
            nn.Linear(128, net.hidden), nn.ReLU(), nn.Linear(net.hidden, 2 * net.latent)
        )
        self.decoder = nn.Sequential(
            nn.Linear(net.latent, net.hidden), nn.ReLU(), nn.Linear(net.hidden, 128)
        )

    def encode(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.encoder(frames).chunk(2, dim=-1)
        return mu, log_var

    def elbo_loss(self, frames: torch.Tensor) -> torch.Tensor:
        """BCE (summed over pitches) + beta * KL, per frame, averaged."""
        mu, log_var = self.encode(frames)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        bce = F.binary_cross_entropy_with_logits(self.decoder(z), frames, reduction="none")
        kl = -0.5 * (1 + log_var - mu.pow(2) - log_var.exp())
        return (bce.sum(-1) + self.beta * kl.sum(-1)).mean()


def build(net: FrameVAENet, info: dict) -> FrameVAE:
    return FrameVAE(net)


def loss(model: FrameVAE, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return model.elbo_loss(x.float())


@torch.no_grad()
def sample(
    model: FrameVAE,
    mp: ModelParams,
    info: dict,
    prompt: np.ndarray,
    gen: GenerateParams,
    generator: torch.Generator,
) -> Notes:
    """One prior draw per frame, decoded and sampled per pitch; the prompt is not used."""
    model.eval()
    z = torch.randn(gen.length, model.latent, generator=generator) * gen.temperature
    device = next(model.parameters()).device
    p = torch.sigmoid(model.decoder(z.to(device)).float()).cpu()
    roll = (torch.rand(p.shape, generator=generator) < p).numpy()
    return roll_to_notes(roll, mp.net.steps_per_beat)
