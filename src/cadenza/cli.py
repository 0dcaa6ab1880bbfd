"""`cadenza <stage>`: thin commands over library functions, one per DVC stage.

Every path comes in as an argument (dvc.yaml writes them once); every setting comes from
params.yaml through `load_params`, which fails before any work on a bad key.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import typer

from cadenza import paths
from cadenza.config import ModelParams, Params, ParamsError, load_params, load_yaml_as

T = TypeVar("T")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Cadenza: a reproducible pipeline for symbolic-music generation.",
)
flow_app = typer.Typer(no_args_is_help=True, help="Run the DVC DAG as a Prefect flow.")
app.add_typer(flow_app, name="flow")
bench_app = typer.Typer(no_args_is_help=True, help="Published benchmarks, reproduced.")
app.add_typer(bench_app, name="benchmark")
paper_app = typer.Typer(no_args_is_help=True, help="The founding papers' experiments, reproduced.")
app.add_typer(paper_app, name="paper")
listen_app = typer.Typer(
    no_args_is_help=True, help="A blind listening test: make the page, analyse the answers."
)
app.add_typer(listen_app, name="listening-test")

PARAMS = typer.Option(paths.PARAMS, "--params", help="params file to validate and use")


@app.callback()
def _setup(verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    from cadenza.settings import analytics_off

    analytics_off()
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Prefect's API chatter


def _params(path: Path) -> Params:
    return _loaded(load_params, path)


def _loaded(load: Callable[[Path], T], path: Path) -> T:
    """`load(path)`, or a one-line "bad param" error and exit code 2: every params file the
    user writes (params.yaml, a benchmark's params) fails the same way."""
    try:
        return load(path)
    except ParamsError as err:
        typer.echo(f"error: bad param: {err}", err=True)
        raise typer.Exit(2) from None


@contextlib.contextmanager
def _clear_errors() -> Iterator[None]:
    """A refused input (a checkpoint failing its integrity, finiteness or format check) is one
    line, not a traceback: the ValueError already names the file and what to do."""
    try:
        yield
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    """A failure the input caused (the network, a file, a corpus with no usable piece) is one
    line that names it, exit code 1; with `--verbose`, the traceback too."""
    try:
        yield
    except (RuntimeError, OSError, ValueError) as err:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        typer.echo(f"error: {type(err).__name__}: {err}", err=True)
        raise typer.Exit(1) from None


def _model(params: Params, name: str) -> ModelParams:
    """Model `name` of params.yaml, checked before any work: a typo exits 2, not a KeyError."""
    if name not in params.models:
        typer.echo(f"error: bad param: models.{name}: no such model in params", err=True)
        raise typer.Exit(2)
    return params.models[name]


@app.command()
def check(params_file: Path = PARAMS) -> None:
    """Validate params.yaml and exit."""
    params = _params(params_file)
    typer.echo(f"ok: {len(params.sources)} source(s), {len(params.models)} model(s)")


@app.command()
def fetch(
    source: str,
    out: Path = typer.Option(...),
    cache: Path = typer.Option(..., help="download cache, kept across runs"),
    params_file: Path = PARAMS,
) -> None:
    """Fetch one registered source into OUT (data/raw/<source>)."""
    from cadenza.sources.fetch import fetch_source

    params = _params(params_file)
    if source not in params.sources:
        typer.echo(f"error: bad param: sources.{source}: not selected in params", err=True)
        raise typer.Exit(2)
    with _one_line_errors():
        fetch_source(source, out, cache, params.sources[source])


@app.command()
def prepare(
    raw: Path = typer.Option(...), out: Path = typer.Option(...), params_file: Path = PARAMS
) -> None:
    """Parse, filter, transpose, split and shard every selected source."""
    from cadenza.prepare.stage import prepare as run_prepare

    params = _params(params_file)
    with _one_line_errors():
        run_prepare(raw, list(params.sources), out, params.prepare, params.runner)


@app.command()
def train(
    model: str,
    prepared: Path = typer.Option(...),
    ckpt: Path = typer.Option(...),
    log: Path = typer.Option(..., help="per-epoch CSV for dvc plots"),
    metrics: Path = typer.Option(..., help="likelihood on the valid split (JSON)"),
    params_file: Path = PARAMS,
) -> None:
    """Train one model of params.yaml `models:`; write its valid-split metrics."""
    from cadenza.evaluate import evaluate_valid
    from cadenza.train import train as run_train

    params = _params(params_file)
    _model(params, model)
    mp = params.model(model)
    run_train(model, mp, prepared, ckpt, log, params.seed)
    evaluate_valid(ckpt, prepared, metrics, params.seed, mp.train.max_valid_units)


@app.command()
def generate(
    model: str,
    ckpt: Path = typer.Option(...),
    prepared: Path = typer.Option(...),
    out: Path = typer.Option(...),
    params_file: Path = PARAMS,
) -> None:
    """Sample pieces from a checkpoint into OUT as MIDI."""
    from cadenza.generate import generate as run_generate

    params = _params(params_file)
    _model(params, model)
    with _clear_errors():
        run_generate(ckpt, prepared, out, params.caps.cap_generate(params.generate), params.seed)


@app.command()
def evaluate(
    model: str,
    ckpt: Path = typer.Option(...),
    prepared: Path = typer.Option(...),
    generated: Path = typer.Option(...),
    out: Path = typer.Option(...),
    params_file: Path = PARAMS,
) -> None:
    """Metrics of one model's samples, plus its likelihood on the test split."""
    from cadenza.evaluate import evaluate_model

    params = _params(params_file)
    _model(params, model)
    with _clear_errors():
        evaluate_model(
            ckpt, prepared, generated, out, params.evaluate, params.seed, params.caps.max_test_units
        )


@app.command()
def reference(
    prepared: Path = typer.Option(...), out: Path = typer.Option(...), params_file: Path = PARAMS
) -> None:
    """Metrics of real data: train, test, and test with shuffled bars (the reference rows)."""
    from cadenza.evaluate import evaluate_reference

    params = _params(params_file)
    evaluate_reference(prepared, out, params.evaluate, params.seed)


@app.command()
def excerpts(
    prepared: Path = typer.Option(...), out: Path = typer.Option(...), params_file: Path = PARAMS
) -> None:
    """Cut a few real test pieces to the clip length, as MIDI (the 'real' clips)."""
    from cadenza.excerpts import write_excerpts

    params = _params(params_file)
    write_excerpts(
        prepared,
        out,
        params.listen.n_excerpts,
        params.listen.clip_seconds,
        params.generate.bpm,
        params.seed,
    )


@app.command()
def render(
    generated: Path = typer.Option(..., help="samples: <model>/*.mid"),
    excerpts: Path = typer.Option(..., help="real test excerpts: *.mid"),
    out: Path = typer.Option(..., help="audio: <model>/ and real/"),
    params_file: Path = PARAMS,
) -> None:
    """Render every sample of every model of params, and the real excerpts, to short audio
    clips with FluidSynth (or write why not, when no synthesizer or soundfont is installed)."""
    from cadenza.audio import render_folders
    from cadenza.listening import REAL

    params = _params(params_file)
    folders = {m: generated / m for m in params.models if (generated / m).is_dir()}
    statuses = render_folders({**folders, REAL: excerpts}, out, params.listen)
    reason = next((s["unavailable"] for s in statuses.values() if s["unavailable"]), None)
    typer.echo(reason or f"{sum(len(s['clips']) for s in statuses.values())} clips -> {out}")


@app.command()
def embeddings(
    models: Path = typer.Option(..., help="data/models: <model>/ckpt.pt"),
    out: Path = typer.Option(...),
    params_file: Path = PARAMS,
) -> None:
    """t-SNE maps of the learned embeddings of every model that has one (paper 003)."""
    from cadenza.embeddings import embedding_maps

    params = _params(params_file)
    ckpts = {m: models / m / "ckpt.pt" for m in params.models if (models / m / "ckpt.pt").exists()}
    embedding_maps(ckpts, out, params.seed)


@app.command()
def report(
    metrics: Path = typer.Option(...),
    train_logs: Path = typer.Option(...),
    generated: Path = typer.Option(...),
    out: Path = typer.Option(...),
    html: Path = typer.Option(...),
    table: Path = typer.Option(...),
    plots: Path = typer.Option(...),
    audio: Path = typer.Option(None, help="audio folders: <model>/, real/"),
    excerpts: Path = typer.Option(None, help="the real excerpts' MIDI"),
    embeddings: Path = typer.Option(None, help="embedding maps: <model>.png"),
    listening: Path = typer.Option(None, help="`listening-test analyze` result"),
    prepared: Path = typer.Option(
        None, help="the prepared data: its _meta.json, pieces and rejects give the provenance"
    ),
    params_file: Path = PARAMS,
) -> None:
    """Write the markdown and HTML report, its plots, and the metrics table as CSV."""
    from cadenza.report import build_report

    params = _params(params_file) if params_file.exists() else None
    build_report(
        metrics,
        train_logs,
        generated,
        out,
        html,
        table,
        plots,
        audio=audio,
        excerpts=excerpts,
        embeddings=embeddings,
        listening=listening,
        prepared=prepared,
        params=params,
    )


@listen_app.command("make")
def listening_make(
    n: int = typer.Option(12, "--n", help="clips on the page"),
    n_real: int = typer.Option(None, help="real excerpts among them (default: a third)"),
    model: list[str] = typer.Option(None, "--model", "-m", help="models to include (default: all)"),
    audio: Path = typer.Option(paths.AUDIO, help="rendered audio: <model>/, real/"),
    out: Path = typer.Option(paths.LISTENING_TEST, help="the folder to hand to listeners"),
    key: Path = typer.Option(
        paths.LISTENING_KEY, help="which clip is which; keep it away from listeners"
    ),
    seed: int = typer.Option(None, help="shuffle seed (default: random)"),
) -> None:
    """Write a self-contained folder with one offline HTML page of shuffled, anonymised
    clips: model samples mixed with real test excerpts."""
    import secrets

    from cadenza.listening import make_test

    if n < 2:
        typer.echo("error: --n must be at least 2 (one real, one model clip)", err=True)
        raise typer.Exit(2)
    if n_real is not None and not 1 <= n_real < n:
        typer.echo(
            f"error: --n-real {n_real}: must be in [1, --n - 1] (a real clip and a model clip)",
            err=True,
        )
        raise typer.Exit(2)
    if seed is not None and seed < 0:
        typer.echo(f"error: --seed {seed}: must be >= 0", err=True)
        raise typer.Exit(2)
    try:
        made = make_test(
            audio,
            out,
            key,
            n,
            seed if seed is not None else secrets.randbelow(2**31),
            n_real,
            model or None,
        )
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"listening test {made['test_id']}: {len(made['clips'])} clips in {out}/ "
        f"(open {out / 'index.html'}); key: {key}"
    )


@listen_app.command("analyze")
def listening_analyze(
    answers: list[Path] = typer.Argument(..., help="answers_*.json files"),
    key: Path = typer.Option(paths.LISTENING_KEY),
    out: Path = typer.Option(paths.LISTENING_RESULT, help="result JSON, read by the report"),
) -> None:
    """Mean and SD of the rating per model, share of yes per question, and a test of each
    model against the real excerpts; plus the power analysis."""
    from cadenza.listening import analyze, power_text, results_table

    try:
        result = analyze(answers, key, out)
    except (ValueError, KeyError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(results_table(result).to_markdown(floatfmt=".3g"))
    typer.echo(
        f"\n{result['n_listeners']} listener(s), {result['n_answers']} rating(s) "
        f"-> {out}\n{power_text(result['power'])}"
    )


@app.command()
def compare(
    a_rev: str = typer.Argument("HEAD", help="the old commit or experiment"),
    b_rev: str = typer.Argument(None, help="the new one (default: the workspace)"),
    show_all: bool = typer.Option(False, "--all", help="every metric, changed or not"),
    changed_only: bool = typer.Option(
        False, "--changed", hidden=True, help="the default now; kept for old scripts"
    ),
    project: Path = typer.Option(Path("."), help="the DVC project folder"),
) -> None:
    """Metrics that changed between two commits or experiments, per model, with the better
    direction, after warnings when the two used other corpora, prepare params or profile."""
    from dvc.exceptions import DvcException

    from cadenza.compare import collect, render

    try:
        comparison = collect(str(project), a_rev, b_rev)
    except DvcException as err:  # an unknown revision, no git repository: say so, briefly
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(render(comparison, show_all=show_all))


@app.command()
def plots(
    project: Path = typer.Option(Path("."), help="the DVC project folder"),
    out: Path = typer.Option(paths.DVC_PLOTS, help="where the page goes"),
    rev: list[str] = typer.Option(
        None,
        "--rev",
        "-r",
        help="compare revisions (`dvc plots diff`): once for "
        "REV against the workspace, repeat for REV vs REV",
    ),
) -> None:
    """`dvc plots show` (loss curves, metric charts), or `dvc plots diff` with `--rev`, as a
    page that works offline."""
    from cadenza.dvc_cli import DvcError
    from cadenza.dvc_plots import show

    try:
        page = show(project, out, rev or None)
    except DvcError as err:  # DVC said why (an unknown revision...)
        raise typer.Exit(err.returncode or 1) from None
    typer.echo(f"plots: {page}")


@app.command()
def sweep(
    name: str = typer.Argument(..., help="a sweep of sweeps.yaml"),
    jobs: int = typer.Option(2, "--jobs", "-j", help="experiments run at once"),
    sweeps_file: Path = typer.Option(paths.SWEEPS, "--sweeps"),
    project: Path = typer.Option(Path("."), help="the DVC project (a git repo)"),
    out: Path = typer.Option(None, help=f"default: {paths.sweep_reports('<name>')}"),
) -> None:
    """Run a hyper-parameter sweep as DVC experiments; write its table, plot and summary."""
    from cadenza.sweep import load_sweeps, run_sweep

    try:
        sweeps = load_sweeps(project / sweeps_file)
    except ParamsError as err:
        typer.echo(f"error: bad sweep: {err}", err=True)
        raise typer.Exit(2) from None
    if name not in sweeps:
        typer.echo(f"error: no sweep {name!r} (known: {', '.join(sweeps)})", err=True)
        raise typer.Exit(2)
    if jobs < 1:
        typer.echo(f"error: --jobs {jobs}: must be at least 1 (experiments run at once)", err=True)
        raise typer.Exit(2)
    try:
        table = run_sweep(
            project, name, sweeps[name], jobs, out or project / paths.sweep_reports(name)
        )
    except RuntimeError as err:  # a failed dvc command or a stalled queue: the message says which
        typer.echo(f"error: sweep {name}: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(table.to_markdown(index=False, floatfmt=".4g"))
    failed = int(table.experiment.isna().sum())
    if failed:  # the table is written either way; the exit code says not every point ran
        typer.echo(
            f"error: sweep {name}: {failed} of {len(table)} points produced no result "
            "(`dvc exp show` and `dvc queue logs` say why)",
            err=True,
        )
        raise typer.Exit(1)


@bench_app.command("bl")
def benchmark_bl(
    dataset: str = typer.Option(..., help="jsb, nottingham, musedata or piano_midi_de"),
    model: str = typer.Option(..., help="a model of the benchmark's params"),
    out: Path = typer.Option(..., help="result JSON"),
    seed: int = typer.Option(0, help="the run's seed (results: mean ± std over seeds)"),
    cache: Path = typer.Option(paths.DOWNLOAD_CACHE),
    params_file: Path = typer.Option(paths.PARAMS, "--params"),
) -> None:
    """Boulanger-Lewandowski et al.'s polyphonic benchmark: train, early-stop, test NLL."""
    from cadenza.benchmark import DATASETS, BenchmarkParams, dataset_file, load_bl, run

    params = _loaded(functools.partial(load_yaml_as, cls=BenchmarkParams), params_file)
    known = {"dataset": set(params.datasets) & set(DATASETS), "model": set(params.models)}
    for name, value in (("dataset", dataset), ("model", model)):
        if value not in known[name]:
            typer.echo(f"error: bad param: --{name} {value}: not in {params_file}", err=True)
            raise typer.Exit(2)
    path = dataset_file(dataset, params.datasets[dataset], cache)
    run(
        dataset,
        load_bl(path),
        model,
        params.models[model],
        seed,
        out,
        params.transpose.get(model, 0),
        params.windows.get(dataset, 0),
    )


@bench_app.command("table")
def benchmark_table(results: Path = typer.Option(...), out: Path = typer.Option(...)) -> None:
    """Our benchmark results beside the published numbers, as markdown."""
    from cadenza.benchmark import results_table
    from cadenza.io import atomic_path, read_json

    rows = [read_json(p) for p in sorted(results.glob("*.json"))]
    with atomic_path(out) as tmp:
        tmp.write_text(results_table(rows))
    typer.echo(out.read_text())


@paper_app.command("run")
def paper_run(
    model: str,
    seed: int = typer.Option(..., help="one of papers.yaml `seeds`"),
    prepared: Path = typer.Option(...),
    work: Path = typer.Option(..., help="the run's checkpoint and per-epoch log"),
    out: Path = typer.Option(..., help="the run's figures (JSON)"),
    papers_file: Path = typer.Option(..., "--papers", help="papers.yaml"),
    params_file: Path = PARAMS,
) -> None:
    """Train one paper model with one seed; score it on train, valid and test."""
    from cadenza.io import write_json
    from cadenza.papers import Papers
    from cadenza.papers.run import run_cell

    params = _params(params_file)
    papers = _loaded(functools.partial(load_yaml_as, cls=Papers), papers_file)
    _model(params, model)
    if seed not in papers.seeds:
        typer.echo(f"error: bad param: --seed {seed}: not in {papers_file} seeds", err=True)
        raise typer.Exit(2)
    result = run_cell(model, params.model(model), prepared, work, seed, papers.eval_units)
    write_json(out, result)


@paper_app.command("table")
def paper_table(
    runs: Path = typer.Option(..., help="folder of `cadenza paper run` JSONs"),
    out: Path = typer.Option(..., help="the table (markdown)"),
    papers_file: Path = typer.Option(..., "--papers", help="papers.yaml"),
    cuda: Path = typer.Option(None, help="folder of the same runs' JSONs made on a GPU"),
) -> None:
    """Each published figure beside ours: mean ± std over seeds, with the verdict."""
    from cadenza.io import atomic_path, read_json
    from cadenza.papers import Papers
    from cadenza.papers.table import table

    papers = _loaded(functools.partial(load_yaml_as, cls=Papers), papers_file)
    results = [read_json(p) for p in sorted(runs.glob("*.json"))]
    reruns = [read_json(p) for p in sorted(cuda.glob("*.json"))] if cuda else []
    command = ".venv/bin/dvc repro --glob 'bench/papers/dvc.yaml:run@MODEL-*'"
    with atomic_path(out) as tmp:
        tmp.write_text(table(papers, results, command, reruns))
    typer.echo(out.read_text())


@flow_app.command("run")
def flow_run(
    target: list[str] = typer.Option(
        None, "--target", "-t", help="stages to reproduce (default: all)"
    ),
    experiment: bool = typer.Option(False, help="record the run as a DVC experiment"),
    project: Path = typer.Option(Path("."), help="the DVC project folder"),
) -> None:
    """Reproduce the DAG of dvc.yaml as a Prefect flow, one task per stage."""
    from cadenza.settings import apply_offline_settings

    _check_flow_inputs(project, target or [])
    apply_offline_settings(project)
    from pipeline.flow import reproduce
    from pipeline.prefect_server import prefect_api

    try:
        with prefect_api():
            stages = reproduce(str(project.resolve()), target or [], experiment)
    except KeyboardInterrupt:  # the running stage's processes are stopped by then
        typer.echo(
            "flow run interrupted (Ctrl-C): the running stage was stopped; stages "
            "finished before it are kept",
            err=True,
        )
        raise typer.Exit(130) from None
    if not isinstance(stages, list):  # a Cancelled state: only a deployment's run is superseded
        typer.echo(f"flow run cancelled: {stages.message}", err=True)
        raise typer.Exit(1)
    typer.echo(f"flow finished; stages reproduced or up to date: {', '.join(stages)}")


def _check_flow_inputs(project: Path, targets: list[str]) -> None:
    """The project, its `flow:` params and the targets, checked before a Prefect server
    starts: a typo is one line and exit code 2, not a flow run that fails with a traceback.
    Only `flow:`: the flow runs any DVC project, and its stages validate their own params."""
    from dvc.exceptions import DvcException

    from pipeline.flow_settings import flow_settings
    from pipeline.stages import stage_order

    if not (project / "dvc.yaml").is_file():
        typer.echo(f"error: --project {project}: no dvc.yaml in it", err=True)
        raise typer.Exit(2)
    _loaded(lambda _: flow_settings(str(project)), project / paths.PARAMS)
    if targets:
        try:
            stage_order(str(project), targets)
        except DvcException as err:
            typer.echo(f"error: --target {' '.join(targets)}: {err}", err=True)
            raise typer.Exit(2) from None


@flow_app.command("serve")
def flow_serve(
    cron: str = typer.Option(..., help='when to run, e.g. "0 3 * * *"'),
    timezone: str = typer.Option("UTC", help="the cron's time zone (IANA name)"),
    name: str = typer.Option("scheduled", help="the deployment's name"),
    target: list[str] = typer.Option(
        None, "--target", "-t", help="stages to reproduce (default: all)"
    ),
    experiment: bool = typer.Option(True, help="record each run as an experiment"),
    project: Path = typer.Option(Path("."), help="the DVC project folder"),
) -> None:
    """Serve the flow on a cron schedule until stopped (Ctrl-C / SIGTERM).

    Needs a Prefect server (`prefect server start`, then PREFECT_API_URL): an ephemeral
    one cannot schedule. The schedule stays active when serve stops. One run at a time, in
    the server (the deployment's limit: a run that comes due while one runs waits, ENQUEUE)
    and in this process; of missed runs due at once, only the latest runs (the flow's
    `later_due_run`).
    """
    import os
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from cadenza.settings import apply_offline_settings

    if not os.environ.get("PREFECT_API_URL"):
        typer.echo(
            "error: flow serve needs a Prefect server: run `prefect server start` and "
            "set PREFECT_API_URL=http://127.0.0.1:4200/api",
            err=True,
        )
        raise typer.Exit(2)
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        typer.echo(f"error: --timezone {timezone!r} is not an IANA time zone", err=True)
        raise typer.Exit(2) from None
    _check_flow_inputs(project, target or [])
    apply_offline_settings(project)  # before Prefect is imported: it reads them then
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron

    from pipeline.flow import reproduce

    try:
        schedule = Cron(cron, timezone=timezone)
    except ValueError as err:
        typer.echo(f"error: --cron {cron!r}: {err}", err=True)
        raise typer.Exit(2) from None

    one_at_a_time = ConcurrencyLimitConfig(
        limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
    )
    reproduce.serve(
        name=name,
        schedules=[schedule],
        parameters={
            "project": str(project.resolve()),
            "targets": target or [],
            "experiment": experiment,
        },
        pause_on_shutdown=False,
        global_limit=one_at_a_time,
        limit=1,
    )


@flow_app.command("sweep")
def flow_sweep(
    name: str = typer.Argument(..., help="a sweep of sweeps.yaml"),
    project: Path = typer.Option(Path("."), help="the DVC project (a git repo)"),
) -> None:
    """Run a sweep of sweeps.yaml as a Prefect flow, one task per grid point."""
    from cadenza.settings import apply_offline_settings

    apply_offline_settings(project)
    from pipeline.flow import sweep

    typer.echo(f"sweep finished: {sweep(str(project.resolve()), name)}")


if __name__ == "__main__":
    app()
