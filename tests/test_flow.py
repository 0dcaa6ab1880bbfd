"""Prefect against a real server: a flow run's artifact, `cadenza flow serve`'s cron schedule,
the prefect.yaml deployment run by a real worker (one run at a time, missed runs caught up
by the latest only), the failure webhook, and the GPU concurrency limit.

The server is `prefect server start` on 127.0.0.1, started here and stopped at the end; every
process these tests start is stopped by them too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from cadenza.testing.checkout import ROOT

from .test_flow_nights import HANG, dvc_project, lock_is_free
from .test_pipeline import _env, make_project, run

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API URL of a fresh Prefect server on loopback."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    env = _env(home)
    env.update(
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        # a run queued behind the deployment's limit retries after 1 s, not 30
        PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS="1",
    )
    env.pop("PREFECT_API_URL", None)
    url = f"http://127.0.0.1:{port}/api"
    with _started(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        home,
        env,
        home / "server.log",
    ):
        _wait_for(
            lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200,
            180,
            "prefect server start",
            home / "server.log",
        )
        yield url


@contextlib.contextmanager
def _started(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> Iterator[None]:
    """A background process, logging to `log`, stopped (SIGTERM, then SIGKILL) at exit."""
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _wait_for(ready, timeout: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if result := ready():
                return result
        except httpx.HTTPError:
            pass
        time.sleep(1)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise AssertionError(f"{what}: not ready after {timeout} s\n{tail}")


def _client_env(project: Path, url: str) -> dict[str, str]:
    env = _env(project)
    env["PREFECT_API_URL"] = url
    return env


def _post(url: str, path: str, body: dict) -> list[dict]:
    response = httpx.post(f"{url}{path}", json=body, timeout=10)
    response.raise_for_status()
    return response.json()


def _deployment(url: str, name: str) -> dict | None:
    found = _post(url, "/deployments/filter", {"deployments": {"name": {"any_": [name]}}})
    return found[0] if found else None


def test_flow_run_reproduces_the_dag_and_leaves_a_metrics_artifact(server, tmp_path):
    project = make_project(tmp_path / "project", models=["unigram", "chord_lstm"])
    env = _client_env(project, server)
    env.update(
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    # a git repo, so that there is a HEAD to diff against and experiments can be recorded
    for cmd in (
        ["git", "init", "-q"],
        [sys.executable, "-m", "dvc", "config", "core.no_scm", "false"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "init"],
    ):
        subprocess.run(cmd, cwd=project, env=env, check=True)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cadenza.cli",
            "flow",
            "run",
            "--project",
            str(project),
            "--experiment",
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    finished = next(line for line in out.splitlines() if line.startswith("flow finished"))
    assert "train@chord_lstm" in finished and finished.endswith("report")
    assert "Running stage 'train@chord_lstm'" in out  # DVC's own output, in the task log
    assert (project / "reports" / "metrics" / "chord_lstm.json").exists()
    artifacts = _post(
        server, "/artifacts/filter", {"artifacts": {"key": {"any_": ["cadenza-metrics"]}}}
    )
    assert len(artifacts) == 1
    markdown = artifacts[0]["data"]
    assert "- ran (" in markdown and "train@chord_lstm" in markdown
    # HEAD has no metrics: every one is new, so changed
    assert "## Metrics changed since HEAD" in markdown
    assert "| reports/metrics/chord_lstm.json | nll | - |" in markdown
    assert "unigram" in markdown and "reference" in markdown
    exps = subprocess.run(
        [sys.executable, "-m", "dvc", "exp", "list", "--name-only"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert exps.stdout.split(), "the run was not recorded as a DVC experiment"


def test_serve_registers_a_cron_deployment_that_schedules_runs(server, tmp_path):
    project = make_project(tmp_path / "project")
    env = _client_env(project, server)
    log = tmp_path / "serve.log"
    with _started(
        [
            sys.executable,
            "-m",
            "cadenza.cli",
            "flow",
            "serve",
            "--cron",
            "0 3 * * *",
            "--timezone",
            "Europe/Paris",
            "--name",
            "nightly-test",
            "--project",
            str(project),
        ],
        project,
        env,
        log,
    ):
        deployment = _wait_for(lambda: _deployment(server, "nightly-test"), 120, "flow serve", log)
        schedule = deployment["schedules"][0]["schedule"]
        assert (schedule["cron"], schedule["timezone"]) == ("0 3 * * *", "Europe/Paris")
        runs = _wait_for(
            lambda: _post(
                server,
                "/flow_runs/filter",
                {
                    "deployments": {"id": {"any_": [deployment["id"]]}},
                    "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
                },
            ),
            60,
            "scheduled runs",
            log,
        )
        for run in runs:
            start = datetime.fromisoformat(run["expected_start_time"])
            assert start.astimezone(ZoneInfo("Europe/Paris")).hour == 3
        assert runs[0]["parameters"]["project"] == str(project)
    deployment = _deployment(server, "nightly-test")
    assert deployment["paused"] is False  # pause_on_shutdown=False
    assert deployment["global_concurrency_limit"]["limit"] == 1
    assert deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"


def test_serve_without_a_server_says_what_to_do(tmp_path):
    env = _env(tmp_path)
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "cadenza.cli", "flow", "serve", "--cron", "0 3 * * *"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "prefect server start" in proc.stderr


@pytest.mark.parametrize(
    ("args", "edit", "says"),
    [
        (["run", "--target", "nosuch"], None, "error: --target nosuch: Stage 'nosuch' not found"),
        (["run", "--project", "nowhere"], None, "error: --project nowhere: no dvc.yaml in it"),
        (
            ["run"],
            {"lock_wait_s": -5},
            "error: bad param: flow.lock_wait_s: must be in [0, ",
        ),
        (["serve", "--cron", "not a cron"], None, "error: --cron 'not a cron': Invalid cron"),
    ],
)
def test_flow_commands_refuse_a_typo_in_one_line_before_any_server(tmp_path, args, edit, says):
    """No Prefect server starts: each refusal comes first, with exit code 2."""
    project = tmp_path / "p"
    project.mkdir()
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / ".dvc", project / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    if edit:
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["flow"].update(edit)
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(_env(tmp_path), PREFECT_API_URL="http://127.0.0.1:9/api")
    proc = subprocess.run(
        [sys.executable, "-m", "cadenza.cli", "flow", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(says), proc.stderr
    assert "Traceback" not in proc.stderr


# the worker's toy project: `data` runs the bare `cadenza` command; `score` writes a metric
# (committed as nll 2, written as 1.5) and a cached output; sub/dvc.yaml, like bench/bl, has
# a stage no run makes
TOY_STAGES = {
    "data": {"cmd": "cadenza --help > data.txt", "outs": ["data.txt"]},
    "score": {
        "cmd": "python -c \"import json; json.dump({'nll': 1.5, 'n_pieces': 3}, "
        "open('m.json', 'w')); open('score.txt', 'w').write('1')\"",
        "deps": ["data.txt"],
        "outs": ["score.txt"],
        "metrics": [{"m.json": {"cache": False}}],
    },
}


def _toy_deployable(project: Path) -> Path:
    """A git-committed DVC project with prefect.yaml and the flow's code, as a fresh clone."""
    dvc_project(project, TOY_STAGES, scm=True)
    (project / "sub").mkdir()
    (project / "sub" / "dvc.yaml").write_text(
        "stages:\n  never:\n    cmd: echo > never.txt\n    outs: [never.txt]\n"
    )
    (project / "m.json").write_text(json.dumps({"nll": 2.0, "n_pieces": 3}))
    shutil.copy(ROOT / "prefect.yaml", project)
    shutil.copytree(
        ROOT / "pipeline", project / "pipeline", ignore=shutil.ignore_patterns("__pycache__")
    )
    for cmd in (["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=project, check=True)
    return project


def _trigger(url: str, deployment: str, body: dict) -> str:
    """Create a run of `deployment`; retried while the server answers 503 (SQLite busy with
    its own services on this small machine)."""
    for _ in range(10):
        response = httpx.post(
            f"{url}/deployments/{deployment}/create_flow_run", json=body, timeout=10
        )
        if response.status_code != 503:
            break
        time.sleep(1)
    response.raise_for_status()
    return response.json()["id"]


def _final_state(url: str, run_id: str, log: Path) -> dict:
    def ended() -> dict | None:
        state = httpx.get(f"{url}/flow_runs/{run_id}", timeout=10).json()["state"]
        return state if state["type"] in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED") else None

    return _wait_for(ended, 180, f"flow run {run_id}", log)


def _scheduled_at(when: datetime) -> dict:
    return {"state": {"type": "SCHEDULED", "state_details": {"scheduled_time": when.isoformat()}}}


def test_a_worker_with_a_bare_path_runs_the_deployment_one_run_at_a_time(server, tmp_path):
    """The real path: `prefect deploy --all` of prefect.yaml, then `prefect worker start` with
    PATH lacking the virtualenv, then two missed runs due at once: the older skips itself as
    superseded, the latest reproduces the DAG (its stages call a bare `cadenza`), records an
    experiment (with a benchmark-like stage never made) and leaves an artifact with only the
    changed metric. (`--target` runs' experiments: tests/test_flow_nights.py.)"""
    project = _toy_deployable(tmp_path / "project")
    env = _client_env(project, server)
    env["CADENZA_PROJECT"] = str(project)
    prefect = [sys.executable, "-m", "prefect", "--no-prompt"]
    for cmd in (["work-pool", "create", "cadenza", "--type", "process"], ["deploy", "--all"]):
        proc = subprocess.run(
            prefect + cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    deployment = _deployment(server, "nightly")
    assert deployment["work_pool_name"] == "cadenza"
    assert deployment["schedules"][0]["schedule"]["cron"] == "0 3 * * *"
    assert deployment["parameters"] == {"project": str(project), "experiment": True}
    assert deployment["global_concurrency_limit"]["limit"] == 1
    assert deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    worker_env = dict(env, PATH="/usr/bin:/bin", PREFECT_WORKER_QUERY_SECONDS="1")
    log = tmp_path / "worker.log"
    with _started(
        prefect[:-1] + ["worker", "start", "--pool", "cadenza"], project, worker_env, log
    ):
        now = datetime.now(UTC)
        older = _trigger(server, deployment["id"], _scheduled_at(now - timedelta(seconds=2)))
        latest = _trigger(server, deployment["id"], _scheduled_at(now - timedelta(seconds=1)))
        skipped, done = _final_state(server, older, log), _final_state(server, latest, log)
    assert done["type"] == "COMPLETED", log.read_text()[-4000:]
    assert skipped["type"] == "CANCELLED" and "superseded" in skipped["message"], skipped
    exps = run(["dvc", "exp", "list", "--name-only"], project).stdout.split()
    assert len(exps) == 1, exps  # the latest run's, not the skipped one's
    artifact = _post(
        server,
        "/artifacts/filter",
        {"artifacts": {"key": {"any_": ["cadenza-metrics"]}, "flow_run_id": {"any_": [latest]}}},
    )[0]["data"]
    assert "- ran (2): data, score" in artifact, artifact
    assert "Usage: cadenza" in (project / "data.txt").read_text()
    assert "| m.json | nll | 2 | 1.5 | -0.5 | lower | better |" in artifact, artifact
    assert "n_pieces" not in artifact
    assert not (project / "sub" / "never.txt").exists()


class _Receiver(BaseHTTPRequestHandler):
    """Records every POSTed JSON body in `bodies` (set on the class per test)."""

    bodies: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        length = int(self.headers.get("Content-Length", 0))
        self.bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def _webhook() -> Iterator[tuple[str, list[dict]]]:
    """A real HTTP receiver on 127.0.0.1: its URL and the bodies it got."""
    handler = type("Receiver", (_Receiver,), {"bodies": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", handler.bodies
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_stage_past_its_timeout_fails_the_run_and_posts_to_the_webhook(server, tmp_path):
    """`flow.timeout_s` stops a hung stage (its process is gone, DVC's lock free), the run
    fails, and the failure reaches the webhook set once in params.yaml's `flow:`."""
    project = dvc_project(tmp_path / "project", {"hang": {"cmd": HANG, "outs": ["x.txt"]}})
    with _webhook() as (url, bodies):
        (project / "params.yaml").write_text(
            yaml.safe_dump({"flow": {"timeout_s": {"default": 3}, "notify_url": url}})
        )
        env = _client_env(project, server)
        env.pop("CADENZA_NOTIFY_URL", None)
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "cadenza.cli", "flow", "run", "--project", str(project)],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        elapsed = time.monotonic() - started
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "ran past its timeout of 3 s" in out, out[-3000:]
    assert elapsed < 120, out[-3000:]
    assert len(bodies) == 1, out[-3000:]
    assert bodies[0]["state"] == "Failed" and "timeout of 3 s" in bodies[0]["text"], bodies
    assert bodies[0]["project"] == str(project)
    pid = int((project / "hang.pid").read_text())
    assert not Path(f"/proc/{pid}").exists()
    assert lock_is_free(project)


def test_gpu_concurrency_limit_is_created_once(server, tmp_path):
    code = (
        "from pipeline.flow import ensure_concurrency_limit as e; "
        "e('gpu-test', 1); e('gpu-test', 4)"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_client_env(tmp_path, server),
        check=True,
        timeout=120,
    )
    limit = httpx.get(f"{server}/concurrency_limits/tag/gpu-test", timeout=10).json()
    assert limit["concurrency_limit"] == 1  # a user's (or the first) setting is kept


# a stage that records its pid, then runs far longer than the test waits
SLOW_STAGE = (
    "python -c \"import os, time; open('stage.pid', 'w').write(str(os.getpid())); "
    "time.sleep(300); open('done.txt', 'w').write('done')\""
)


def _session_processes(sid: int) -> list[str]:
    """Live (not zombie) processes of session `sid`, as 'pid command' lines."""
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            text = stat_file.read_text()
            fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append(f"{stat_file.parent.name} {text[: text.rindex(')') + 1]}")
    return found


def test_ctrl_c_stops_the_flow_its_stage_and_the_temporary_server(tmp_path):
    """SIGINT to `cadenza flow run`'s process group, as a terminal's Ctrl-C sends it, while a
    stage runs: exit 130 within seconds with a line that says so, and no process of the run
    left, neither the stage (in its own process group) nor the ephemeral Prefect server."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "dvc.yaml").write_text(
        f"stages:\n  wait:\n    cmd: {json.dumps(SLOW_STAGE)}\n    outs:\n      - done.txt\n"
    )
    run(["dvc", "init", "--no-scm", "-q"], project)
    env = _env(project)
    env.pop("PREFECT_API_URL", None)
    log = tmp_path / "flow.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cadenza.cli", "flow", "run", "--project", str(project)],
            cwd=project,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        pid_file = project / "stage.pid"
        _wait_for(lambda: pid_file.exists() and pid_file.read_text(), 120, "the stage", log)
        stage_pid = int(pid_file.read_text())
        assert _session_processes(proc.pid)  # the run, its server and the stage are up
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(30)
        waited = time.monotonic() - sent
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    out = log.read_text()
    assert code == 130, out[-3000:]
    assert waited < 15, out[-3000:]
    assert "flow run interrupted (Ctrl-C)" in out
    time.sleep(0.5)  # an exiting process may still be listed for an instant
    left = _session_processes(proc.pid)
    assert not [line for line in left if line.startswith(f"{stage_pid} ")], left
    assert left == [], out[-3000:]  # nor DVC, nor the server
    assert not (project / "done.txt").exists()
    assert lock_is_free(project)  # and DVC's lock is free for the next run
