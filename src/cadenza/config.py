"""Typed, validated params: `params.yaml` -> frozen dataclasses -> plain functions.

Why this module exists: a typo in `params.yaml` (`epohcs: 3`) or a wrong type (`lr: "fast"`)
must stop the run *before* any work starts, with a message that names the key. So every
section is a frozen dataclass, and `from_dict` rejects unknown keys, missing keys, wrong types
and out-of-range values, always reporting the dotted path (`models.chord_lstm.train.lr`).

Each stage loads the whole file, so whichever stage DVC runs first fails fast on any bad key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ParamsError(ValueError):
    """A param is unknown, missing, mistyped or out of range; the message names it."""


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class SourceParams:
    """One entry of `sources:`; the key is a name in the source registry."""

    METADATA_FIELDS: typing.ClassVar[tuple[str, ...]] = ("file", "title", "composer", "year",
                                                         "split")  # what `columns` may map

    limit: int = 0  # keep the first N pieces (0 = all); for quick runs and tests
    workers: int = 2  # processes used for conversion
    url: str = ""  # mirror, file:// URL or local path overriding the registry's address
    sha256: str = ""  # expected checksum of what `url` serves ("" = the registry's)
    subset: str = ""  # keep pieces under this path only, e.g. Essen "europa/deutschl/erk"
    max_extract_mb: int = 20_000  # refuse archives that unpack to more than this
    delay_s: float = 1.0  # crawler politeness: pause between network requests
    retries: int = 5  # download retries on transient errors, with exponential backoff
    # midi_dir only: a CSV describing the files ("" = none), a path relative to the folder
    # (`url`) or absolute, and which of its columns hold our fields (unnamed: same name)
    metadata: str = ""
    columns: dict[str, str] = field(default_factory=dict)  # field -> column, e.g. file: path

    def __post_init__(self) -> None:
        _check(self.limit >= 0, "limit", "must be >= 0")
        unknown = sorted(set(self.columns) - set(self.METADATA_FIELDS))
        _check(not unknown, "columns",
               f"unknown field {unknown[0] if unknown else ''!r} "
               f"(allowed: {', '.join(self.METADATA_FIELDS)})")
        _check(all(self.columns.values()), "columns", "a column name must not be empty")
        _check(self.workers >= 1, "workers", "must be >= 1")
        _check(self.max_extract_mb >= 1, "max_extract_mb", "must be >= 1")
        _check(self.delay_s >= 0, "delay_s", "must be >= 0")
        _check(self.retries >= 0, "retries", "must be >= 0")
        _check(self.sha256 == "" or len(self.sha256) == 64, "sha256",
               "must be empty or 64 hex digits")


@dataclass(frozen=True)
class PrepareParams:
    steps_per_beat: int = 4  # piano-roll grid; 4 = a 16th note
    valid_fraction: float = 0.1  # used only for sources without an official split
    test_fraction: float = 0.1
    transpose: bool = True  # to C major / A minor
    min_notes: int = 8  # pieces with fewer notes are rejected as empty

    def __post_init__(self) -> None:
        _check(self.steps_per_beat >= 1, "steps_per_beat", "must be >= 1")
        _check(0 <= self.valid_fraction < 1, "valid_fraction", "must be in [0, 1)")
        _check(0 < self.test_fraction < 1, "test_fraction", "must be in (0, 1)")
        _check(
            self.valid_fraction + self.test_fraction < 1,
            "test_fraction",
            "valid_fraction + test_fraction must be < 1",
        )
        _check(self.min_notes >= 1, "min_notes", "must be >= 1")


@dataclass(frozen=True)
class RunnerParams:
    """Where prepare's per-file parse + encode runs (`cadenza.prepare.runner`)."""

    kind: Literal["process", "serial", "dask"] = "process"
    workers: int = 0  # processes (or local Dask workers); 0 = one per core
    dask_address: str = ""  # a running Dask scheduler, e.g. tcp://10.0.0.5:8786; "" = local
    dask_processes: bool = True  # local Dask cluster: worker processes, or threads

    def __post_init__(self) -> None:
        _check(self.workers >= 0, "workers", "must be >= 0 (0 = one per core)")


@dataclass(frozen=True)
class TokenParams:
    """How notes become tokens (see `cadenza.representations.tokens`)."""

    scheme: Literal["chord", "pitch_next", "melody", "lowest", "event", "midi_message"]
    steps_per_beat: int = 2  # seed 003 samples at eighth notes (grid schemes only)
    max_polyphony: int = 4  # seed 003: above this, keep 3 notes chosen at random
    min_count: int = 1  # rarer tokens become <unk>
    max_vocab: int = 0  # keep the most frequent tokens only (specials included); 0 = all
    velocity_bins: int = 32  # event scheme: Performance RNN's velocity resolution
    # pitch_next: `<next>` after every grid step ("step") or, as seed 002 did, after each note
    # or chord event ("event": the notes of one music21 Note/Chord, same onset and end step)
    next_after: Literal["step", "event"] = "step"
    # midi_message (seed 003's MIDI tokens "note-on-60-0"): MIDI ticks per beat, the largest
    # delta one token carries (longer ones are split off as `wait-<max_delta_ticks>` tokens),
    # and whether tracks are merged into one timeline or concatenated end to end (the paper;
    # needs the prepared `track` column)
    ticks_per_beat: int = 480
    max_delta_ticks: int = 1920  # 4 beats at 480 ticks per beat
    midi_tracks: Literal["merge", "concat"] = "merge"
    # seed 001: drop a piece with a note or rest of a duration (beats) this list does not
    # accept (tied notes and rests are read as sums; rules in tokens.py); [] = keep all
    durations: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check(self.steps_per_beat >= 1, "steps_per_beat", "must be >= 1")
        _check(self.max_polyphony >= 1, "max_polyphony", "must be >= 1")
        _check(self.min_count >= 1, "min_count", "must be >= 1")
        _check(self.max_vocab == 0 or self.max_vocab >= 4, "max_vocab",
               "must be 0 (no limit) or >= 4 (the specials and one token)")
        _check(1 <= self.velocity_bins <= 128, "velocity_bins", "must be in [1, 128]")
        _check(self.next_after in ("step", "event"), "next_after",
               f"must be one of ['step', 'event'], got {self.next_after!r}")
        _check(self.next_after == "step" or self.scheme == "pitch_next", "next_after",
               "applies to the pitch_next scheme only")
        _check(self.ticks_per_beat >= 1, "ticks_per_beat", "must be >= 1")
        _check(self.max_delta_ticks >= 1, "max_delta_ticks", "must be >= 1")
        _check(self.midi_tracks in ("merge", "concat"), "midi_tracks",
               f"must be one of ['merge', 'concat'], got {self.midi_tracks!r}")
        _check(self.midi_tracks == "merge" or self.scheme == "midi_message", "midi_tracks",
               "applies to the midi_message scheme only")
        _check(all(d > 0 for d in self.durations), "durations", "every duration must be > 0")
        _check(len(set(self.durations)) == len(self.durations), "durations",
               "must not repeat a duration")


@dataclass(frozen=True)
class TrainParams:
    epochs: int = 5  # 0 = no training: the untrained and unigram baselines
    batch_size: int = 50
    seq_len: int = 50
    lr: float = 0.002
    optimizer: Literal["adam", "sgd", "adagrad"] = "adam"  # seed 002 compares the three
    schedule: Literal["plateau", "cyclic", "constant"] = "plateau"
    lr_min: float = 1e-4  # cyclic: the triangle runs between lr_min and lr (seed 002)
    cycle_steps: int = 100  # cyclic: steps from lr_min up to lr
    clip: float = 5.0  # max gradient norm; 0 = no clipping (papers that did not clip)
    patience: int = 3  # early stopping: epochs without a better valid loss; 0 = never stop
    plateau_factor: float = 0.5  # LR annealing on a valid-loss plateau
    max_batches: int = 0  # cap per epoch (0 = whole epoch); keeps `make run` short
    max_valid_units: int = 0  # cap on each epoch's valid pass (0 = the whole valid split)
    compile: bool = False  # torch.compile the model (on a GPU only)
    max_pieces: int = 0  # train on the first N training pieces only (seed 004's sweep)

    def __post_init__(self) -> None:
        _check(self.epochs >= 0, "epochs", "must be >= 0")
        for name in ("batch_size", "seq_len", "cycle_steps"):
            _check(getattr(self, name) >= 1, name, "must be >= 1")
        _check(self.lr > 0, "lr", "must be > 0")
        _check(0 < self.lr_min <= self.lr, "lr_min", "must be in (0, lr]")
        _check(self.patience >= 0, "patience", "must be >= 0 (0 = no early stopping)")
        _check(self.clip >= 0, "clip", "must be >= 0 (0 = no clipping)")
        _check(0 < self.plateau_factor < 1, "plateau_factor", "must be in (0, 1)")
        _check(self.max_batches >= 0, "max_batches", "must be >= 0")
        _check(self.max_valid_units >= 0, "max_valid_units", "must be >= 0")
        _check(self.max_pieces >= 0, "max_pieces", "must be >= 0")


@dataclass(frozen=True)
class ModelParams:
    """One entry of `models:`; the key becomes the stage name `train@<key>`.

    `family` names a file in `cadenza.models`; `net` is validated against that family's own
    `Net` dataclass, so each family keeps its hyper-parameters (with the paper's values as
    defaults) beside its code. `tokens` is required by the families that read token streams.
    """

    family: str
    tokens: TokenParams | None = None
    net: dict[str, Any] = field(default_factory=dict)
    train: TrainParams = field(default_factory=TrainParams)
    # train and evaluate on these sources when the prepared data has any of them (seed 001:
    # Essen), else on everything
    prefer_sources: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        from cadenza.models import FAMILIES  # late: the model files import this module

        _check(self.family in FAMILIES, "family",
               f"unknown model family {self.family!r} (known: {', '.join(sorted(FAMILIES))})")
        family = FAMILIES[self.family]
        _check(family.KIND != "tokens" or self.tokens is not None, "tokens",
               f"family {self.family} reads tokens: give a token scheme")
        net = self.net if isinstance(self.net, dict) else dataclasses.asdict(self.net)
        try:
            object.__setattr__(self, "net", from_dict(family.Net, net, "net"))
        except ParamsError as err:
            name, _, message = str(err).partition(": ")
            raise _RangeError(name, message) from None


@dataclass(frozen=True)
class ProfileParams:
    """Caps that a profile puts on every model's training and evaluation (0 = no cap).

    `quick` keeps the whole DAG to minutes on a CPU, even on MAESTRO: without the evaluation
    caps, one validation pass over MAESTRO's 700,000 valid tokens took 12x an epoch of
    capped training. `full` trains and evaluates the models as their papers did.
    """

    max_epochs: int = 0
    max_batches: int = 0  # training batches per epoch
    max_valid_units: int = 0  # tokens / frames / notes scored in each epoch's valid pass
    max_test_units: int = 0  # teacher-forced test likelihood: units, spread over the pieces
    max_generate_length: int = 0  # caps generate.length (units sampled after the prompt)

    def __post_init__(self) -> None:
        for name in ("max_epochs", "max_batches", "max_valid_units", "max_test_units",
                     "max_generate_length"):
            _check(getattr(self, name) >= 0, name, "must be >= 0")

    def apply(self, train: TrainParams) -> TrainParams:
        epochs = min(train.epochs, self.max_epochs) if self.max_epochs else train.epochs
        return dataclasses.replace(
            train, epochs=epochs, max_batches=_min_cap(train.max_batches, self.max_batches),
            max_valid_units=_min_cap(train.max_valid_units, self.max_valid_units))

    def cap_generate(self, gen: GenerateParams) -> GenerateParams:
        if not self.max_generate_length:
            return gen
        return dataclasses.replace(gen, length=min(gen.length, self.max_generate_length))


@dataclass(frozen=True)
class GenerateParams:
    n_samples: int = 4
    prompt_len: int = 16  # tokens taken from the start of a test piece
    length: int = 256  # tokens generated after the prompt
    temperature: float = 1.0
    top_k: int = 0  # 0 = no top-k filtering
    greedy_prob: float = 0.0  # seed 003: share of steps that take the argmax
    bpm: float = 100.0  # tempo written into the MIDI files

    def __post_init__(self) -> None:
        for name in ("n_samples", "prompt_len", "length"):
            _check(getattr(self, name) >= 1, name, "must be >= 1")
        _check(self.temperature > 0, "temperature", "must be > 0")
        _check(self.top_k >= 0, "top_k", "must be >= 0")
        _check(0 <= self.greedy_prob <= 1, "greedy_prob", "must be in [0, 1]")
        _check(self.bpm > 0, "bpm", "must be > 0")


@dataclass(frozen=True)
class EvaluateParams:
    steps_per_beat: int = 24  # MuseGAN's resolution; QN's 3 steps = a 32nd note
    qualified_min_steps: int = 3

    def __post_init__(self) -> None:
        _check(self.steps_per_beat >= 1, "steps_per_beat", "must be >= 1")
        _check(self.qualified_min_steps >= 1, "qualified_min_steps", "must be >= 1")


@dataclass(frozen=True)
class ListenParams:
    """Audio renders of samples and test excerpts (`cadenza.audio`) and the listening test."""

    soundfont: str = ""  # a General MIDI .sf2 ("" = the first one found in standard places)
    format: Literal["ogg", "wav"] = "ogg"  # ogg falls back to wav where fluidsynth lacks it
    sample_rate: int = 22050
    gain: float = 0.5  # fluidsynth's master gain; higher clips on dense chords
    clip_seconds: float = 15.0  # every sample and excerpt is cut to this length
    n_excerpts: int = 4  # real test-set excerpts rendered beside the samples

    def __post_init__(self) -> None:
        _check(8000 <= self.sample_rate <= 96000, "sample_rate", "must be in [8000, 96000]")
        _check(0 < self.gain <= 10, "gain", "must be in (0, 10]")
        _check(self.clip_seconds > 0, "clip_seconds", "must be > 0")
        _check(self.n_excerpts >= 1, "n_excerpts", "must be >= 1")


@dataclass(frozen=True)
class Params:
    seed: int
    sources: dict[str, SourceParams]
    models: dict[str, ModelParams]
    profile: str = "quick"
    profiles: dict[str, ProfileParams] = field(default_factory=lambda: {
        "quick": ProfileParams(), "full": ProfileParams()})
    prepare: PrepareParams = field(default_factory=PrepareParams)
    runner: RunnerParams = field(default_factory=RunnerParams)
    generate: GenerateParams = field(default_factory=GenerateParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    listen: ListenParams = field(default_factory=ListenParams)

    def __post_init__(self) -> None:
        _check(len(self.sources) > 0, "sources", "select at least one source")
        _check(len(self.models) > 0, "models", "list at least one model")
        _check(self.profile in self.profiles, "profile",
               f"must be one of the profiles: {', '.join(self.profiles)}")

    @property
    def caps(self) -> ProfileParams:
        """The selected profile's caps."""
        return self.profiles[self.profile]

    def model(self, name: str) -> ModelParams:
        """Model `name` with the selected profile's caps applied to its training."""
        mp = self.models[name]
        return dataclasses.replace(mp, train=self.caps.apply(mp.train))


# --------------------------------------------------------------------------- loading


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate the whole params file; raise `ParamsError` naming the bad key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:  # one line: the problem and where it is
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ParamsError(f"{path}: not valid YAML: {problem}{where}") from err
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ParamsError(f"{path}: unreadable: {err}") from err
    params = from_dict(Params, raw, "")
    from cadenza.sources.registry import SOURCES  # late import: registry imports nothing back

    for name in params.sources:
        if name not in SOURCES:
            known = ", ".join(sorted(SOURCES))
            raise ParamsError(f"sources.{name}: unknown source (known: {known})")
    return params


def from_dict(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from `data`, checking keys, types and ranges recursively."""
    if not isinstance(data, dict):
        raise ParamsError(f"{where or 'params'}: expected a mapping, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ParamsError(
            f"{_join(where, unknown[0])}: unknown key (allowed: {', '.join(fields)})"
        )
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        key = _join(where, name)
        if name in data:
            values[name] = _coerce(hints[name], data[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ParamsError(f"{key}: missing required key")
    try:
        return cls(**values)
    except _RangeError as err:
        raise ParamsError(f"{_join(where, err.name)}: {err.message}") from None


def _coerce(hint: Any, value: Any, key: str) -> Any:
    if hint is Any:  # checked later by its owner (ModelParams.net by the family's Net)
        return value
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)
    if origin is list:
        (item_type,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ParamsError(f"{key}: expected a list, got {_show(value)}")
        return [_coerce(item_type, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, item_type = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: expected a mapping, got {_show(value)}")
        return {str(k): _coerce(item_type, v, _join(key, str(k))) for k, v in value.items()}
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ParamsError(f"{key}: must be one of {list(allowed)}, got {_show(value)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _coerce(inner, value, key)
    if hint is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{key}: expected true/false, got {_show(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{key}: expected an integer, got {_show(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamsError(f"{key}: expected a number, got {_show(value)}")
        if not math.isfinite(value):  # .nan / .inf pass every range check silently
            raise ParamsError(f"{key}: expected a finite number, got {_show(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ParamsError(f"{key}: expected a string, got {_show(value)}")
        return value
    raise TypeError(f"{key}: unsupported param type {hint!r}")  # a bug in this module


def _min_cap(*caps: int) -> int:
    """The tightest of several caps, where 0 means no cap."""
    return min((c for c in caps if c), default=0)


class _RangeError(ValueError):
    def __init__(self, name: str, message: str) -> None:
        self.name, self.message = name, message


def _check(ok: bool, name: str, message: str) -> None:
    """Range check used in `__post_init__`; `from_dict` adds the dotted path."""
    if not ok:
        raise _RangeError(name, message)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"
