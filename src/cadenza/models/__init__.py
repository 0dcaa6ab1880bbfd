"""Model registry: `family` name in params.yaml -> the module that builds and samples it."""

from __future__ import annotations

from types import ModuleType

from cadenza.models import token_lm

FAMILIES: dict[str, ModuleType] = {"token_lm": token_lm}
