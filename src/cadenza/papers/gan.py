"""Paper 004's ImageGAN figures: the discriminator's and the generator's loss, and the
discriminator's accuracy on real and on generated images.

The paper reports them as the Keras GAN tutorials it follows print them at the end of
training: the discriminator evaluated on a set of real images (label 1) and as many
generated ones (label 0). So here: the final weights, in inference mode (no dropout, batch
norm on its running statistics), every real image of a split against the same number of
fakes. The discriminator's loss is the mean binary cross-entropy over all 2N images (ln 2 =
0.693 when it cannot tell them apart, as in the paper's 0.691 after 40 epochs); the
generator's is the cross-entropy of the fakes judged real. A likelihood means nothing for a
GAN, so this replaces it in the run's JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F

from cadenza.batches import pick_device, windows
from cadenza.checkpoint import load_checkpoint
from cadenza.data import cap_units, load_units, to_stream
from cadenza.models.roll_gan import RollGAN

BATCH = 64  # images per discriminator pass


def gan_scores(
    ckpt: Path, prepared: Path, seed: int, max_units: int = 0, split: str = "train"
) -> dict[str, float]:
    """Paper 004's figures (`discriminator_scores`) of a trained `roll_gan` on one split (at
    most `max_units` frames; 0 = all), cut into the images the trainer fed it."""
    device = pick_device()
    model, mp, payload = load_checkpoint(ckpt, device)
    if mp.family != "roll_gan":
        raise ValueError(f"gan_scores scores paper 004's ImageGAN (roll_gan), not {mp.family}")
    units = cap_units(load_units(prepared, split, mp, seed), max_units, mp.train.seq_len + 1)
    stream = to_stream(units, payload["info"])
    noise = torch.Generator().manual_seed(seed)
    return discriminator_scores(cast(RollGAN, model), stream, mp.train.seq_len, noise)


@torch.no_grad()
def discriminator_scores(
    model: RollGAN, stream: torch.Tensor, width: int, noise: torch.Generator
) -> dict[str, float]:
    """`d_loss`, `g_loss`, `real_accuracy` (real images judged real), `fake_accuracy` (fakes
    judged fake) and `n_images`: every `width`-frame image of the (T, 128) frame stream
    against as many fakes drawn with `noise`, in inference mode."""
    model.eval()
    device = next(model.parameters()).device
    sums = {"real_bce": 0.0, "fake_bce": 0.0, "g_bce": 0.0, "real_ok": 0.0, "fake_ok": 0.0}
    n = 0
    for x, _ in windows(stream, width, BATCH):
        real = model.discriminator(model.images(x.to(device))).flatten()
        fake = model.discriminator(model.fake(len(x), device, noise)).flatten()
        sums["real_bce"] += _bce(real, 1.0)
        sums["fake_bce"] += _bce(fake, 0.0)
        sums["g_bce"] += _bce(fake, 1.0)
        sums["real_ok"] += float((real > 0).sum())
        sums["fake_ok"] += float((fake < 0).sum())
        n += len(x)
    if n == 0:  # a split with no piece (a tiny corpus): nothing to report
        return {"n_images": 0}
    return {
        "d_loss": (sums["real_bce"] + sums["fake_bce"]) / (2 * n),
        "g_loss": sums["g_bce"] / n,
        "real_accuracy": sums["real_ok"] / n,
        "fake_accuracy": sums["fake_ok"] / n,
        "n_images": n,
    }


def _bce(logits: torch.Tensor, label: float) -> float:
    """Summed binary cross-entropy of `logits` against one label."""
    target = torch.full_like(logits, label)
    return float(F.binary_cross_entropy_with_logits(logits, target, reduction="sum"))
