"""Cutting a stream into batches of windows, and scoring a model over a stream.

Shared by the trainer (`cadenza.train`: its epochs and valid loss), the evaluator
(`cadenza.evaluate`: the test likelihood) and the benchmarks: kept apart from the training
loop so that scoring a checkpoint needs none of the trainer's state, and every caller cuts
windows the same way (the same windows, in the same order, for the same seed).
"""

from __future__ import annotations

import platform
from collections.abc import Iterator

import torch

from cadenza.config import TrainParams
from cadenza.models import Family
from cadenza.representations.tokens import PAD_ID


def pick_device() -> str:
    """Where models train, sample and score: the GPU when there is one, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_label(device: str) -> str:
    """The hardware a result was measured on, as the benchmark and paper tables print it."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    cpu = platform.processor() or platform.machine()
    return f"CPU ({cpu}, {torch.get_num_threads()} threads)"


def windows(
    stream: torch.Tensor,
    seq_len: int,
    batch_size: int,
    generator: torch.Generator | None = None,
    stride: int = 0,
    last_only: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) batches of windows of the stream, y = x shifted by one step; shuffled when a
    generator is given. Windows start every `stride` steps (0 = `seq_len`: each step is a
    target once; 1 = every window, as Keras' and the TensorFlow tutorial's training sets of
    papers 001 and 004). With `last_only` (token ids), every target but a window's last is
    `<pad>`, which the loss ignores: one target per window, as Keras fits paper 001's
    many-to-one LSTM. Works for any stream whose first axis is time; byte-sized frames
    come out as float."""
    stride = stride or seq_len
    n_windows = n_windows_of(len(stream), seq_len, stride)
    order = (
        torch.randperm(n_windows, generator=generator)
        if generator is not None
        else torch.arange(n_windows)
    )
    as_float = stream.dtype == torch.uint8
    for i in range(0, n_windows, batch_size):
        starts = (order[i : i + batch_size] * stride).tolist()
        x = torch.stack([stream[s : s + seq_len] for s in starts])
        y = torch.stack([stream[s + 1 : s + seq_len + 1] for s in starts])
        if last_only:
            y[:, :-1] = PAD_ID
        yield (x.float(), y.float()) if as_float else (x, y)


def n_windows_of(stream_len: int, seq_len: int, stride: int) -> int:
    """Windows of `seq_len` (+1 for the shifted target) starting every `stride` steps."""
    return max(0, (stream_len - 1 - seq_len) // stride + 1)


def epoch_batches(stream_len: int, cfg: TrainParams) -> int:
    """Batches in one training epoch: every window of the stream once, up to the cap."""
    n_windows = n_windows_of(stream_len, cfg.seq_len, cfg.stride or cfg.seq_len)
    n = -(-n_windows // cfg.batch_size)
    return min(n, cfg.max_batches) if cfg.max_batches else n


def eval_batch_size(cfg: TrainParams, info: dict) -> int:
    """Windows per evaluation batch: without gradients, a bigger batch than training's (up
    to 8x: activations grow with it too, and a GAN's images are large), as long as the
    output (windows x seq_len x vocabulary or 128 pitches, float32) stays under 256 MB."""
    width = max(len(info.get("vocab", ())), 128)
    fits = EVAL_OUTPUT_FLOATS // (cfg.seq_len * width)
    return max(cfg.batch_size, min(8 * cfg.batch_size, fits))


EVAL_OUTPUT_FLOATS = 1 << 26


@torch.inference_mode()
def evaluate_loss(
    family: Family,
    model: torch.nn.Module,
    stream: torch.Tensor,
    cfg: TrainParams,
    device: str,
    info: dict | None = None,
) -> float:
    """Mean loss over the stream's windows, in order (each window starts fresh); with
    `targets: last`, over every window's last target, as training counts them."""
    model.eval()
    total, count = 0.0, 0
    last = cfg.targets == "last"
    batch = eval_batch_size(cfg, info or {})
    stride = 1 if last else 0  # every window's last target, else each target once
    for x, y in windows(stream, cfg.seq_len, batch, stride=stride, last_only=last):
        total += family.loss(model, x.to(device), y.to(device)).item() * len(x)
        count += len(x)
    return total / max(count, 1)


@torch.inference_mode()
def stream_logits(
    model: torch.nn.Module, ids: torch.Tensor, seq_len: int, device: str, rows: int = 1
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Teacher-forced (logits, targets) over a whole token stream, flattened per window.

    The stream is cut into up to `rows` contiguous parts scored side by side as one batch,
    each in windows of `seq_len` that carry the recurrent state (a Transformer has none:
    each window is its own context). Parts are kept at least 16 windows long, so that little
    context is lost at their starts; the tail is padded with id 0 (`<pad>`), which scoring
    ignores.
    """
    model.eval()
    n = len(ids) - 1
    if n < 1:
        return
    rows = max(1, min(rows, n // (16 * seq_len)))
    length = -(-n // rows)
    x = torch.zeros(rows * length, dtype=ids.dtype)
    y = torch.zeros(rows * length, dtype=ids.dtype)
    x[:n], y[:n] = ids[:-1], ids[1:]
    x, y = x.view(rows, length), y.view(rows, length)
    state = None
    for s in range(0, length, seq_len):
        logits, state = model(x[:, s : s + seq_len].to(device), state)
        yield logits.float().reshape(-1, logits.shape[-1]), y[:, s : s + seq_len].reshape(-1)


@torch.inference_mode()
def window_logits(
    model: torch.nn.Module, ids: torch.Tensor, seq_len: int, device: str, batch: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(logits, target) of the last position of every window of `seq_len` ids (stride 1),
    each from a zero state: how a model trained with `train.targets: last` predicts, and the
    targets Keras' accuracy counts (paper 001)."""
    model.eval()
    n = len(ids) - seq_len  # windows that have a target
    offsets = torch.arange(seq_len)
    for first in range(0, max(n, 0), batch):
        starts = torch.arange(first, min(first + batch, n))
        logits, _ = model(ids[starts[:, None] + offsets].to(device))
        yield logits[:, -1].float(), ids[starts + seq_len]
