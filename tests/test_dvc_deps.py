"""Deps correct by construction (#17): every dvc.yaml stage declares the code it runs and the
files it reads, so a stage reported up to date really is.

DVC hashes only what a stage's `deps:` list; a module the command imports but the list
misses can change without the stage running again, and its results go stale while
`dvc status` says all is well. So the deps are derived here, statically, and compared:

* code: the `cadenza ...` command of the stage is looked up in cli.py; the modules its
  handler imports (at any depth, function-level imports included, plus cli.py's own
  module-level imports and its callback) are followed through src/cadenza;
* data: every path the command gets through a `Path` option or argument that is not one of
  the stage's outputs.

Each must lie under a dep of the stage (a directory covers the files below it). A model
family's module is imported by name (`cadenza.models.load_family`), which no import statement
shows: a module that uses `load_family` counts as importing every family of `SPECS`. The closure
errs on the side of too much: any import anywhere in a module counts, whether or not the
stage reaches that function, since a dep too many costs a rerun and a dep too few costs trust.
"""

from __future__ import annotations

import ast
import functools
import os
import shlex
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest
from dvc.repo import Repo

from cadenza.models.specs import SPECS
from cadenza.testing.checkout import ROOT

SRC = ROOT / "src"
PACKAGE = "cadenza"
CLI_MODULE = "cadenza.cli"
PROGRAM = "cadenza"  # the console script of pyproject.toml: cadenza.cli:app
# path options that are not inputs of the result, and why
NOT_INPUTS = {
    # the download cache: it holds copies of the sources' published files (checked against
    # the registry's sha256 where known, and the hash is recorded in the output), so it
    # changes how long a fetch takes, not what it writes
    "--cache",
    # read through the stage's `params:`, which track exactly the keys the stage uses
    "--params",
    "--papers",
}
# `cadenza.models.load_family` imports a family's module by its name in SPECS: whoever uses it
# may run any family's code
FAMILY_LOADER = "load_family"
FAMILY_MODULES = frozenset(spec.module for spec in SPECS.values())


@dataclass(frozen=True)
class Stage:
    """One expanded stage (foreach / matrix items apart), paths relative to the project root
    in POSIX form, so that deps, outs and option values compare as strings."""

    name: str
    cmd: str
    wdir: str
    deps: tuple[str, ...]
    outs: tuple[str, ...]


@dataclass(frozen=True)
class Param:
    """One parameter of a CLI handler, as the command line gives it."""

    name: str
    flags: tuple[str, ...]  # () for a positional argument
    is_path: bool
    takes_value: bool


@dataclass(frozen=True)
class Command:
    """A `cadenza ...` command: the function typer runs for it and its parameters."""

    words: tuple[str, ...]  # ("benchmark", "bl")
    handler: ast.FunctionDef
    params: tuple[Param, ...]


# --------------------------------------------------------------------------- the stages


def _relative(path: str, root: Path) -> str:
    return PurePosixPath(Path(os.path.relpath(path, root))).as_posix()


def load_stages(root: Path) -> list[Stage]:
    """Every stage of every dvc.yaml under `root`, expanded by DVC itself, so that foreach,
    matrix and `${...}` read exactly as `dvc repro` reads them."""
    with Repo(str(root)) as repo:
        stages = []
        for stage in repo.index.stages:
            cmd = " ".join(stage.cmd) if isinstance(stage.cmd, list) else str(stage.cmd or "")
            dvcfile = _relative(stage.dvcfile.path, root)
            # named as DVC names them: `train@a`, `bench/bl/dvc.yaml:bench@jsb-roll_lstm`
            name = stage.name if dvcfile == "dvc.yaml" else f"{dvcfile}:{stage.name}"
            stages.append(
                Stage(
                    name=name,
                    cmd=cmd,
                    wdir=_relative(stage.wdir, root),
                    deps=tuple(_relative(d.fs_path, root) for d in stage.deps),
                    outs=tuple(_relative(o.fs_path, root) for o in stage.outs),
                )
            )
        return stages


def covers(paths: Iterable[str], path: str) -> bool:
    """Whether `path` is one of `paths` or lies under one of them (a directory dep)."""
    return any(path == p or p == "." or path.startswith(p + "/") for p in paths)


# --------------------------------------------------------------------------- the CLI


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _module_constants(tree: ast.Module) -> dict[str, ast.expr]:
    """Module-level `NAME = expr`: cli.py keeps shared options such as PARAMS there."""
    return {
        target.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def _is_path(annotation: ast.expr | None) -> bool:
    """`Path`, `Path | None`, `list[Path]`: the option names files."""
    return annotation is not None and any(
        isinstance(node, ast.Name) and node.id == "Path" for node in ast.walk(annotation)
    )


def _is_bool(annotation: ast.expr | None) -> bool:
    return isinstance(annotation, ast.Name) and annotation.id == "bool"


def handler_params(handler: ast.FunctionDef, constants: dict[str, ast.expr]) -> tuple[Param, ...]:
    """The handler's parameters as typer exposes them: `typer.Option(default, "--x")` gives
    its flags, else `--<name>`; `typer.Argument` and plain parameters are positional."""
    args = handler.args.args
    defaults = [None] * (len(args) - len(handler.args.defaults)) + list(handler.args.defaults)
    params = []
    for arg, default in zip(args, defaults, strict=True):
        if isinstance(default, ast.Name) and default.id in constants:
            default = constants[default.id]
        kind = (
            default.func.attr
            if isinstance(default, ast.Call) and isinstance(default.func, ast.Attribute)
            else None
        )
        if kind == "Option":
            flags = tuple(
                a.value
                for a in default.args
                if isinstance(a, ast.Constant)
                and isinstance(a.value, str)
                and a.value.startswith("-")
            )
            flags = tuple(f for f in flags if not f.startswith("--no-")) or (_flag(arg.arg),)
        elif kind == "Argument" or default is None:
            flags = ()
        else:  # a plain default: typer makes it an option
            flags = (_flag(arg.arg),)
        params.append(Param(arg.arg, flags, _is_path(arg.annotation), not _is_bool(arg.annotation)))
    return tuple(params)


def _decorator_call(fn: ast.FunctionDef, method: str) -> Iterator[ast.Call]:
    for dec in fn.decorator_list:
        if (
            isinstance(dec, ast.Call)
            and isinstance(dec.func, ast.Attribute)
            and dec.func.attr == method
            and isinstance(dec.func.value, ast.Name)
        ):
            yield dec


def cli_commands(tree: ast.Module) -> dict[tuple[str, ...], Command]:
    """Every command of cli.py by its words: `@app.command()` is `cadenza <fn-name>`,
    `@bench_app.command("bl")` under `app.add_typer(bench_app, name="benchmark")` is
    `cadenza benchmark bl`."""
    groups: dict[str, tuple[str, ...]] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_typer"
            and isinstance(node.args[0], ast.Name)
        ):
            name = next(k.value.value for k in node.keywords if k.arg == "name")
            groups[node.args[0].id] = (name,)
    constants = _module_constants(tree)
    commands = {}
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        for dec in _decorator_call(fn, "command"):
            word = dec.args[0].value if dec.args else fn.name.replace("_", "-")
            words = groups.get(dec.func.value.id, ()) + (word,)
            commands[words] = Command(words, fn, handler_params(fn, constants))
    return commands


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every module an import anywhere in `tree` may load. For `from a import b`, both `a`
    and `a.b` (b may be a submodule); names that are no module are dropped later. A use of
    `load_family` (imported by name, or called as `models.load_family`) loads every family."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == FAMILY_LOADER:
            found |= FAMILY_MODULES
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if any(alias.name == FAMILY_LOADER for alias in node.names):
                found |= FAMILY_MODULES
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return found


def handler_imports(tree: ast.Module, command: Command) -> set[str]:
    """What running one command imports from cli.py: the module-level imports, those of the
    callback (it runs before every command) and those of the handler and of every cli.py
    function it calls, followed transitively."""
    functions = {fn.name: fn for fn in tree.body if isinstance(fn, ast.FunctionDef)}
    callbacks = [fn for fn in functions.values() if any(_decorator_call(fn, "callback"))]
    found = {
        imp
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for imp in _imports(node, CLI_MODULE, False)
    }
    todo, seen = [command.handler, *callbacks], set()
    while todo:
        fn = todo.pop()
        if fn.name in seen:
            continue
        seen.add(fn.name)
        found |= _imports(fn, CLI_MODULE, False)
        todo.extend(
            functions[node.func.id]
            for node in ast.walk(fn)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in functions
        )
    return found


# --------------------------------------------------------------------------- the closure


def module_file(module: str, src: Path) -> Path | None:
    """The file of a module of our package, or None (a name that is no module, or another
    package: third-party code is pinned by constraints.txt, not by deps)."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    base = src.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def import_closure(roots: Iterable[str], src: Path) -> set[Path]:
    """The files of every package module that importing `roots` may execute: their imports,
    function-level ones included, and every parent package's __init__.py."""
    files: set[Path] = set()
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = module_file(module, src)
        if path is None:
            continue
        files.add(path)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(_module_imports(module, path))
    return files


@functools.cache
def _module_imports(module: str, path: Path) -> frozenset[str]:
    """A module's imports, parsed once per test session: every stage asks again."""
    tree = ast.parse(path.read_text(), str(path))
    return frozenset(_imports(tree, module, path.name == "__init__.py"))


def command_code(tree: ast.Module, command: Command, src: Path) -> set[Path]:
    """The package files one command runs: cli.py itself and the closure of what the
    command's handler imports. Other handlers' imports are not followed, so a stage does
    not depend on every command's code."""
    cli = module_file(CLI_MODULE, src)
    assert cli is not None
    return {cli} | import_closure(handler_imports(tree, command) | {PACKAGE}, src)


# --------------------------------------------------------------------------- the check


def parse_cmd(
    cmd: str, commands: dict[tuple[str, ...], Command]
) -> tuple[Command, list[tuple[Param, str]]]:
    """The command a stage runs and the value of each parameter it is given. Raises
    ValueError for a command line this check cannot read (not `cadenza ...`)."""
    words = shlex.split(cmd)
    if not words or words[0] != PROGRAM:
        raise ValueError(f"not a `{PROGRAM} ...` command")
    rest = [w for w in words[1:] if w not in ("-v", "--verbose")]  # the callback's option
    match = max((w for w in commands if tuple(rest[: len(w)]) == w), key=len, default=None)
    if match is None:
        raise ValueError(f"no such command in cli.py: {' '.join(rest[:2])}")
    command, rest = commands[match], rest[len(match) :]
    by_flag = {flag: p for p in command.params for flag in p.flags}
    positional = [p for p in command.params if not p.flags]
    given = []
    while rest:
        word = rest.pop(0)
        flag, eq, inline = word.partition("=")
        if flag in by_flag:
            param = by_flag[flag]
            value = inline if eq else (rest.pop(0) if param.takes_value else "")
            given.append((param, value))
        elif word.startswith("-"):
            raise ValueError(f"unknown option {word} of `{PROGRAM} {' '.join(match)}`")
        elif positional:  # in order; the last takes every further word (a list[Path])
            given.append((positional.pop(0) if len(positional) > 1 else positional[0], word))
        else:
            raise ValueError(f"extra argument {word!r}")
    return command, given


def input_paths(stage: Stage, given: list[tuple[Param, str]]) -> set[str]:
    """Paths the command reads: its `Path` parameters, relative to the stage's wdir, less
    its outputs, caches and params files."""
    found = set()
    for param, value in given:
        if not param.is_path or set(param.flags) & NOT_INPUTS:
            continue
        path = PurePosixPath(os.path.normpath(PurePosixPath(stage.wdir) / value)).as_posix()
        if not covers(stage.outs, path):
            found.add(path)
    return found


def stage_problems(
    stage: Stage, tree: ast.Module, commands: dict[tuple[str, ...], Command], src: Path
) -> list[str]:
    """One line per file the stage runs or reads that no dep covers, naming both."""
    try:
        command, given = parse_cmd(stage.cmd, commands)
    except ValueError as err:
        return [f"{stage.name}: cannot derive deps of {stage.cmd!r}: {err}"]
    code = {
        PurePosixPath(p.relative_to(src.parent)).as_posix()  # as deps name them: src/...
        for p in command_code(tree, command, src)
    }
    what = f"`{PROGRAM} {' '.join(command.words)}` imports it"
    problems = [
        f"{stage.name}: runs {path} ({what}) but no dep covers it"
        for path in sorted(code)
        if not covers(stage.deps, path)
    ]
    problems += [
        f"{stage.name}: reads {path} (an argument of its cmd) but no dep covers it"
        for path in sorted(input_paths(stage, given))
        if not covers(stage.deps, path)
    ]
    return problems


def project_problems(root: Path, src: Path) -> list[str]:
    """Every stage's problems, for every dvc.yaml of the project at `root`."""
    tree = ast.parse((src / "cadenza" / "cli.py").read_text())
    commands = cli_commands(tree)
    return [
        line for stage in load_stages(root) for line in stage_problems(stage, tree, commands, src)
    ]


# --------------------------------------------------------------------------- tests


def test_every_stage_declares_the_code_it_runs_and_the_files_it_reads():
    problems = project_problems(ROOT, SRC)
    assert not problems, "dvc.yaml deps miss:\n" + "\n".join(problems)


def _synthetic_project(tmp_path: Path, stages: str) -> Path:
    """A DVC project of one dvc.yaml, without git: stages load without the files existing."""
    Repo.init(str(tmp_path), no_scm=True).close()
    (tmp_path / "dvc.yaml").write_text(stages)
    return tmp_path


TRAIN_STAGE = """\
stages:
  train:
    foreach: [a, b]
    do:
      cmd: cadenza train ${item} --prepared data/prepared --ckpt m/${item}.pt --log l/${item}.csv
      deps:
        - data/prepared
        - %s
      outs:
        - m/${item}.pt
        - l/${item}.csv
"""


def test_check_names_the_stage_and_the_module_it_misses(tmp_path):
    project = _synthetic_project(tmp_path, TRAIN_STAGE % "src/cadenza/train.py")
    problems = project_problems(project, SRC)
    assert any(line.startswith("train@a: runs src/cadenza/checkpoint.py") for line in problems)
    assert any(line.startswith("train@b: runs src/cadenza/config.py") for line in problems)
    # function-level imports count: train imports models, whose families import rolls.py
    assert any("src/cadenza/representations/rolls.py" in line for line in problems)
    assert not any("src/cadenza/train.py" in line for line in problems)
    assert not any("src/cadenza/report/" in line for line in problems)  # another command's


def test_check_passes_a_stage_whose_deps_cover_everything(tmp_path):
    project = _synthetic_project(tmp_path, TRAIN_STAGE % "src/cadenza")
    assert project_problems(project, SRC) == []


def test_check_names_an_input_path_that_is_no_dep(tmp_path):
    project = _synthetic_project(
        tmp_path,
        """\
stages:
  table:
    wdir: bench
    cmd: cadenza benchmark table --results results --out results.md
    deps: [../src/cadenza]
    outs: [results.md]
  odd:
    cmd: python make.py
""",
    )
    problems = project_problems(project, SRC)
    assert problems[0] == (
        "table: reads bench/results (an argument of its cmd) but no dep covers it"
    )
    assert problems[1].startswith("odd: cannot derive deps")
    assert len(problems) == 2


def test_closure_follows_function_level_and_parent_imports():
    files = import_closure(["cadenza.config"], SRC)
    rel = {p.relative_to(SRC).as_posix() for p in files}
    assert {
        "cadenza/__init__.py",
        "cadenza/models/__init__.py",
        "cadenza/models/specs.py",
        "cadenza/sources/registry.py",
    } <= rel  # late imports inside config's functions
    assert "cadenza/sources/fetch.py" not in rel
    assert "cadenza/models/roll_made.py" not in rel  # the specs, not the code (nor torch)


def test_closure_follows_the_families_that_load_family_imports_by_name():
    """No import statement names a family's module: `load_family` imports it from SPECS.
    Whoever uses it runs the family's code and what only the family imports (gan.py)."""
    rel = {p.relative_to(SRC).as_posix() for p in import_closure(["cadenza.train"], SRC)}
    assert {f"cadenza/models/{name}.py" for name in SPECS} <= rel
    assert "cadenza/models/gan.py" in rel  # imported by note_gan and roll_gan only


# --------------------------------------------------------------------------- metrics


def _git_files(root: Path) -> set[str] | None:
    proc = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True)
    return set(proc.stdout.split("\0")) - {""} if proc.returncode == 0 else None


def declared_metrics(root: Path) -> list[str]:
    """Every metrics file `dvc metrics show/diff` reads: the stages' `metrics:` outs over all
    foreach / matrix items and the top-level `metrics:` of each dvc.yaml. DVC's own
    collector, so the list is the one whose missing files make DVC warn."""
    from dvc.repo.metrics.show import _collect_metrics

    with Repo(str(root)) as repo:
        # DVCFileSystem paths: POSIX, from the repo root, with a leading slash
        return sorted({p.lstrip("/") for p in _collect_metrics(repo)})


def test_every_declared_metrics_file_is_in_git():
    """A fresh clone has only what git holds (these metrics are `cache: false`), so a declared
    metrics file outside git makes `dvc metrics diff` and `dvc exp show` warn in every clone."""
    tracked = _git_files(ROOT)
    if tracked is None:
        pytest.skip("not a git checkout")
    metrics = declared_metrics(ROOT)
    assert "reports/metrics/reference.json" in metrics  # the collector sees the stages
    missing = [m for m in metrics if m not in tracked]
    assert not missing, (
        "declared metrics that a fresh clone lacks (git add them, or stop "
        f"declaring them): {missing}"
    )


def _tracked_params(project: Path) -> dict[str, dict]:
    """Each stage's params values as DVC reads them for `dvc status`."""
    from dvc.dependency.param import ParamsDependency

    with Repo(str(project)) as repo:
        return {
            stage.name: {
                str(dep.def_path): dep.read_params()
                for dep in stage.deps
                if isinstance(dep, ParamsDependency)
            }
            for stage in repo.index.stages
        }


def test_a_profile_that_is_not_selected_reruns_nothing(tmp_path):
    """Adding a `gpu` profile beside `quick` must not make every model retrain; a change of
    the selected profile's caps must."""
    import yaml

    Repo.init(str(tmp_path), no_scm=True).close()
    for name in ("dvc.yaml", "params.yaml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    before = _tracked_params(tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["profiles"]["gpu"] = {"max_epochs": 100}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert _tracked_params(tmp_path) == before
    params["profiles"][params["profile"]]["max_epochs"] += 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    after = _tracked_params(tmp_path)
    assert after["train@chord_lstm"] != before["train@chord_lstm"]
