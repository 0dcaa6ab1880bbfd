"""What the two GANs of paper 004 share: the standard (non-saturating) BCE losses and the
alternating update, one discriminator step then one generator step (Goodfellow et al. 2014).

Each step runs the discriminator only on what its loss needs: real and fake images for its
own update, fakes alone for the generator's. That is three passes a step. Computing both
losses in both updates took six, and each unused pass in training mode still moved the batch
norm's running statistics, which scoring in inference mode reads."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def discriminator_loss(
    discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    """Real judged real plus fake judged fake (`fake` as given: detach it to spare the
    generator)."""
    d_real, d_fake = discriminator(real), discriminator(fake)
    return F.binary_cross_entropy_with_logits(
        d_real, torch.ones_like(d_real)
    ) + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))


def generator_loss(discriminator: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss: fakes judged real."""
    score = discriminator(fake)
    return F.binary_cross_entropy_with_logits(score, torch.ones_like(score))


def alternating_step(
    discriminator: nn.Module,
    real: torch.Tensor,
    make_fake: Callable[[int], torch.Tensor],
    optimizers: list[torch.optim.Optimizer],
) -> float:
    """One discriminator update on `real` and as many fresh fakes, then one generator update
    on another batch of fakes; returns the generator loss. `make_fake(n)` draws n fakes."""
    g_opt, d_opt = optimizers
    if len(real) == 1:  # batch norm needs two samples: a lone last window goes in twice
        real = torch.cat([real, real])
    with torch.no_grad():  # the discriminator's update needs no generator gradients
        fake = make_fake(len(real))
    d_loss = discriminator_loss(discriminator, real, fake)
    d_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    d_opt.step()
    g_loss = generator_loss(discriminator, make_fake(len(real)))
    g_opt.zero_grad(set_to_none=True)
    g_loss.backward()
    g_opt.step()
    return g_loss.item()
