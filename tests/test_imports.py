"""Torch only where a model is built: the stages that fetch, prepare, check and report data
must not import it (issue #20: every stage used to pay seconds and hundreds of MB for it,
through config -> models).

Each check runs in a fresh interpreter, since this test process has torch loaded already.
The modules a command imports are read from its body in `cadenza.cli` (the commands import
their stage's module lazily), so a new import there is checked without editing this file.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from cadenza.testing.checkout import ROOT

CLI = ROOT / "src" / "cadenza" / "cli.py"
TORCH_FREE_COMMANDS = ("check", "fetch", "prepare", "report")


def command_imports(name: str) -> list[str]:
    """The `cadenza.*` modules imported inside the CLI function `name`."""
    tree = ast.parse(CLI.read_text())
    (function,) = (
        node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name
    )
    return sorted(
        {
            node.module
            for node in ast.walk(function)
            if isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("cadenza")
        }
    )


def loads_torch(code: str) -> bool:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    return out.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize("command", TORCH_FREE_COMMANDS)
def test_data_commands_do_not_import_torch(command):
    modules = ["cadenza.cli", *command_imports(command)]
    assert command == "check" or len(modules) > 1, f"{command}: found no stage module in cli.py"
    assert not loads_torch("\n".join(f"import {m}" for m in modules)), modules


def test_cadenza_check_runs_without_torch():
    """A whole command, end to end: `cadenza check` loads and validates every model's params
    (each family's `Net`) without the model code."""
    code = (
        "import sys\n"
        "from cadenza.cli import app\n"
        "sys.argv = ['cadenza', 'check', '--params', 'params.yaml']\n"
        "try:\n"
        "    app()\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code"
    )
    assert not loads_torch(code)


def test_the_model_families_are_loaded_on_demand():
    assert not loads_torch("from cadenza.models import SPECS\nassert SPECS['roll_lstm'].net()")
    assert loads_torch("from cadenza.models import load_family\nload_family('roll_lstm')")
