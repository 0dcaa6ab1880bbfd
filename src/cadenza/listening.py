"""A blind listening test: make an offline page of shuffled clips, then analyse the answers.

Why: objective metrics are half the judgement. Paper 003 asked 26 listeners to rate samples
from 1 ("completely random noise") through 5 ("musically plausible") to 10 ("composed by a
novice composer"); paper 004 answered yes or no on melody, rhythm, harmony and uniform mood.
`make_test` puts both questionnaires on one HTML page that works from disk, over anonymised
clips (model samples mixed with real test excerpts, in a seeded random order). The key that
maps clips to models is written to a separate file, outside the folder handed to listeners.
The page saves a JSON file that the listener downloads; `analyze` turns those files into
per-model means, yes shares and a test against the real excerpts.
"""

from __future__ import annotations

import html
import json
import logging
import math
import secrets
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from cadenza.audio import read_status
from cadenza.io import atomic_dir, read_json, write_json

log = logging.getLogger(__name__)

FORMAT = "cadenza-listening/1"
# the audio folder of the real test excerpts, and their name in the key; keys and results
# written before the rename say "reference", and name it in their "real" field, which is read
REAL = "real"
SCALE = {
    1: "completely random noise",
    5: "musically plausible",
    10: "composed by a novice composer",
}  # paper 003's anchors
QUESTIONS = {  # paper 004's four yes/no criteria
    "melody": "Melody: does it have a melody you could follow?",
    "rhythm": "Rhythm: does it have a steady, coherent rhythm?",
    "harmony": "Harmony: do the notes sound well together?",
    "mood": "Uniform mood: does it keep one mood throughout?",
}
# paper 003's ratings: 7.0 +- 1.87, 5.3 +- 1.7, 6.2 +- 2.4, so an SD of 2 points
POWER_ASSUMPTIONS = {
    "difference": 1.0,
    "sd": 2.0,
    "alpha": 0.05,
    "power": 0.8,
    "within_listener_correlation": 0.5,
}


# --------------------------------------------------------------------------- make


def _model_folders(audio_root: Path) -> list[str]:
    """The model folders of `audio_root` (everything but the real excerpts), by name."""
    return sorted(
        p.name
        for p in audio_root.iterdir()
        if p.is_dir() and p.name != REAL and not p.name.startswith(".")
    )


def choose_clips(
    audio_root: Path, n: int, n_real: int, models: list[str] | None, rng: np.random.Generator
) -> list[tuple[str, Path]]:
    """(source, audio file) pairs: `n_real` real excerpts and `n - n_real` model samples,
    spread over the models in turn, then shuffled."""
    real = _clips(audio_root / REAL)
    if not real:
        reason = read_status(audio_root / REAL).get("unavailable") or "no clips"
        raise ValueError(f"no real excerpts to play in {audio_root / REAL}: {reason}")
    per_model = {m: _clips(audio_root / m) for m in models or _model_folders(audio_root)}
    if models:  # a name asked for by mistake must not just drop out of the test
        missing = [m for m in models if not per_model[m]]
        if missing:
            rendered = [m for m in _model_folders(audio_root) if _clips(audio_root / m)]
            raise ValueError(
                f"--model {missing[0]}: no rendered samples in {audio_root / missing[0]} "
                f"(rendered: {', '.join(rendered) or 'none'})"
            )
    per_model = {m: rng.permutation(clips).tolist() for m, clips in per_model.items() if clips}
    if not per_model:
        raise ValueError(
            f"no rendered model samples under {audio_root} "
            "(run `dvc repro` with fluidsynth installed)"
        )
    n_real = min(n_real, len(real), n - 1)
    chosen = [(REAL, Path(p)) for p in rng.permutation(real)[:n_real]]
    order = list(rng.permutation(sorted(per_model)))
    while len(chosen) < n and any(per_model.values()):
        for model in order:
            if per_model[model] and len(chosen) < n:
                chosen.append((model, Path(per_model[model].pop(0))))
    if len(chosen) < n:
        log.warning("only %d clips available (asked for %d)", len(chosen), n)
    return [chosen[i] for i in rng.permutation(len(chosen))]


def _clips(folder: Path) -> list[str]:
    return [
        str(folder / name)
        for name in sorted(read_status(folder).get("clips", {}))
        if (folder / name).is_file()
    ]


def make_test(
    audio_root: Path,
    out: Path,
    key_path: Path,
    n: int,
    seed: int,
    n_real: int | None = None,
    models: list[str] | None = None,
) -> dict:
    """Write `out/index.html` and `out/clips/`, and the key to `key_path` (not in `out`)."""
    if key_path.resolve().is_relative_to(out.resolve()):
        raise ValueError(
            f"the key {key_path} must not be inside the test folder {out}: "
            "listeners would see which clip is which"
        )
    rng = np.random.default_rng(seed)
    chosen = choose_clips(
        audio_root, n, n_real if n_real is not None else max(1, n // 3), models, rng
    )
    test_id = secrets.token_hex(4)
    key_clips: dict[str, dict[str, str]] = {}
    key = {"format": FORMAT, "test_id": test_id, "real": REAL, "clips": key_clips}
    with atomic_dir(out) as tmp:
        (tmp / "clips").mkdir()
        clips = []
        for i, (source, audio) in enumerate(chosen, start=1):
            clip_id = f"clip_{i:02d}"
            target = Path("clips") / f"{clip_id}{audio.suffix}"
            shutil.copyfile(audio, tmp / target)
            clips.append((clip_id, target.as_posix()))
            key_clips[clip_id] = {"source": source, "file": str(audio)}
        (tmp / "index.html").write_text(render_page(test_id, clips))
        (tmp / "README.txt").write_text(
            "Open index.html in a web browser (double-click it; no internet needed).\n"
            "Listen to every clip, answer its questions, then press 'Download answers'\n"
            "and send the downloaded JSON file back.\n"
        )
    write_json(key_path, key)
    log.info("listening test %s: %d clips -> %s (key: %s)", test_id, len(clips), out, key_path)
    return key


def render_page(test_id: str, clips: list[tuple[str, str]]) -> str:
    """One self-contained page: inline CSS and script, audio from the relative `clips/`."""
    blocks = []
    for number, (clip_id, src) in enumerate(clips, start=1):
        radios = "".join(
            f'<label title="{html.escape(SCALE.get(v, ""))}"><input type="radio" '
            f'name="{clip_id}-rating" value="{v}">{v}</label>'
            for v in range(1, 11)
        )
        questions = "".join(
            f'<div class="q"><span>{html.escape(text)}</span>'
            + "".join(
                f'<label><input type="radio" name="{clip_id}-{q}" value="{v}">{v}</label>'
                for v in ("yes", "no")
            )
            + "</div>"
            for q, text in QUESTIONS.items()
        )
        blocks.append(
            f'<section class="clip" data-clip="{clip_id}"><h2>Clip {number}</h2>'
            f'<audio controls preload="metadata" src="{html.escape(src)}"></audio>'
            f'<div class="scale"><span>Rating:</span>{radios}</div>{questions}</section>'
        )
    anchors = "; ".join(f"{k} = {html.escape(v)}" for k, v in SCALE.items())
    config = json.dumps(
        {
            "format": FORMAT,
            "test_id": test_id,
            "clips": [c for c, _ in clips],
            "questions": list(QUESTIONS),
        }
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Listening test</title>
<style>
body{{font-family:sans-serif;max-width:820px;margin:2em auto;padding:0 1em;line-height:1.4}}
.clip{{border:1px solid #ccc;border-radius:6px;padding:.5em 1em;margin:1em 0}}
.clip h2{{font-size:1.1em;margin:.3em 0}} audio{{width:100%}}
.scale label,.q label{{margin-right:.6em;white-space:nowrap}} .q span{{margin-right:1em}}
.scale{{margin:.5em 0}} #status{{color:#555}} textarea{{width:100%;height:8em}}
</style></head><body>
<h1>Listening test</h1>
<p>Each clip below is either a piece of real music or a computer-generated sample, in random
order. Listen to each one, then rate it from 1 to 10 ({anchors}) and answer the four yes/no
questions. When you are done, press <b>Download answers</b> and send the file back.</p>
<p><label>Your name or initials: <input id="listener" autocomplete="off"></label></p>
<p id="status">Loading the clips&hellip;</p>
{"".join(blocks)}
<p><button id="download" type="button">Download answers</button> <span id="progress"></span></p>
<details><summary>Answers as text (if the download does not work, copy this)</summary>
<textarea id="answers" readonly></textarea></details>
<pre id="resources" hidden></pre>
<script>
const CONFIG = {config};
function collectAnswers() {{
  const value = (name) => {{
    const el = document.querySelector('input[name="' + name + '"]:checked');
    return el ? el.value : null;
  }};
  const answers = CONFIG.clips.map((clip) => {{
    const row = {{clip: clip}};
    const rating = value(clip + "-rating");
    row.rating = rating === null ? null : Number(rating);
    for (const q of CONFIG.questions) {{
      const v = value(clip + "-" + q);
      row[q] = v === null ? null : v === "yes";
    }}
    return row;
  }});
  return {{format: CONFIG.format, test_id: CONFIG.test_id,
          listener: document.getElementById("listener").value.trim(),
          saved: new Date().toISOString(), answers: answers}};
}}
function update() {{
  const result = collectAnswers();
  const rated = result.answers.filter((a) => a.rating !== null).length;
  document.getElementById("progress").textContent =
    rated + " of " + CONFIG.clips.length + " clips rated";
  document.getElementById("answers").value = JSON.stringify(result, null, 1);
  return result;
}}
document.addEventListener("change", update);
document.getElementById("download").addEventListener("click", () => {{
  const result = update();
  const blob = new Blob([JSON.stringify(result, null, 1)], {{type: "application/json"}});
  const link = document.createElement("a");
  const who = (result.listener || "anonymous").replace(/[^A-Za-z0-9_-]+/g, "_");
  link.href = URL.createObjectURL(blob);
  link.download = "answers_" + CONFIG.test_id + "_" + who + ".json";
  document.body.appendChild(link);
  link.click();
  link.remove();
}});
// tell the listener (and the tests) whether every clip loaded and can be played here
const audios = Array.from(document.querySelectorAll("audio"));
let loaded = 0;
const failed = [];
function report() {{
  const status = document.getElementById("status");
  status.dataset.loaded = loaded;
  status.dataset.failed = failed.length;
  if (failed.length) {{
    status.textContent = "This browser could not play: " + failed.join(", ") +
      ". Try another browser (Firefox or Chrome).";
  }} else if (loaded === audios.length) {{
    status.textContent = "All " + loaded + " clips are ready.";
  }}
  document.getElementById("resources").textContent = JSON.stringify({{
    page: location.href,
    resources: performance.getEntriesByType("resource").map((e) => e.name),
    audio: audios.map((a) => ({{src: a.currentSrc, duration: a.duration}}))}});
}}
audios.forEach((audio, i) => {{
  audio.addEventListener("loadedmetadata", () => {{ loaded += 1; report(); }});
  audio.addEventListener("error", () => {{ failed.push("clip " + (i + 1)); report(); }});
}});
update();
report();
</script>
</body></html>
"""


# --------------------------------------------------------------------------- analyze


def read_answers(files: list[Path], key: dict) -> pd.DataFrame:
    """One row per (listener, clip) with the clip's source from the key."""
    rows = []
    for i, path in enumerate(files):
        data = _json_file(path, "answers file")
        if data.get("format") != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} answers file")
        if data.get("test_id") != key["test_id"]:
            raise ValueError(
                f"{path}: answers to test {data.get('test_id')}, but the key is "
                f"for test {key['test_id']}"
            )
        listener = data.get("listener") or f"listener_{i + 1}"
        for answer in data["answers"]:
            clip = answer["clip"]
            if clip not in key["clips"]:
                raise ValueError(f"{path}: clip {clip} is not in the key")
            rows.append(
                {
                    "listener": f"{i}:{listener}",
                    "clip": clip,
                    "source": key["clips"][clip]["source"],
                    "rating": answer.get("rating"),
                    **{q: answer.get(q) for q in QUESTIONS},
                }
            )
    frame = pd.DataFrame(rows, columns=["listener", "clip", "source", "rating", *QUESTIONS])
    frame["rating"] = pd.to_numeric(frame["rating"], errors="coerce")
    bad = frame.rating.notna() & ~frame.rating.between(1, 10)
    if bad.any():
        raise ValueError(f"ratings outside 1..10: {frame.rating[bad].tolist()}")
    return frame


def summarize(frame: pd.DataFrame, real: str = REAL) -> pd.DataFrame:
    """Per source: rating mean and SD, yes share per question, and the difference from the
    real excerpts with Welch's t-test and the Mann-Whitney U test (two-sided)."""
    real_ratings = frame.loc[frame.source == real, "rating"].dropna().to_numpy(float)
    rows = []
    for source, group in frame.groupby("source", sort=True):
        ratings = group.rating.dropna().to_numpy(float)
        row = {
            "source": source,
            "listeners": group.listener.nunique(),
            "ratings": len(ratings),
            "rating_mean": ratings.mean() if len(ratings) else math.nan,
            "rating_sd": ratings.std(ddof=1) if len(ratings) > 1 else math.nan,
        }
        for q in QUESTIONS:
            answered = group[q].dropna()
            row[f"yes_{q}"] = answered.astype(bool).mean() if len(answered) else math.nan
        row["diff_vs_real"], row["p_welch"], row["p_mannwhitney"] = math.nan, math.nan, math.nan
        if source != real and len(real_ratings) and len(ratings):
            row["diff_vs_real"] = ratings.mean() - real_ratings.mean()
            if len(ratings) > 1 and len(real_ratings) > 1:
                with warnings.catch_warnings():  # all-equal ratings: scipy warns, p is NaN
                    warnings.simplefilter("ignore", RuntimeWarning)
                    row["p_welch"] = float(
                        stats.ttest_ind(ratings, real_ratings, equal_var=False).pvalue
                    )
                row["p_mannwhitney"] = float(
                    stats.mannwhitneyu(ratings, real_ratings, alternative="two-sided").pvalue
                )
        rows.append(row)
    table = pd.DataFrame(rows).set_index("source")
    order = [real] + [s for s in table.index if s != real] if real in table.index else None
    return table.reindex(order) if order else table


def listeners_needed(
    difference: float = 1.0,
    sd: float = 2.0,
    alpha: float = 0.05,
    power: float = 0.8,
    paired_correlation: float | None = None,
) -> int:
    """Smallest number of listeners for a two-sided t-test to detect `difference` rating
    points with the given power, from the exact noncentral t distribution.

    Unpaired (`paired_correlation=None`): listeners per group, each rating one clip kind, as
    in paper 003's comparison of samples. Paired: each listener rates both a model's clip and a
    real clip; the difference of their ratings has SD `sd * sqrt(2 (1 - correlation))`.
    """
    for n in range(2, 100_000):
        if paired_correlation is None:
            df, ncp = 2 * n - 2, difference / sd * math.sqrt(n / 2)
        else:
            sd_diff = sd * math.sqrt(2 * (1 - paired_correlation))
            df, ncp = n - 1, difference / sd_diff * math.sqrt(n)
        critical = stats.t.ppf(1 - alpha / 2, df)
        achieved = stats.nct.sf(critical, df, ncp) + stats.nct.cdf(-critical, df, ncp)
        if achieved >= power:
            return n
    raise ValueError("no sample size below 100000 reaches that power")


def power_analysis() -> dict:
    """How many listeners a 1-point difference needs, under the stated assumptions."""
    a = POWER_ASSUMPTIONS
    unpaired = listeners_needed(a["difference"], a["sd"], a["alpha"], a["power"])
    paired = listeners_needed(
        a["difference"], a["sd"], a["alpha"], a["power"], a["within_listener_correlation"]
    )
    return {**a, "listeners_per_group_unpaired": unpaired, "listeners_paired": paired}


def power_text(power: dict) -> str:
    return (
        f"Power analysis: to detect a difference of {power['difference']:g} point on the "
        f"1-10 scale with a two-sided t-test at alpha = {power['alpha']:g} and power "
        f"{power['power']:g}, assuming a rating SD of {power['sd']:g} (paper 003 reports "
        f"SDs of 1.7-2.4), needs {power['listeners_per_group_unpaired']} listeners per "
        f"group when each listener rates one kind of clip (paper 003 had 26 in all, too "
        f"few to separate its samples), or {power['listeners_paired']} listeners when "
        f"each rates both a model's clips and real clips and their ratings correlate at "
        f"r = {power['within_listener_correlation']:g}."
    )


def _json_file(path: Path, what: str) -> Any:
    """A JSON file the user hands in; missing or not JSON is a ValueError naming it."""
    try:
        return read_json(path)
    except OSError as err:
        raise ValueError(f"{what} {path}: cannot be read: {err.strerror or err}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} {path}: not JSON ({err})") from None


def analyze(answer_files: list[Path], key_path: Path, out: Path) -> dict:
    """Answers + key -> `out` (JSON): the per-source table, the counts and the power
    analysis; the report renders it."""
    key = _json_file(key_path, "key")
    frame = read_answers(answer_files, key)
    if frame.empty:
        raise ValueError("no answers in the given files")
    table = summarize(frame, key.get("real", REAL))
    result = {
        "format": FORMAT,
        "test_id": key["test_id"],
        "n_listeners": len(answer_files),
        "n_answers": int(frame.rating.notna().sum()),
        "real": key.get("real", REAL),
        "table": json.loads(table.reset_index().to_json(orient="records")),
        "power": power_analysis(),
    }
    write_json(out, result)
    return result


COLUMNS = [
    "listeners",
    "ratings",
    "rating_mean",
    "rating_sd",
    *[f"yes_{q}" for q in QUESTIONS],
    "diff_vs_real",
    "p_welch",
    "p_mannwhitney",
]


def results_table(result: dict) -> pd.DataFrame:
    """The analysed table back as a frame (sources as rows, columns in reading order), for
    the report and the CLI."""
    return pd.DataFrame(result["table"]).set_index("source").reindex(columns=COLUMNS)
