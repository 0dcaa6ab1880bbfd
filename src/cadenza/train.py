"""One trainer for every model: the loop you would write by hand, written once.

Adam, gradient-norm clipping, learning-rate annealing when the valid loss plateaus, early
stopping, fixed seeds. On a GPU it runs in CUDA with bf16 autocast; otherwise on the CPU.
Each epoch appends a row to a CSV log (for `dvc plots`), and every improvement on the valid
loss rewrites the checkpoint atomically, so a killed run leaves the last good one.
"""

from __future__ import annotations

import csv
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from cadenza.checkpoint import save_checkpoint
from cadenza.config import ModelParams
from cadenza.data import token_sequences
from cadenza.io import atomic_path
from cadenza.models import FAMILIES
from cadenza.representations.tokens import PAD, build_vocab, to_ids

log = logging.getLogger(__name__)

LOG_FIELDS = ["epoch", "step", "train_loss", "valid_loss", "lr", "seconds", "tokens_per_s"]


def pick_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(name: str, params: ModelParams, prepared: Path, ckpt_path: Path, log_csv: Path,
          seed: int) -> dict:
    """Train model `name`; write its best checkpoint and per-epoch log; return a summary."""
    seed_everything(seed)
    device = pick_device()
    cfg = params.train
    train_seqs = token_sequences(prepared, "train", params.tokens, seed)
    valid_seqs = token_sequences(prepared, "valid", params.tokens, seed)
    vocab = build_vocab(train_seqs.values(), params.tokens.min_count)
    train_ids = torch.from_numpy(to_ids(train_seqs.values(), vocab))
    valid_ids = torch.from_numpy(to_ids(valid_seqs.values(), vocab))
    if len(valid_seqs) == 0:
        log.warning("%s: no valid pieces; early stopping watches the train loss", name)
    log.info("%s: %d train / %d valid tokens, vocab %d, device %s", name, len(train_ids),
             len(valid_ids), len(vocab), device)

    model = FAMILIES[params.family].build(len(vocab), params.net).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=cfg.plateau_factor, patience=0)
    generator = torch.Generator().manual_seed(seed)
    pad = vocab.index(PAD)

    best, stale, step, rows = float("inf"), 0, 0, []
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        model.train()
        losses, n_tokens = [], 0
        batches = list(_batches(train_ids, cfg.seq_len, cfg.batch_size, generator))
        if cfg.max_batches:
            batches = batches[: cfg.max_batches]
        for x, y in tqdm(batches, desc=f"train {name} epoch {epoch}", unit="batch",
                         leave=False):
            x, y = x.to(device), y.to(device)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16,
                                enabled=device == "cuda"):
                logits, _ = model(x)
                loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(),
                                       ignore_index=pad)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            optimizer.step()
            losses.append(loss.item())
            n_tokens += y.numel()
            step += 1
        train_loss = float(np.mean(losses)) if losses else float("nan")
        valid_loss = (evaluate_loss(model, valid_ids, cfg.seq_len, device, pad)
                      if len(valid_seqs) else train_loss)
        seconds = time.perf_counter() - start
        rows.append({"epoch": epoch, "step": step, "train_loss": round(train_loss, 5),
                     "valid_loss": round(valid_loss, 5),
                     "lr": optimizer.param_groups[0]["lr"], "seconds": round(seconds, 2),
                     "tokens_per_s": round(n_tokens / seconds, 1)})
        _write_log(log_csv, rows)
        log.info("%s epoch %d: train %.4f valid %.4f lr %.2g (%.0f tokens/s, %d steps/s)",
                 name, epoch, train_loss, valid_loss, rows[-1]["lr"], n_tokens / seconds,
                 len(batches) / seconds)
        scheduler.step(valid_loss)
        if valid_loss < best:
            best, stale = valid_loss, 0
            save_checkpoint(ckpt_path, name=name, params=params, vocab=vocab, model=model,
                            epoch=epoch, step=step, valid_loss=valid_loss, seed=seed)
        else:
            stale += 1
            if stale >= cfg.patience:
                log.info("%s: early stop after epoch %d (best valid %.4f)", name, epoch, best)
                break
    return {"best_valid_loss": best, "epochs": len(rows), "steps": step, "vocab": len(vocab)}


def _batches(ids: torch.Tensor, seq_len: int, batch_size: int, generator: torch.Generator):
    """Shuffled (x, y) windows of one token stream; y is x shifted by one token."""
    n_windows = (len(ids) - 1) // seq_len
    order = torch.randperm(n_windows, generator=generator)
    for i in range(0, n_windows, batch_size):
        starts = order[i : i + batch_size] * seq_len
        x = torch.stack([ids[s : s + seq_len] for s in starts.tolist()])
        y = torch.stack([ids[s + 1 : s + seq_len + 1] for s in starts.tolist()])
        yield x, y


@torch.no_grad()
def stream_logits(model: torch.nn.Module, ids: torch.Tensor, seq_len: int, device: str):
    """Teacher-forced logits over a whole stream, in windows, carrying the recurrent state."""
    model.eval()
    state = None
    for s in range(0, len(ids) - 1, seq_len):
        x = ids[s : s + seq_len].to(device)[None]
        y = ids[s + 1 : s + seq_len + 1].to(device)
        x = x[:, : len(y)]
        logits, state = model(x, state)
        yield logits[0].float(), y


def evaluate_loss(model: torch.nn.Module, ids: torch.Tensor, seq_len: int, device: str,
                  pad: int) -> float:
    total, count = 0.0, 0
    for logits, y in stream_logits(model, ids, seq_len, device):
        total += F.cross_entropy(logits, y, ignore_index=pad, reduction="sum").item()
        count += int((y != pad).sum())
    return total / max(count, 1)


def _write_log(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
