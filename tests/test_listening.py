"""The blind listening test: the page (in real headless Chromium, from a file:// URL), the
key, and the analysis of answers."""

from __future__ import annotations

import html
import json
import math
import re
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from cadenza.audio import find_synth, render_folders
from cadenza.config import ListenParams
from cadenza.io import read_json, write_json
from cadenza.listening import (
    FORMAT,
    QUESTIONS,
    REAL,
    analyze,
    listeners_needed,
    make_test,
    power_analysis,
)
from cadenza.testing.browser import CHROMIUM, headless_dom
from cadenza.testing.checkout import ROOT
from cadenza.testing.corpora import write_score

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt install chromium; CI installs it)"
)
MODELS = ["model_a", "model_b"]


def _tone(path: Path, hz: float, seconds: float = 1.5, rate: int = 8000) -> None:
    """A real (if plain) WAV clip, for when no synthesizer is installed."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())


@pytest.fixture(scope="module")
def audio_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/audio as the render stage leaves it: FluidSynth's OGG clips where it is
    installed (as in CI), else WAV tones with the same render.json layout. Rendered once:
    the tests only read it (make_test copies the clips out)."""
    tmp_path = tmp_path_factory.mktemp("audio_root")
    root = tmp_path / "audio"
    folders = {}
    for k, name in enumerate([REAL, *MODELS]):
        for i in range(4):
            write_score(
                tmp_path / "midi" / name / f"{name}_{i}.mid",
                [[(float(b), 1.0, 60 + k + i + b % 5) for b in range(4)]],
            )
        folders[name] = tmp_path / "midi" / name
    if not isinstance(find_synth(ListenParams()), str):
        render_folders(folders, root, ListenParams(clip_seconds=2.0))
        return root
    for k, name in enumerate([REAL, *MODELS]):
        clips = {}
        for i in range(4):
            _tone(root / name / f"{name}_{i}.wav", 220 * (k + 1) + 20 * i)
            clips[f"{name}_{i}.wav"] = {"midi": f"{name}_{i}.mid", "seconds": 1.5}
        write_json(root / name / "render.json", {"clips": clips, "unavailable": None})
    return root


def test_make_writes_an_anonymous_shuffled_page_and_keeps_the_key_out(tmp_path, audio_root):
    out, key_path = tmp_path / "test", tmp_path / "key.json"
    key = make_test(audio_root, out, key_path, n=6, seed=3, n_real=2)
    clips = sorted(p.name for p in (out / "clips").iterdir())
    assert [Path(c).stem for c in clips] == [f"clip_{i:02d}" for i in range(1, 7)]
    sources = [v["source"] for v in key["clips"].values()]
    assert sources.count(REAL) == 2 and set(sources) == {REAL, *MODELS}
    assert read_json(key_path) == key and not list(out.rglob("*key*"))
    page = (out / "index.html").read_text()
    for secret in [*MODELS, "_0.", "render.json", key_path.name]:  # names, files
        assert secret not in page, secret
    # the real clips' name is a word of the instructions ("real music"), and only there
    assert page.count(REAL) == page.count("real music") == 1
    assert not re.search(r"(?:https?:)?//[a-z]", page), "a remote reference"
    assert page.count("<audio") == 6 and page.count('type="radio"') == 6 * (10 + 2 * 4)
    for q in QUESTIONS:
        assert f'name="clip_01-{q}"' in page
    # the copied clip is the key's file, byte for byte
    first = key["clips"]["clip_01"]["file"]
    assert (out / "clips" / clips[0]).read_bytes() == Path(first).read_bytes()
    # another seed, another order
    other = make_test(audio_root, tmp_path / "t2", tmp_path / "k2.json", n=6, seed=4, n_real=2)
    assert [v["file"] for v in other["clips"].values()] != [
        v["file"] for v in key["clips"].values()
    ]


def test_make_refuses_a_key_inside_the_folder(tmp_path, audio_root):
    with pytest.raises(ValueError, match="must not be inside"):
        make_test(audio_root, tmp_path / "t", tmp_path / "t" / "key.json", n=4, seed=0)


def _chromium_dom(page: Path, tmp: Path, netlog: Path) -> str:
    """Open a page from its file:// URL in headless Chromium; the DOM after its scripts."""
    return headless_dom(
        page, tmp / "profile", f"--log-net-log={netlog}", budget_ms=8000, timeout_s=120
    )


def _page_requests(netlog: Path) -> list[str]:
    """URLs of the network requests that a page (not the browser itself) started: Chromium
    marks its own background requests with the initiator 'not an origin'."""
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [
        e["params"]["url"]
        for e in log["events"]
        if e["type"] == start
        and "url" in e.get("params", {})
        and e["params"].get("initiator") != "not an origin"
    ]


@needs_chromium
def test_the_netlog_check_catches_a_page_that_loads_remote_files(tmp_path):
    """The control for the next test: a page with remote references is caught."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<img src="https://example.com/x.png"><script src="http://example.org/a.js"></script>'
    )
    _chromium_dom(page, tmp_path, tmp_path / "net.json")
    assert set(_page_requests(tmp_path / "net.json")) == {
        "https://example.com/x.png",
        "http://example.org/a.js",
    }


@needs_chromium
def test_page_opens_from_disk_in_chromium_and_loads_only_local_files(tmp_path, audio_root):
    out = tmp_path / "test"
    make_test(audio_root, out, tmp_path / "key.json", n=6, seed=1)
    dom = _chromium_dom(out / "index.html", tmp_path, tmp_path / "net.json")
    status = re.search(r'<p id="status" data-loaded="(\d+)" data-failed="(\d+)">', dom)
    assert status, dom[:2000]
    assert status.groups() == ("6", "0")  # every clip loaded and decoded
    resources = json.loads(
        html.unescape(re.search(r'<pre id="resources"[^>]*>(.*?)</pre>', dom, re.S)[1])
    )
    assert resources["page"] == (out / "index.html").resolve().as_uri()
    folder = (out / "clips").resolve().as_uri()
    for audio in resources["audio"]:
        assert audio["src"].startswith(folder + "/") and audio["duration"] > 1.0, audio
    for url in resources["resources"]:  # images, scripts, styles, fetches: none expected
        assert url.startswith(out.resolve().as_uri()), url
    assert _page_requests(tmp_path / "net.json") == []


@needs_chromium
def test_answers_saved_by_the_page_analyse_to_what_was_clicked(tmp_path, audio_root):
    """The page's own script builds the answers: a harness clicks the radios as a listener
    would (8 for real clips, 4 for model clips) and copies what the page would download."""
    out = tmp_path / "test"
    key = make_test(audio_root, out, tmp_path / "key.json", n=6, seed=2, n_real=2)
    ratings = {c: 8 if v["source"] == REAL else 4 for c, v in key["clips"].items()}
    harness = f"""<script>
const want = {json.dumps(ratings)};
for (const [clip, r] of Object.entries(want)) {{
  document.querySelector(`input[name="${{clip}}-rating"][value="${{r}}"]`).click();
  document.querySelector(`input[name="${{clip}}-melody"][value="${{r > 5 ? "yes" : "no"}}"]`)
    .click();
}}
document.getElementById("listener").value = "harness";
const pre = document.createElement("pre");
pre.id = "harness";
pre.textContent = JSON.stringify(update());
document.body.appendChild(pre);
</script></body>"""
    page = (out / "index.html").read_text().replace("</body>", harness)
    (out / "harness.html").write_text(page)
    dom = _chromium_dom(out / "harness.html", tmp_path, tmp_path / "net.json")
    saved = json.loads(html.unescape(re.search(r'<pre id="harness">(.*?)</pre>', dom, re.S)[1]))
    assert saved["format"] == FORMAT and saved["test_id"] == key["test_id"]
    assert saved["listener"] == "harness" and len(saved["answers"]) == 6
    write_json(tmp_path / "answers" / "a.json", saved)
    result = analyze(
        [tmp_path / "answers" / "a.json"], tmp_path / "key.json", tmp_path / "result.json"
    )
    table = {row["source"]: row for row in result["table"]}
    assert table[REAL]["rating_mean"] == 8 and table[REAL]["yes_melody"] == 1.0
    for model in {v["source"] for v in key["clips"].values()} - {REAL}:
        assert table[model]["rating_mean"] == 4 and table[model]["yes_melody"] == 0.0
        assert table[model]["diff_vs_real"] == -4
        assert table[model]["yes_rhythm"] is None  # nobody answered it


def _answers(test_id: str, listener: str, rows: list[tuple[str, int, bool]]) -> dict:
    return {
        "format": FORMAT,
        "test_id": test_id,
        "listener": listener,
        "saved": "now",
        "answers": [
            {"clip": c, "rating": r, "melody": yes, "rhythm": yes, "harmony": None, "mood": not yes}
            for c, r, yes in rows
        ],
    }


def test_synthetic_answers_analyse_to_the_expected_means(tmp_path):
    key = {
        "format": FORMAT,
        "test_id": "t1",
        "real": REAL,
        "clips": {
            "clip_01": {"source": REAL, "file": "x"},
            "clip_02": {"source": REAL, "file": "x"},
            "clip_03": {"source": "good", "file": "x"},
            "clip_04": {"source": "bad", "file": "x"},
        },
    }
    write_json(tmp_path / "key.json", key)
    real, good, bad = [], [], []
    files = []
    for i in range(10):  # ten listeners
        r = [7 + i % 3, 8 - i % 2]  # real: 7..9 and 7..8
        g, b = 7 + (i + 1) % 3, 2 + i % 2
        real += r
        good.append(g)
        bad.append(b)
        rows = [
            ("clip_01", r[0], True),
            ("clip_02", r[1], True),
            ("clip_03", g, i < 5),
            ("clip_04", b, False),
        ]
        write_json(tmp_path / "answers" / f"{i}.json", _answers("t1", f"L{i}", rows))
        files.append(tmp_path / "answers" / f"{i}.json")
    result = analyze(files, tmp_path / "key.json", tmp_path / "out" / "listening.json")
    assert read_json(tmp_path / "out" / "listening.json") == result
    assert result["n_listeners"] == 10 and result["n_answers"] == 40
    table = {row["source"]: row for row in result["table"]}
    assert [row["source"] for row in result["table"]][0] == REAL
    for name, values in ((REAL, real), ("good", good), ("bad", bad)):
        assert table[name]["rating_mean"] == pytest.approx(np.mean(values))
        assert table[name]["rating_sd"] == pytest.approx(np.std(values, ddof=1))
        assert table[name]["ratings"] == len(values)
        assert table[name]["listeners"] == 10
    assert table[REAL]["yes_melody"] == 1.0 and table[REAL]["yes_mood"] == 0.0
    assert table["good"]["yes_melody"] == 0.5 and table["bad"]["yes_rhythm"] == 0.0
    assert table["good"]["yes_harmony"] is None
    welch = stats.ttest_ind(bad, real, equal_var=False).pvalue
    assert table["bad"]["p_welch"] == pytest.approx(welch) and welch < 1e-6
    assert table["bad"]["p_mannwhitney"] < 0.001
    assert table["good"]["p_welch"] > 0.2  # good is heard as real
    assert table["bad"]["diff_vs_real"] == pytest.approx(np.mean(bad) - np.mean(real))
    assert table[REAL]["p_welch"] is None  # no test of the real clips against themselves


def test_a_key_written_before_the_rename_still_analyses(tmp_path):
    """Keys made before the real excerpts' folder was renamed from "reference" to "real"
    name it in their "real" field: their real clips stay the real ones."""
    clips = {
        "clip_01": {"source": "reference", "file": "x"},
        "clip_02": {"source": "m", "file": "x"},
    }
    write_json(
        tmp_path / "key.json",
        {"format": FORMAT, "test_id": "t1", "real": "reference", "clips": clips},
    )
    write_json(
        tmp_path / "a.json", _answers("t1", "L", [("clip_01", 8, True), ("clip_02", 5, True)])
    )
    result = analyze([tmp_path / "a.json"], tmp_path / "key.json", tmp_path / "r.json")
    table = {row["source"]: row for row in result["table"]}
    assert result["real"] == "reference" and table["m"]["diff_vs_real"] == -3


def test_analyze_refuses_answers_to_another_test(tmp_path):
    write_json(
        tmp_path / "key.json",
        {
            "format": FORMAT,
            "test_id": "t1",
            "real": REAL,
            "clips": {"clip_01": {"source": REAL, "file": "x"}},
        },
    )
    write_json(tmp_path / "a.json", _answers("t2", "L", [("clip_01", 5, True)]))
    with pytest.raises(ValueError, match="answers to test t2"):
        analyze([tmp_path / "a.json"], tmp_path / "key.json", tmp_path / "r.json")
    write_json(tmp_path / "b.json", _answers("t1", "L", [("clip_01", 11, True)]))
    with pytest.raises(ValueError, match="outside 1..10"):
        analyze([tmp_path / "b.json"], tmp_path / "key.json", tmp_path / "r.json")


def test_power_analysis_matches_the_normal_approximation():
    # n per group ~ 2 (z_{1-a/2} + z_{power})^2 sd^2 / d^2 = 62.8; the t distribution adds ~1
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    approx = 2 * z**2 * 2.0**2 / 1.0**2
    n = listeners_needed(1.0, 2.0, 0.05, 0.8)
    assert math.ceil(approx) <= n <= math.ceil(approx) + 2 and n == 64
    # paired, r = 0.5: the difference has SD 2, so n ~ z^2 * 4 = 31.4, plus the t correction
    assert listeners_needed(1.0, 2.0, 0.05, 0.8, paired_correlation=0.5) == 34
    assert listeners_needed(1.0, 2.0, 0.05, 0.9) > n > listeners_needed(2.0, 2.0, 0.05, 0.8)
    power = power_analysis()
    assert power["listeners_per_group_unpaired"] == 64 and power["sd"] == 2.0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--n", "6", "--n-real", "-2"], "--n-real -2: must be in [1, --n - 1]"),
        (["--n", "6", "--n-real", "0"], "--n-real 0: must be in [1, --n - 1]"),
        (["--n", "6", "--n-real", "6"], "--n-real 6: must be in [1, --n - 1]"),
        (["--n", "6", "--seed", "-5"], "--seed -5: must be >= 0"),
        (["--n", "6", "-m", MODELS[0], "-m", "nosuch"], "--model nosuch: no rendered samples in"),
    ],
)
def test_make_refuses_options_it_cannot_honour(tmp_path, audio_root, args, says):
    from typer.testing import CliRunner

    from cadenza.cli import app

    argv = ["listening-test", "make", "--audio", str(audio_root), "--out", str(tmp_path / "t")]
    result = CliRunner().invoke(app, [*argv, "--key", str(tmp_path / "k.json"), *args])
    assert result.exit_code == 2 and says in result.output
    assert not (tmp_path / "t").exists()


def test_cli_make_then_analyze(tmp_path, audio_root):
    def cadenza(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "cadenza.cli", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    out, key = tmp_path / "lt", tmp_path / "key.json"
    proc = cadenza(
        "listening-test",
        "make",
        "--n",
        "5",
        "--audio",
        str(audio_root),
        "--out",
        str(out),
        "--key",
        str(key),
        "--seed",
        "7",
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "index.html").exists() and len(list((out / "clips").iterdir())) == 5
    made = read_json(key)
    rows = [(c, 9 if v["source"] == REAL else 3, True) for c, v in made["clips"].items()]
    write_json(tmp_path / "answers" / "x.json", _answers(made["test_id"], "x", rows))
    proc = cadenza(
        "listening-test",
        "analyze",
        str(tmp_path / "answers" / "x.json"),
        "--key",
        str(key),
        "--out",
        str(tmp_path / "listening.json"),
    )
    assert proc.returncode == 0, proc.stderr
    assert f"| {REAL}" in proc.stdout and "64 listeners per group" in proc.stdout
    proc = cadenza(
        "listening-test",
        "make",
        "--n",
        "5",
        "--audio",
        str(tmp_path / "none"),
        "--out",
        str(tmp_path / "x"),
        "--key",
        str(tmp_path / "k.json"),
    )
    assert proc.returncode == 2 and "no real excerpts" in proc.stderr


def test_the_report_shows_the_analysed_table(tmp_path):
    from cadenza.report import build_report

    key = {
        "format": FORMAT,
        "test_id": "t1",
        "real": REAL,
        "clips": {
            "clip_01": {"source": REAL, "file": "x"},
            "clip_02": {"source": "m", "file": "x"},
        },
    }
    write_json(tmp_path / "key.json", key)
    for i, (r, m) in enumerate([(8, 3), (9, 4), (7, 2)]):
        write_json(
            tmp_path / f"{i}.json",
            _answers("t1", f"L{i}", [("clip_01", r, True), ("clip_02", m, False)]),
        )
    analyze(
        [tmp_path / f"{i}.json" for i in range(3)],
        tmp_path / "key.json",
        tmp_path / "listening.json",
    )
    write_json(tmp_path / "metrics" / "m.json", {"tonal_distance": 1.0, "n_pieces": 2})
    (tmp_path / "train").mkdir()
    (tmp_path / "gen" / "m").mkdir(parents=True)
    out = tmp_path / "reports"
    build_report(
        tmp_path / "metrics",
        tmp_path / "train",
        tmp_path / "gen",
        out / "report.md",
        out / "index.html",
        out / "m.csv",
        out / "plots",
        listening=tmp_path / "listening.json",
    )
    md = (out / "report.md").read_text()
    section = md.split("## Listening test")[1].split("\n## ")[0]
    assert "3 listener(s), 6 rating(s)" in section and "64 listeners per group" in section
    header, _, *lines = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("|")
    ]
    rows = {cells[0]: dict(zip(header[1:], cells[1:], strict=True)) for cells in lines}
    assert header[1:5] == ["listeners", "ratings", "rating_mean", "rating_sd"]
    assert rows[REAL]["rating_mean"] == "8.000" and rows["m"]["rating_mean"] == "3.000"
    assert rows[REAL]["rating_sd"] == "1.000" and rows["m"]["yes_melody"] == "0.000"
    assert rows["m"]["diff_vs_real"] == "-5.000" and rows[REAL]["diff_vs_real"] == "-"
    assert float(rows["m"]["p_welch"]) < 0.01


def test_analyze_names_a_missing_or_broken_file(tmp_path):
    from typer.testing import CliRunner

    from cadenza.cli import app

    broken = tmp_path / "answers_1.json"
    broken.write_text("{not json")
    runner = CliRunner()
    missing_key = runner.invoke(
        app, ["listening-test", "analyze", str(broken), "--key", str(tmp_path / "none.json")]
    )
    assert missing_key.exit_code == 2
    assert f"error: key {tmp_path / 'none.json'}: cannot be read" in missing_key.output
    write_json(tmp_path / "key.json", {"test_id": "t", "clips": {}})
    bad = runner.invoke(
        app, ["listening-test", "analyze", str(broken), "--key", str(tmp_path / "key.json")]
    )
    assert bad.exit_code == 2 and f"error: answers file {broken}: not JSON" in bad.output
