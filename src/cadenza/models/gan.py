"""What the two GANs of paper 004 share: the standard (non-saturating) BCE losses and the
alternating update, one discriminator step then one generator step (Goodfellow et al. 2014)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

M = TypeVar("M", bound=nn.Module)


def adversarial_losses(
    discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(discriminator loss on real vs detached fake, generator loss: fake judged real)."""
    d_real, d_fake = discriminator(real), discriminator(fake.detach())
    d_loss = F.binary_cross_entropy_with_logits(
        d_real, torch.ones_like(d_real)
    ) + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
    g_score = discriminator(fake)
    return d_loss, F.binary_cross_entropy_with_logits(g_score, torch.ones_like(g_score))


def alternating_step(
    losses: Callable[[M, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    model: M,
    x: torch.Tensor,
    optimizers: list[torch.optim.Optimizer],
) -> float:
    """One discriminator update, then one generator update; returns the generator loss."""
    g_opt, d_opt = optimizers
    if len(x) == 1:  # batch norm needs two samples: a lone last window goes in twice
        x = torch.cat([x, x])
    d_loss, _ = losses(model, x)
    d_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    d_opt.step()
    _, g_loss = losses(model, x)
    g_opt.zero_grad(set_to_none=True)
    g_loss.backward()
    g_opt.step()
    return g_loss.item()
