"""Paper 000's proposed next step: an LSTM over the frame VAE's latent sequence.

The seed would train the VAE first, encode the corpus, and train an RNN on the latent
sequences. Here both parts train together in one model with the shared trainer: the loss is
the VAE's (BCE + KL per frame) plus the LSTM's mean squared error in predicting the next
frame's latent mean, with the targets detached so that the LSTM follows the VAE's latent
space rather than bending it. Sampling encodes the prompt, runs the LSTM forward in latent
space, and decodes each predicted latent to a frame.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cadenza.config import GenerateParams, ModelParams
from cadenza.models.frame_vae import FrameVAE
from cadenza.models.specs import FrameVAENet, LatentLSTMNet
from cadenza.representations.rolls import roll_to_notes
from cadenza.representations.tokens import Notes


class LatentLSTM(nn.Module):
    def __init__(self, net: LatentLSTMNet) -> None:
        super().__init__()
        self.vae = FrameVAE(FrameVAENet(net.steps_per_beat, net.vae_hidden, net.latent, net.beta))
        self.rnn = nn.LSTM(net.latent, net.hidden, batch_first=True)
        self.head = nn.Linear(net.hidden, net.latent)

    def forward(self, latents: torch.Tensor, state=None) -> tuple[torch.Tensor, object]:
        """latents (B, T, latent) -> the predicted next latents, state."""
        hidden, state = self.rnn(latents, state)
        return self.head(hidden), state


def build(net: LatentLSTMNet, info: dict) -> LatentLSTM:
    return LatentLSTM(net)


def loss(model: LatentLSTM, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.float()
    mu, _ = model.vae.encode(x)
    predicted, _ = model(mu[:, :-1])
    return model.vae.elbo_loss(x) + F.mse_loss(predicted, mu[:, 1:].detach())


@torch.no_grad()
def sample(
    model: LatentLSTM,
    mp: ModelParams,
    info: dict,
    prompt: np.ndarray,
    gen: GenerateParams,
    generator: torch.Generator,
) -> Notes:
    model.eval()
    device = next(model.parameters()).device
    frames = torch.as_tensor(prompt if len(prompt) else np.zeros((1, 128), np.uint8))
    mu, _ = model.vae.encode(frames[None].to(device).float())
    latent, state = model(mu)
    latents = []
    for _ in range(gen.length):
        z = latent[:, -1:]
        latents.append(z[0, 0])
        latent, state = model(z, state)
    p = torch.sigmoid(model.vae.decoder(torch.stack(latents)).float()).cpu()
    roll = (torch.rand(p.shape, generator=generator) < p).numpy()
    return roll_to_notes(roll, mp.net.steps_per_beat)
