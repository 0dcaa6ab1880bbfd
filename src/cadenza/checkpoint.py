"""Self-describing checkpoints (as in nanoGPT): weights + config + data info + step.

`generate` and `evaluate` need nothing but this file. It holds only tensors and plain Python
data, so it loads with `torch.load(weights_only=True)`: a checkpoint is data, never code.
It is written to a temporary file and renamed, so a kill never leaves a half-written one.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from cadenza.config import ModelParams, from_dict
from cadenza.io import atomic_path
from cadenza.models import FAMILIES

FORMAT = "cadenza-checkpoint/2"


def save_checkpoint(path: Path, *, name: str, params: ModelParams, info: dict,
                    model: torch.nn.Module, epoch: int, step: int, valid_loss: float,
                    seed: int) -> None:
    """`info` is what the model keeps from the training data (the vocabulary), plain data."""
    payload = {
        "format": FORMAT,
        "name": name,
        "params": asdict(params),
        "info": info,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "epoch": epoch,
        "step": step,
        "valid_loss": valid_loss,
        "seed": seed,
        "torch_version": str(torch.__version__),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_data(path: Path, what: str, device: str | None = "cpu", hint: str = "") -> Any:
    """torch.load with data only (a file of ours never runs code); a truncated, tampered or
    foreign file becomes a ValueError that names the file and says what it was meant to be."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise ValueError(f"{path}: not a loadable {what} ({type(err).__name__}: "
                         f"{str(err)[:200]}){hint}") from err


def load_checkpoint(path: Path, device: str = "cpu"
                    ) -> tuple[torch.nn.Module, ModelParams, dict[str, Any]]:
    """Rebuild the model from the checkpoint alone; refuse anything that is not one of ours."""
    payload = load_data(path, "checkpoint", device)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} checkpoint")
    missing = [k for k in ("params", "info", "state_dict") if k not in payload]
    if missing:
        raise ValueError(f"{path}: tampered checkpoint: no {', '.join(missing)}")
    params = from_dict(ModelParams, payload["params"], f"{path}:params")  # ParamsError names it
    try:
        model = FAMILIES[params.family].build(params.net, payload["info"])
        model.load_state_dict(payload["state_dict"])
    except Exception as err:  # noqa: BLE001 - wrong shapes, missing or extra tensors, bad info
        raise ValueError(f"{path}: tampered checkpoint: its weights do not fit its params "
                         f"({type(err).__name__}: {str(err)[:300]})") from err
    return model.to(device).eval(), params, payload
