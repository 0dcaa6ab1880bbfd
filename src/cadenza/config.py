"""Typed, validated params: `params.yaml` -> frozen dataclasses -> plain functions.

Why this module exists: a typo in `params.yaml` (`epohcs: 3`) or a wrong type (`lr: "fast"`)
must stop the run *before* any work starts, with a message that names the key. So every
section is a frozen dataclass, and `from_dict` rejects unknown keys, missing keys, wrong types
and out-of-range values, always reporting the dotted path (`models.chord_lstm.train.lr`).

Each stage loads the whole file, so whichever stage DVC runs first fails fast on any bad key.
The checking machinery (`from_dict`, `check`, `ParamsError`) is `cadenza.validation`; a model's
`net` is checked against its family's `Net` from `cadenza.models.specs`, so loading the params
imports no torch.
"""

from __future__ import annotations

import dataclasses
import re
import string
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import yaml

from cadenza.models.specs import SPECS
from cadenza.paths import PARAMS
from cadenza.validation import ParamsError, RangeError, check, from_dict

T = TypeVar("T")

# --------------------------------------------------------------------------- bounds
# Upper bounds on every number that sizes memory, a loop or an array dtype. Each is far above
# what any paper here used, and low enough that a typo (`1000000000`) stops at `cadenza
# check` with the bound in the message instead of failing hours later or silently wrapping.

INT32_MAX = 2**31 - 1  # counts and caps that end up in int32 arrays (shards, token ids)
SEED_LIMIT = 2**32  # numpy.random.seed takes 0 <= seed < 2**32
MAX_STEPS_PER_BEAT = 96  # grid resolution: shard starts are int32, so a 22-million-beat piece
#                          still fits; MuseGAN's 24 is the finest grid any model here uses
MAX_MIN_NOTES = 10**6  # the longest piece in any corpus here has ~50,000 notes
MAX_WORKERS = 256  # processes: each holds a Python interpreter and a batch of pieces
MAX_RETRIES = 10  # the backoff doubles each retry: the 10th already waits 512 s
MAX_DELAY_S = 3600.0  # a crawler pause above an hour per request never finishes a crawl
MAX_POLYPHONY = 128  # a chord has at most the 128 MIDI pitches
MAX_TICKS_PER_BEAT = 32767  # a MIDI file's division is 15 bits
MAX_DELTA_TICKS = 0x0FFFFFFF  # a MIDI delta time is a 4-byte variable-length number
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 65_536
MAX_SEQ_LEN = 100_000  # training windows, prompts and the transformer's context
MAX_BATCH_UNITS = 2**24  # batch_size * seq_len: positions held at once (x hidden activations)
MAX_LR = 10.0  # every optimizer here diverges long before this
MAX_SAMPLES = 10_000  # generated MIDI files per model
MAX_GENERATE_LENGTH = 1_000_000  # units sampled one by one after the prompt
MIN_TEMPERATURE = 1e-3  # logits / temperature must stay finite in float32; use greedy_prob
MIN_BPM, MAX_BPM = 4.0, 1000.0  # MIDI stores 60e6 / bpm in 24 bits: below ~3.6 bpm it wraps
MAX_CLIP_SECONDS = 600.0  # an audio render is held in memory: 10 min of 96 kHz stereo float
MAX_EXCERPTS = 1000
# a model family's `net` (the Net dataclasses in cadenza.models.specs): by field name. A width
# of 16384 keeps one weight matrix at 2**28 floats (1 GiB); an int field not named here gets
# MAX_NET_WIDTH too, so a new family is bounded from its first day.
MAX_NET_WIDTH = 16_384
NET_INT_MAX: dict[str, int] = {
    "steps_per_beat": MAX_STEPS_PER_BEAT,
    "pitches": 128,
    "layers": 64,
    "made_layers": 64,
    "note_layers": 64,
    "generator_layers": 64,
    "heads": 256,
    "max_len": MAX_SEQ_LEN,
    "ff": 4 * MAX_NET_WIDTH,
}
HEX_DIGITS = frozenset(string.hexdigits)  # 0-9, a-f, A-F


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class SourceParams:
    """One entry of `sources:`; the key is a name in the source registry."""

    METADATA_FIELDS: typing.ClassVar[tuple[str, ...]] = (
        "file",
        "title",
        "composer",
        "year",
        "split",
    )  # what `columns` may map

    limit: int = 0  # keep the first N pieces (0 = all); for quick runs and tests
    workers: int = 2  # processes used for conversion
    url: str = ""  # mirror, file:// URL or local path overriding the registry's address
    sha256: str = ""  # expected checksum of what `url` serves ("" = the registry's)
    subset: str = ""  # keep pieces under this path only, e.g. Essen "europa/deutschl/erk"
    max_extract_mb: int = 0  # refuse archives unpacking past this; 0 = sized from the registry
    delay_s: float = 1.0  # crawler politeness: pause between network requests
    retries: int = 5  # download retries on transient errors, with exponential backoff
    # midi_dir only: a CSV describing the files ("" = none), a path relative to the folder
    # (`url`) or absolute, and which of its columns hold our fields (unnamed: same name)
    metadata: str = ""
    columns: dict[str, str] = field(default_factory=dict)  # field -> column, e.g. file: path

    def __post_init__(self) -> None:
        check(self.limit >= 0, "limit", "must be >= 0")
        check(self.limit <= INT32_MAX, "limit", f"must be <= {INT32_MAX} (0 = all)")
        unknown = sorted(set(self.columns) - set(self.METADATA_FIELDS))
        check(
            not unknown,
            "columns",
            f"unknown field {unknown[0] if unknown else ''!r} "
            f"(allowed: {', '.join(self.METADATA_FIELDS)})",
        )
        check(all(self.columns.values()), "columns", "a column name must not be empty")
        check(self.workers >= 1, "workers", "must be >= 1")
        check(self.workers <= MAX_WORKERS, "workers", f"must be <= {MAX_WORKERS}")
        check(
            self.max_extract_mb >= 0,
            "max_extract_mb",
            "must be >= 1 (MB), or 0 to size the cap from the registry",
        )
        check(
            self.max_extract_mb <= 1_000_000,
            "max_extract_mb",  # 1 TB: 500x LPD's 1.9 GB
            "must be <= 1000000 (MB, 1 TB)",
        )
        check(self.delay_s >= 0, "delay_s", "must be >= 0")
        check(self.delay_s <= MAX_DELAY_S, "delay_s", f"must be <= {MAX_DELAY_S:g} seconds")
        check(self.retries >= 0, "retries", "must be >= 0")
        check(
            self.retries <= MAX_RETRIES,
            "retries",
            f"must be <= {MAX_RETRIES} (the backoff doubles on each retry)",
        )
        _check_sha256(self.sha256, "sha256")


@dataclass(frozen=True)
class PrepareParams:
    steps_per_beat: int = 4  # piano-roll grid; 4 = a 16th note
    valid_fraction: float = 0.1  # used only for sources without an official split
    test_fraction: float = 0.1
    transpose: bool = True  # to C major / A minor
    min_notes: int = 8  # pieces with fewer notes are rejected as empty

    def __post_init__(self) -> None:
        _check_steps_per_beat(self.steps_per_beat, "steps_per_beat")
        check(0 <= self.valid_fraction < 1, "valid_fraction", "must be in [0, 1)")
        check(0 < self.test_fraction < 1, "test_fraction", "must be in (0, 1)")
        check(
            self.valid_fraction + self.test_fraction < 1,
            "test_fraction",
            "valid_fraction + test_fraction must be < 1",
        )
        check(self.min_notes >= 1, "min_notes", "must be >= 1")
        check(
            self.min_notes <= MAX_MIN_NOTES,
            "min_notes",
            f"must be <= {MAX_MIN_NOTES} (no piece has more notes: all would be rejected)",
        )


@dataclass(frozen=True)
class RunnerParams:
    """Where prepare's per-file parse + encode runs (`cadenza.parallel`)."""

    kind: Literal["process", "serial", "dask"] = "process"
    workers: int = 0  # processes (or local Dask workers); 0 = one per core
    dask_address: str = ""  # a running Dask scheduler, e.g. tcp://10.0.0.5:8786; "" = local
    dask_processes: bool = True  # local Dask cluster: worker processes, or threads

    def __post_init__(self) -> None:
        check(self.workers >= 0, "workers", "must be >= 0 (0 = one per core)")
        check(self.workers <= MAX_WORKERS, "workers", f"must be <= {MAX_WORKERS}")
        check(  # else prepare starts its work and only then fails on the address
            not self.dask_address or DASK_ADDRESS.fullmatch(self.dask_address) is not None,
            "dask_address",
            f"{self.dask_address!r} is no scheduler address; expected [protocol://]host:port, "
            "e.g. tcp://10.0.0.5:8786",
        )


# a stage's default timeout by kind (its `cadenza` sub-command); `default` for every other kind
DEFAULT_STAGE_TIMEOUTS_S: dict[str, float] = {
    "fetch": 4 * 3600.0,  # several downloads, each with a 30-minute deadline, and extraction
    "prepare": 4 * 3600.0,
    "train": 48 * 3600.0,  # the `full` profile of one model on one GPU
    "benchmark": 48 * 3600.0,  # `cadenza benchmark bl`: roll_nade on Nottingham takes ~4 h
    "default": 4 * 3600.0,  # generate, evaluate, reference, excerpts, render, report, ...
}
MAX_STAGE_TIMEOUT_S = 30 * 24 * 3600.0  # a month: longer is a typo, not a training
# the `cadenza` sub-commands a DVC stage can run, its kind (pipeline/stages.py): a timeout key
# must name one, or `default`, else a misspelt key would leave its stages on the default
STAGE_COMMANDS = frozenset(
    {"fetch", "prepare", "train", "generate", "evaluate", "reference", "excerpts", "render"}
    | {"embeddings", "report", "compare", "plots", "sweep", "benchmark", "paper"}
    | {"listening-test"}
)


@dataclass(frozen=True)
class FlowParams:
    """How the Prefect flow (`pipeline/flow.py`) runs the DAG unattended: a timeout per stage
    kind, after which the stage is stopped and the run fails (`timeout_s`, merged over
    DEFAULT_STAGE_TIMEOUTS_S); retries of fetch stages, the only ones that meet transient
    (network) errors; how long a stage waits for DVC's lock held by another DVC process; and
    the webhook that hears of a failed run ("" = none; CADENZA_NOTIFY_URL wins)."""

    timeout_s: dict[str, float] = field(default_factory=dict)
    fetch_retries: int = 3
    lock_wait_s: float = 600.0
    notify_url: str = ""

    def __post_init__(self) -> None:
        for kind, seconds in self.timeout_s.items():
            check(
                kind in STAGE_COMMANDS | {"default"},
                f"timeout_s.{kind}",
                f"unknown stage kind (one of: {', '.join(sorted(STAGE_COMMANDS | {'default'}))})",
            )
            check(
                0 < seconds <= MAX_STAGE_TIMEOUT_S,
                f"timeout_s.{kind}",
                f"must be in (0, {MAX_STAGE_TIMEOUT_S:g}] seconds",
            )
        check(
            0 <= self.fetch_retries <= MAX_RETRIES,
            "fetch_retries",
            f"must be in [0, {MAX_RETRIES}]",
        )
        check(
            0 <= self.lock_wait_s <= MAX_STAGE_TIMEOUT_S,
            "lock_wait_s",
            f"must be in [0, {MAX_STAGE_TIMEOUT_S:g}] seconds",
        )
        check(
            self.notify_url == "" or self.notify_url.startswith(("http://", "https://")),
            "notify_url",
            "must be empty or an http:// or https:// URL",
        )

    def timeout_for(self, kind: str) -> float:
        """The timeout of a stage of `kind`: set for it, else its default, else `default`."""
        merged = {**DEFAULT_STAGE_TIMEOUTS_S, **self.timeout_s}
        return merged.get(kind, merged["default"])


# a Dask scheduler's address: [protocol://]host:port, an IPv6 host in brackets
DASK_ADDRESS = re.compile(r"([a-z]+://)?(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):[0-9]{1,5}")
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")

# the token fields that only some schemes read (the others apply to every scheme)
_SCHEME_FIELDS: dict[str, tuple[str, ...]] = {
    "steps_per_beat": ("chord", "pitch_next", "melody", "lowest"),  # the grid schemes
    "max_polyphony": ("chord",),
    "velocity_bins": ("event",),
    "next_after": ("pitch_next",),
    "ticks_per_beat": ("midi_message",),
    "max_delta_ticks": ("midi_message",),
    "midi_tracks": ("midi_message",),
}


@dataclass(frozen=True)
class TokenParams:
    """How notes become tokens (see `cadenza.representations.tokens`)."""

    scheme: Literal["chord", "pitch_next", "melody", "lowest", "event", "midi_message"]
    steps_per_beat: int = 2  # paper 003 samples at eighth notes (grid schemes only)
    max_polyphony: int = 4  # paper 003: above this, keep 3 notes chosen at random
    min_count: int = 1  # rarer tokens become <unk>
    # keep the most frequent tokens only (the specials and `song_gap`'s `/` included); 0 = all
    max_vocab: int = 0
    velocity_bins: int = 32  # event scheme: Performance RNN's velocity resolution
    # pitch_next: `<next>` after every grid step ("step") or, as paper 002 did, after each note
    # or chord event ("event": the notes of one music21 Note/Chord, same onset and end step)
    next_after: Literal["step", "event"] = "step"
    # midi_message (paper 003's MIDI tokens "note-on-60-0"): MIDI ticks per beat, the largest
    # delta one token carries (longer ones are split off as `wait-<max_delta_ticks>` tokens),
    # and whether tracks are merged into one timeline or concatenated end to end (the paper;
    # needs the prepared `track` column)
    ticks_per_beat: int = 480
    max_delta_ticks: int = 1920  # 4 beats at 480 ticks per beat
    midi_tracks: Literal["merge", "concat"] = "merge"
    # paper 001: drop a piece with a note or rest of a duration (beats) this list does not
    # accept (tied notes and rests are read as sums; rules in tokens.py); [] = keep all
    durations: list[float] = field(default_factory=list)
    # pieces joined by this many `/` tokens instead of one `<eos>` (paper 001's code: 64, its
    # sequence length, so that no window holds two songs); 0 = one `<eos>`
    song_gap: int = 0

    def __post_init__(self) -> None:
        _check_steps_per_beat(self.steps_per_beat, "steps_per_beat")
        check(0 <= self.song_gap <= MAX_SEQ_LEN, "song_gap", f"must be in [0, {MAX_SEQ_LEN}]")
        check(self.max_polyphony >= 1, "max_polyphony", "must be >= 1")
        check(
            self.max_polyphony <= MAX_POLYPHONY,
            "max_polyphony",
            f"must be <= {MAX_POLYPHONY} (the MIDI pitches)",
        )
        check(self.min_count >= 1, "min_count", "must be >= 1")
        check(self.min_count <= INT32_MAX, "min_count", f"must be <= {INT32_MAX}")
        check(
            self.max_vocab == 0 or self.max_vocab >= 4,
            "max_vocab",
            "must be 0 (no limit) or >= 4 (the specials and one token)",
        )
        check(
            self.max_vocab <= INT32_MAX,
            "max_vocab",
            f"must be <= {INT32_MAX} (token ids are int32)",
        )
        check(1 <= self.velocity_bins <= 128, "velocity_bins", "must be in [1, 128]")
        check(
            self.next_after in ("step", "event"),
            "next_after",
            f"must be one of ['step', 'event'], got {self.next_after!r}",
        )
        check(self.ticks_per_beat >= 1, "ticks_per_beat", "must be >= 1")
        check(
            self.ticks_per_beat <= MAX_TICKS_PER_BEAT,
            "ticks_per_beat",
            f"must be <= {MAX_TICKS_PER_BEAT} (a MIDI division is 15 bits)",
        )
        check(self.max_delta_ticks >= 1, "max_delta_ticks", "must be >= 1")
        check(
            self.max_delta_ticks <= MAX_DELTA_TICKS,
            "max_delta_ticks",
            f"must be <= {MAX_DELTA_TICKS} (the largest MIDI delta time)",
        )
        check(
            self.midi_tracks in ("merge", "concat"),
            "midi_tracks",
            f"must be one of ['merge', 'concat'], got {self.midi_tracks!r}",
        )
        # a field another scheme reads would be silently ignored: refuse it unless it is left
        # at its default
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name, schemes in _SCHEME_FIELDS.items():
            check(
                self.scheme in schemes or getattr(self, name) == defaults[name],
                name,
                f"applies to the {' / '.join(schemes)} scheme{'s' if len(schemes) > 1 else ''} "
                f"only, not {self.scheme}",
            )
        check(all(d > 0 for d in self.durations), "durations", "every duration must be > 0")
        check(
            len(set(self.durations)) == len(self.durations),
            "durations",
            "must not repeat a duration",
        )


@dataclass(frozen=True)
class TrainParams:
    epochs: int = 5  # 0 = no training: the untrained and unigram baselines
    batch_size: int = 50
    seq_len: int = 50
    lr: float = 0.002
    optimizer: Literal["adam", "sgd", "adagrad"] = "adam"  # paper 002 compares the three
    schedule: Literal["plateau", "cyclic", "constant"] = "plateau"
    lr_min: float = 1e-4  # cyclic: the triangle runs between lr_min and lr (paper 002)
    cycle_steps: int = 100  # cyclic: steps from lr_min up to lr
    clip: float = 5.0  # max gradient norm; 0 = no clipping (papers that did not clip)
    patience: int = 3  # early stopping: epochs without a better `monitor` loss; 0 = never stop
    # the loss early stopping and the kept checkpoint watch: "valid", or "train" as Keras'
    # EarlyStopping(monitor='loss') in paper 004's tutorial
    monitor: Literal["valid", "train"] = "valid"
    plateau_factor: float = 0.5  # LR annealing on a valid-loss plateau
    plateau_patience: int = 0  # epochs without a better valid loss before it (0: each one)
    max_batches: int = 0  # cap per epoch (0 = whole epoch); keeps `make run` short
    max_valid_units: int = 0  # cap on each epoch's valid pass (0 = the whole valid split)
    compile: bool = False  # torch.compile the model (on a GPU only)
    max_pieces: int = 0  # train on the first N training pieces only (paper 004's sweep)
    # training windows start every `stride` steps: 0 = seq_len (each step a target once per
    # epoch); 1 = every window, as Keras' epochs in papers 001 and 004 (seq_len x the updates)
    stride: int = 0
    # which positions of a training window are targets: "all" (next-token at every step), or
    # "last", one target per window as Keras fits paper 001's many-to-one LSTM (token
    # families only); the valid loss and scoring then take every window's last symbol
    # (stride 1, whatever `stride` trains on), each from a fresh state
    targets: Literal["all", "last"] = "all"

    def __post_init__(self) -> None:
        check(self.epochs >= 0, "epochs", "must be >= 0")
        check(self.epochs <= MAX_EPOCHS, "epochs", f"must be <= {MAX_EPOCHS}")
        for name in ("batch_size", "seq_len", "cycle_steps"):
            check(getattr(self, name) >= 1, name, "must be >= 1")
        check(self.batch_size <= MAX_BATCH_SIZE, "batch_size", f"must be <= {MAX_BATCH_SIZE}")
        check(self.seq_len <= MAX_SEQ_LEN, "seq_len", f"must be <= {MAX_SEQ_LEN}")
        check(
            self.batch_size * self.seq_len <= MAX_BATCH_UNITS,
            "seq_len",
            f"batch_size * seq_len must be <= {MAX_BATCH_UNITS} (positions in one batch)",
        )
        check(self.cycle_steps <= INT32_MAX, "cycle_steps", f"must be <= {INT32_MAX}")
        check(0 <= self.stride <= self.seq_len, "stride", "must be in [0, seq_len] (0 = seq_len)")
        check(self.lr > 0, "lr", "must be > 0")
        check(self.lr <= MAX_LR, "lr", f"must be <= {MAX_LR:g}")
        check(self.lr_min > 0, "lr_min", "must be > 0")
        check(  # only the cyclic schedule reads it: another keeps any lr
            self.schedule != "cyclic" or self.lr_min <= self.lr,
            "lr_min",
            "must be <= lr (the cyclic schedule runs from lr_min up to lr)",
        )
        check(self.patience >= 0, "patience", "must be >= 0 (0 = no early stopping)")
        check(self.patience <= MAX_EPOCHS, "patience", f"must be <= {MAX_EPOCHS}")
        check(self.clip >= 0, "clip", "must be >= 0 (0 = no clipping)")
        check(0 < self.plateau_factor < 1, "plateau_factor", "must be in (0, 1)")
        check(
            0 <= self.plateau_patience <= MAX_EPOCHS,
            "plateau_patience",
            f"must be in [0, {MAX_EPOCHS}]",
        )
        for name in ("max_batches", "max_valid_units", "max_pieces"):
            check(getattr(self, name) >= 0, name, "must be >= 0")
            check(getattr(self, name) <= INT32_MAX, name, f"must be <= {INT32_MAX} (0 = no cap)")


@dataclass(frozen=True)
class ModelParams:
    """One entry of `models:`; the key becomes the stage name `train@<key>`.

    `family` names a model family (`cadenza.models.specs.SPECS`); `net` is validated against
    that family's own `Net` dataclass there (the paper's values as defaults), without importing
    the family's code. `tokens` is required by the families that read token streams.
    """

    family: str
    tokens: TokenParams | None = None
    net: Any = field(default_factory=dict)  # a mapping in params.yaml; then the family's Net
    train: TrainParams = field(default_factory=TrainParams)
    # train and evaluate on these sources when the prepared data has any of them (paper 001:
    # Essen), else on everything
    prefer_sources: list[str] = field(default_factory=list)

    @property
    def token_params(self) -> TokenParams:
        """`tokens`, which validation requires of every family that reads tokens."""
        if self.tokens is None:
            raise ValueError(f"family {self.family} reads no tokens: it has no token scheme")
        return self.tokens

    def __post_init__(self) -> None:
        check(
            self.family in SPECS,
            "family",
            f"unknown model family {self.family!r} (known: {', '.join(sorted(SPECS))})",
        )
        spec = SPECS[self.family]
        check(
            spec.kind != "tokens" or self.tokens is not None,
            "tokens",
            f"family {self.family} reads tokens: give a token scheme",
        )
        check(  # else a `tokens:` block meant for another model would be silently ignored
            spec.kind == "tokens" or self.tokens is None,
            "tokens",
            f"family {self.family} reads {spec.kind}, not tokens: remove the block",
        )
        check(
            self.train.targets == "all" or spec.kind == "tokens",
            "train.targets",
            f"'last' needs a family that reads tokens; {self.family} reads {spec.kind}",
        )
        is_net = dataclasses.is_dataclass(self.net) and not isinstance(self.net, type)
        net = dataclasses.asdict(self.net) if is_net else self.net
        if isinstance(net, dict):  # YAML keys may be numbers: name them as written
            net = {str(k): v for k, v in net.items()}
        try:
            object.__setattr__(self, "net", from_dict(spec.net, net, "net"))
        except ParamsError as err:
            name, _, message = str(err).partition(": ")
            raise RangeError(name, message) from None
        _check_net_bounds(self.net)


def saved_model_params(saved: object) -> dict | None:
    """Model params saved by an earlier run (a resume file's), as today's schema reads them:
    a key added since, whose default computes what the older code did, does not make the
    older run one of "other params"; params today's schema refuses match nothing."""
    try:
        return dataclasses.asdict(from_dict(ModelParams, saved, "saved params"))
    except (ParamsError, TypeError):
        return None


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
        for name in (
            "max_epochs",
            "max_batches",
            "max_valid_units",
            "max_test_units",
            "max_generate_length",
        ):
            check(getattr(self, name) >= 0, name, "must be >= 0")
            check(getattr(self, name) <= INT32_MAX, name, f"must be <= {INT32_MAX} (0 = no cap)")

    def apply(self, train: TrainParams) -> TrainParams:
        epochs = min(train.epochs, self.max_epochs) if self.max_epochs else train.epochs
        return dataclasses.replace(
            train,
            epochs=epochs,
            max_batches=_min_cap(train.max_batches, self.max_batches),
            max_valid_units=_min_cap(train.max_valid_units, self.max_valid_units),
        )

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
    greedy_prob: float = 0.0  # paper 003: share of steps that take the argmax
    bpm: float = 100.0  # tempo written into the MIDI files

    def __post_init__(self) -> None:
        for name in ("n_samples", "prompt_len", "length"):
            check(getattr(self, name) >= 1, name, "must be >= 1")
        check(self.n_samples <= MAX_SAMPLES, "n_samples", f"must be <= {MAX_SAMPLES}")
        check(self.prompt_len <= MAX_SEQ_LEN, "prompt_len", f"must be <= {MAX_SEQ_LEN}")
        check(self.length <= MAX_GENERATE_LENGTH, "length", f"must be <= {MAX_GENERATE_LENGTH}")
        check(self.temperature > 0, "temperature", "must be > 0")
        check(
            self.temperature >= MIN_TEMPERATURE,
            "temperature",
            f"must be >= {MIN_TEMPERATURE:g} (for argmax sampling use greedy_prob: 1)",
        )
        check(self.top_k >= 0, "top_k", "must be >= 0")
        check(self.top_k <= INT32_MAX, "top_k", f"must be <= {INT32_MAX} (0 = no top-k)")
        check(0 <= self.greedy_prob <= 1, "greedy_prob", "must be in [0, 1]")
        check(self.bpm > 0, "bpm", "must be > 0")
        check(
            MIN_BPM <= self.bpm <= MAX_BPM,
            "bpm",
            f"must be in [{MIN_BPM:g}, {MAX_BPM:g}] (a MIDI tempo is 24 bits)",
        )


@dataclass(frozen=True)
class EvaluateParams:
    steps_per_beat: int = 24  # MuseGAN's resolution; QN's 3 steps = a 32nd note
    qualified_min_steps: int = 3

    def __post_init__(self) -> None:
        _check_steps_per_beat(self.steps_per_beat, "steps_per_beat")
        check(self.qualified_min_steps >= 1, "qualified_min_steps", "must be >= 1")
        check(
            self.qualified_min_steps <= INT32_MAX, "qualified_min_steps", f"must be <= {INT32_MAX}"
        )


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
        check(8000 <= self.sample_rate <= 96000, "sample_rate", "must be in [8000, 96000]")
        check(0 < self.gain <= 10, "gain", "must be in (0, 10]")
        check(self.clip_seconds > 0, "clip_seconds", "must be > 0")
        check(
            self.clip_seconds <= MAX_CLIP_SECONDS,
            "clip_seconds",
            f"must be <= {MAX_CLIP_SECONDS:g} (renders are held in memory)",
        )
        check(self.n_excerpts >= 1, "n_excerpts", "must be >= 1")
        check(self.n_excerpts <= MAX_EXCERPTS, "n_excerpts", f"must be <= {MAX_EXCERPTS}")


@dataclass(frozen=True)
class Params:
    seed: int
    sources: dict[str, SourceParams]
    models: dict[str, ModelParams]
    profile: str = "quick"
    profiles: dict[str, ProfileParams] = field(
        default_factory=lambda: {"quick": ProfileParams(), "full": ProfileParams()}
    )
    prepare: PrepareParams = field(default_factory=PrepareParams)
    runner: RunnerParams = field(default_factory=RunnerParams)
    generate: GenerateParams = field(default_factory=GenerateParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    listen: ListenParams = field(default_factory=ListenParams)
    flow: FlowParams = field(default_factory=FlowParams)

    def __post_init__(self) -> None:
        check(
            0 <= self.seed < SEED_LIMIT,
            "seed",
            f"must be in [0, 2**32 - 1 = {SEED_LIMIT - 1}] (numpy's seed range)",
        )
        check(len(self.sources) > 0, "sources", "select at least one source")
        check(len(self.models) > 0, "models", "list at least one model")
        for name in self.models:  # it names stages, folders and shell words: nothing else
            check(
                MODEL_NAME.fullmatch(name) is not None,
                f"models.{name}",
                "a model name is letters, digits, '_' and '-', starting with a letter or digit",
            )
        check(
            self.profile in self.profiles,
            "profile",
            f"must be one of the profiles: {', '.join(self.profiles)}",
        )

    @property
    def caps(self) -> ProfileParams:
        """The selected profile's caps."""
        return self.profiles[self.profile]

    def model(self, name: str) -> ModelParams:
        """Model `name` with the selected profile's caps applied to its training."""
        mp = self.models[name]
        return dataclasses.replace(mp, train=self.caps.apply(mp.train))


# --------------------------------------------------------------------------- loading


class _DuplicateKeyError(yaml.constructor.ConstructorError):
    def __init__(self, key: Any, first: yaml.Mark, again: yaml.Mark) -> None:
        super().__init__(None, None, f"duplicate key {key!r}", again)
        self.key, self.first, self.again = key, first, again


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key repeated in one mapping is an error.

    Why: plain `yaml.safe_load` keeps the last value silently, so a second `lr:` further down
    a section overrides the first without a word. Merge keys (`<<: *base`) may still be
    overridden, as YAML intends.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: SafeLoader's own error names it
                continue
            if first is not key_node.start_mark:
                raise _DuplicateKeyError(key, first, key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: Path | str) -> Any:
    """Parse a YAML file safely, refusing duplicate keys; `ParamsError` names the file, the
    problem and its line. Use it for every YAML the user writes (params, sweeps, benchmarks).
    """
    path = Path(path)
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (safe loader)
    except _DuplicateKeyError as err:
        raise ParamsError(
            f"{path}: duplicate key {err.key!r} on line {err.again.line + 1} (first given on "
            f"line {err.first.line + 1}); YAML would silently keep only the last value"
        ) from None
    except yaml.YAMLError as err:  # one line: the problem and where it is
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ParamsError(f"{path}: not valid YAML: {problem}{where}") from err
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ParamsError(f"{path}: unreadable: {err}") from err


def load_yaml_as(path: Path | str, cls: type[T]) -> T:
    """A YAML file the user writes (params, a benchmark's params) as dataclass `cls`, every
    key checked; `ParamsError` names the file's problem or the bad key."""
    return typing.cast(T, from_dict(cls, load_yaml(path) or {}, ""))


def load_params(path: Path | str = PARAMS) -> Params:
    """Read and validate the whole params file; raise `ParamsError` naming the bad key."""
    params = load_yaml_as(path, Params)
    from cadenza.sources.registry import SOURCES  # late import: registry imports nothing back

    for name, given in params.sources.items():
        if name not in SOURCES:
            known = ", ".join(sorted(SOURCES))
            raise ParamsError(f"sources.{name}: unknown source (known: {known})")
        layout = SOURCES[name].layout
        # a built-in layout's ignored settings are refused; a recipe's own layout
        # (docs/extending.md) reads what its code reads
        for option, layouts in _LAYOUT_OPTIONS.items() if layout in _BUILT_IN_LAYOUTS else ():
            if getattr(given, option) != _SOURCE_DEFAULTS[option] and layout not in layouts:
                readers = ", ".join(n for n, s in SOURCES.items() if s.layout in layouts)
                raise ParamsError(
                    f"sources.{name}.{option}: {name} does not read it (only: {readers})"
                )
        if given.columns and not given.metadata:
            raise ParamsError(
                f"sources.{name}.columns: given without sources.{name}.metadata "
                "(the CSV they name columns of)"
            )
        if layout == "midi_dir" and (not given.url or urlsplit(given.url).scheme in _REMOTE):
            raise ParamsError(
                f"sources.{name}.url: {given.url or 'not set'}; expected a local folder of "
                ".mid/.midi files (a path or file:// URL)"
            )
    for name, model in params.models.items():
        for source in model.prefer_sources:
            if source not in SOURCES:
                known = ", ".join(sorted(SOURCES))
                raise ParamsError(
                    f"models.{name}.prefer_sources: unknown source {source!r} (known: {known})"
                )
    return params


_REMOTE = ("http", "https", "ftp")  # URL schemes that name no local folder

# the source params that only some layouts read: set for another, they would be ignored
_DOWNLOADS = ("maestro", "lpd", "essen_kern", "bl_pickle")  # a file fetched by `download`
_LAYOUT_OPTIONS: dict[str, tuple[str, ...]] = {
    "url": (*_DOWNLOADS, "piano_midi_de", "midi_dir"),  # music21's chorales ship with it
    "sha256": _DOWNLOADS,
    "retries": _DOWNLOADS,
    "max_extract_mb": ("maestro", "lpd", "essen_kern"),  # the archives
    "delay_s": ("piano_midi_de",),  # the crawler
    "workers": ("music21_chorales", "essen_kern"),  # music21's conversion pool
    "subset": ("lpd", "essen_kern", "midi_dir"),
    "metadata": ("midi_dir",),
    "columns": ("midi_dir",),
}
_BUILT_IN_LAYOUTS = {"music21_chorales", *(x for ls in _LAYOUT_OPTIONS.values() for x in ls)}
_SOURCE_DEFAULTS = {
    f.name: f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
    for f in dataclasses.fields(SourceParams)
}


def _check_sha256(value: str, name: str) -> None:
    """A checksum is compared as text, so a wrong length or a non-hex digit would only show up
    as a mismatch after the whole download: refuse it here."""
    check(
        value == "" or (len(value) == 64 and set(value) <= HEX_DIGITS),
        name,
        f"must be empty or exactly 64 hex digits (0-9, a-f), got {len(value)} characters"
        + ("" if set(value) <= HEX_DIGITS else " with non-hex ones"),
    )


def _check_steps_per_beat(value: int, name: str) -> None:
    """A grid resolution: step indices are stored as int32, and every roll is steps long."""
    check(value >= 1, name, "must be >= 1")
    check(
        value <= MAX_STEPS_PER_BEAT,
        name,
        f"must be <= {MAX_STEPS_PER_BEAT} (step indices are int32; MuseGAN's grid is 24)",
    )


def _check_net_bounds(net: Any) -> None:
    """Upper bounds on a family's `net` (its Net dataclass checks only the lower ones): a width
    or depth typo would otherwise surface as a torch allocation failure with a traceback."""
    for f in dataclasses.fields(net):
        value = getattr(net, f.name)
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            limit = NET_INT_MAX.get(f.name, MAX_NET_WIDTH)
            check(value <= limit, f"net.{f.name}", f"must be <= {limit}")
        elif f.name == "lr" and isinstance(value, float):
            check(value <= MAX_LR, "net.lr", f"must be <= {MAX_LR:g}")
        elif f.name == "temperature" and isinstance(value, float):
            check(value >= MIN_TEMPERATURE, "net.temperature", f"must be >= {MIN_TEMPERATURE:g}")


def _min_cap(*caps: int) -> int:
    """The tightest of several caps, where 0 means no cap."""
    return min((c for c in caps if c), default=0)
