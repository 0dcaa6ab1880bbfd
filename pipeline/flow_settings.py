"""How the flow runs unattended: the `flow:` section of a project's params.yaml."""

from __future__ import annotations

from pathlib import Path

from cadenza import paths
from cadenza.config import FlowParams, from_dict, load_yaml


def flow_settings(project: str) -> FlowParams:
    """The `flow:` section of the project's params.yaml, validated (defaults if absent).

    Only that section: the flow runs any DVC project (a toy one in the tests, one without a
    params.yaml), whose other sections are not Cadenza's; the stages validate the rest.
    """
    path = Path(project) / paths.PARAMS
    raw = (load_yaml(path) or {}) if path.exists() else {}
    return from_dict(FlowParams, raw.get("flow") or {}, "flow")
