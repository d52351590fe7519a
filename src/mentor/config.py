"""Configuration: the sections recipes share, TOML presets, `--set key=value` overrides,
and the machinery that builds and checks a recipe's config dataclass (each recipe declares
its own in its module; mentor.recipes picks it by the top-level `recipe` key).

Every other key must be a field of that dataclass (sections are nested dataclasses, and each
recipe declares only the sections it reads), so a typo or a key the recipe would ignore is
an error, never a silent default. Everything is checked at load, before any work: types,
choices (`Literal`), ranges (kept beside each default with `checked`), model names and
option names, and the rules between keys (shared ones here, a recipe's own in its config's
`check`); what depends on the data (a model's option values, a batch larger than the data)
is checked by core.run.preflight before the first training step. Presets are TOML files
shipped in `mentor/presets/`; each opens with a comment block giving its evidence (command,
machine, time, result).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib.resources
import os
import pathlib
import re
import sys
import typing
from dataclasses import dataclass, field
from typing import Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from mentor.errors import MentorError, UsageError

# ----------------------------------------------------------------------------- checks
# A field's range lives beside its default: checked(default, rule) puts the rule in the
# field's metadata, and _build applies it at load, so a bad value fails before any work.


def checked(default, ok, rule: str):
    """A dataclass field whose value must satisfy ok(value); `rule` says so in words."""
    kind = "default_factory" if callable(default) else "default"
    return field(**{kind: default}, metadata={"check": (ok, rule)})


def positive(default):
    return checked(default, lambda v: v > 0, "> 0")


def at_least(default, low):
    return checked(default, lambda v: v >= low, f"≥ {low}")


def unit(default, *, low_open=False, high_open=True):
    """A fraction in [0, 1), or (0, 1) / (0, 1] / [0, 1] as the flags say."""
    def ok(v):
        return (v > 0 if low_open else v >= 0) and (v < 1 if high_open else v <= 1)
    rule = f"in {'(' if low_open else '['}0, 1{')' if high_open else ']'}"
    return checked(default, ok, rule)


def pair(low_open_zero: bool, high: float | None):
    """A [low, high] list of two numbers with 0 < low ≤ high (≤ `high` when given)."""
    def ok(v):
        return (len(v) == 2 and all(isinstance(x, (int, float)) for x in v)
                and 0 < v[0] <= v[1] and (high is None or v[1] <= high))
    return ok


IMAGE_SIZES = (8, 2048)  # pixels per side: below 8 no zoo model has a feature map left


# ----------------------------------------------------------------------------- reads


class _Reading:
    log: set | None = None  # (id(section), field) pairs while record_reads is on


_reading = _Reading()


class Section:
    """Base of every config dataclass. While `record_reads` is on, each field read is noted:
    a test runs every preset with it and fails on a key its recipe never reads (a key that
    is accepted and silently ignored)."""

    def __getattribute__(self, name):
        log = _reading.log
        if log is not None and name[:1] != "_":
            log.add((id(self), name))
        return object.__getattribute__(self, name)


@contextlib.contextmanager
def record_reads(config):
    """Yields a set that receives, when the block ends, the dotted keys of `config` read
    inside it (reads under `quietly()` excluded)."""
    paths = _section_paths(config)
    outer = _reading.log  # inside another record_reads: share its log, leave it on
    keys, log = set(), outer if outer is not None else set()
    _reading.log = log
    try:
        yield keys
    finally:
        if outer is None:
            _reading.log = None
        keys.update(paths[i] + name for i, name in log if i in paths)


def _dotted_reads(config) -> set | None:
    """The dotted keys of `config` read so far in the current record_reads (None: off)."""
    log = _reading.log
    if log is None:
        return None
    with quietly():
        paths = _section_paths(config)
    return {paths[i] + name for i, name in list(log) if i in paths}


def _section_paths(config) -> dict[int, str]:
    """id(section) → its dotted prefix ("", "train.", "teacher.train.", …)."""
    paths = {}

    def walk(section, prefix):
        paths[id(section)] = prefix
        for f in dataclasses.fields(section):
            value = vars(section)[f.name]
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")

    walk(config, "")
    return paths


# Keys that describe a run rather than steer it, read by the run folder and the report.
_NOT_SETTINGS = {"recipe", "description", "seed"}


def unread_settings(config) -> list[str]:
    """Keys set away from their defaults that this run (so far, inside record_reads) has
    not read: a setting that changes nothing, such as train.momentum under AdamW or
    data.test_fraction beside data.test, is said rather than silently ignored."""
    read = _dotted_reads(config)
    if read is None:
        return []
    with quietly():
        default = to_dict(type(config)())
        given = to_dict(config)
    changed = []

    def walk(values, defaults, prefix):
        for key, value in values.items():
            dotted = prefix + key
            if isinstance(value, dict) and isinstance(defaults.get(key), dict):
                if key != "options":  # model options: one key, the builder's own dict
                    walk(value, defaults[key], dotted + ".")
                    continue
            if value != defaults.get(key) and dotted not in _NOT_SETTINGS:
                changed.append(dotted)

    walk(given, default, "")
    return sorted(k for k in changed if k not in read and not k.startswith("runtime."))


@contextlib.contextmanager
def quietly():
    """Reads that are not the recipe using a key: writing the config out, checking it."""
    saved, _reading.log = _reading.log, None
    try:
        yield
    finally:
        _reading.log = saved


# ----------------------------------------------------------------------------- sections


@dataclass
class DataConfig(Section):
    train: str = "embedded:mnist5k"  # a source spec: see `mentor train --help`
    test: str = ""  # "" → hold back test_fraction of `train`
    test_fraction: float = unit(0.2, low_open=True)  # used only when `test` is empty
    val_fraction: float = unit(0.1)  # of the training images, for monitoring and early stopping
    # 0 → the training images' own (square) size
    image_size: int = checked(0, lambda v: v == 0 or IMAGE_SIZES[0] <= v <= IMAGE_SIZES[1],
                              f"0 (the images' own size) or {IMAGE_SIZES[0]}..{IMAGE_SIZES[1]}")
    channels: Literal[0, 1, 3] = 0  # 0 → the training images' own channel count
    # Folders and CSV lists: "auto" decodes into memory up to 1 GiB of uint8 images and
    # streams from disk above it; "always" / "never" choose.
    stream: Literal["auto", "always", "never"] = "auto"
    # Loader processes that decode a streamed set (threads, when a folder is decoded into
    # memory); 0 → one per core available. In-memory arrays are gathered in the main thread
    # whatever this says: a gather of uint8 rows is far cheaper than a step (benchmarks/).
    workers: int = at_least(0, 0)
    # A file in an image folder that does not decode (corrupt, truncated, empty) is skipped
    # and counted in the log and metrics.json; true refuses the folder instead (--strict).
    strict: bool = False


@dataclass
class ModelConfig(Section):
    # a zoo name (mentor.models.MODELS), keras.applications:NAME, or PATH.keras to start from
    name: str = "small_cnn"
    options: dict = field(default_factory=dict)  # the builder's; names checked at load
    # "" → random initialisation; "imagenet" (keras.applications); or a weights file
    weights: str = ""
    # the pixels a PATH.keras model was trained on, built into it: raw 0..255, unit [0, 1],
    # symmetric [-1, 1], imagenet (mean/std); zoo and keras.applications models know theirs
    input_scale: Literal["raw", "unit", "symmetric", "imagenet"] = "raw"
    freeze_bn: bool = False  # batch norm of the model kept in inference mode (fine-tuning)


@dataclass
class AugmentConfig(Section):
    kind: Literal["none", "weak", "strong"] = "weak"  # weak: flip + translate; strong: + RandAugment
    flip: bool = True  # horizontal flips: off for digits and text
    translate: float = checked(0.125, lambda v: 0 <= v <= 0.5, "in [0, 0.5]")  # max shift / side
    num_ops: int = checked(2, lambda v: 0 <= v <= 14, "in 0..14 (the RandAugment ops)")  # N
    magnitude: int = checked(9, lambda v: 0 <= v <= 10, "in 0..10")  # RandAugment M


@dataclass
class RuntimeConfig(Section):
    """Where the run computes (runtime.py). Not part of what a run *is*: a run may resume
    on another machine with other devices, so resuming ignores this section."""
    devices: int = at_least(1, 0)  # data parallel over this many devices (JAX); 0 → all visible
    precision: Literal["float32", "mixed_bfloat16", "mixed_float16"] = "float32"


@dataclass
class TrainConfig(Section):
    # The global batch: split evenly across runtime.devices, so the device count changes
    # neither the batch nor the learning rate that belongs to it.
    batch_size: int = at_least(64, 1)
    epochs: int = at_least(10, 1)
    steps_per_epoch: int = at_least(0, 0)  # 0 → one pass over the training images
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"  # sgd: Nesterov momentum
    learning_rate: float = positive(1e-3)  # peak learning rate
    weight_decay: float = at_least(1e-4, 0)  # decoupled; kernels only (not biases or norms)
    momentum: float = unit(0.9)  # sgd only
    # cosine: warm-up then cosine to 0; plateau: lowered when val_loss stalls
    schedule: Literal["cosine", "constant", "plateau"] = "cosine"
    warmup_steps: int = at_least(0, 0)
    clipnorm: float = at_least(0.0, 0)  # global gradient-norm clip; 0 → off
    # learning rate of the pretrained part (all but the "logits" head) × this; 0.1 is the
    # domain-adaptation literature's usual value, 0 freezes it
    backbone_lr_scale: float = at_least(1.0, 0)
    label_smoothing: float = unit(0.0)
    ema: float = unit(0.0)  # decay of the weight average used for evaluation; 0 → off
    swa_start: float = unit(0.0)  # fraction of epochs after which SWA averages; 0 → off
    plateau_patience: int = at_least(3, 1)  # epochs without val improvement before lr × factor
    plateau_factor: float = unit(0.5, low_open=True)
    early_stopping: int = at_least(0, 0)  # patience in epochs, restoring the best weights; 0 → off
    checkpoint_every: int = at_least(1, 1)  # epochs between checkpoints
    keep_checkpoints: int = at_least(2, 1)


def seed_field():
    return checked(0, lambda v: 0 <= v < 2**31, "in 0..2147483647")


@dataclass
class TeacherConfig(Section):
    # A .keras file or a mentor run directory (its model.keras); "" → train the teacher first
    # with the plain labelled step on the same data, using the sections below.
    path: str = ""
    # the pixels the teacher at `path` expects, built in front of it: raw 0..255, unit [0, 1],
    # symmetric [-1, 1] or imagenet (mean/std)
    input_scale: Literal["raw", "unit", "symmetric", "imagenet"] = "raw"
    # The side of the images the teacher sees: each step's view (the student's exact crop,
    # flip and MixUp) and the test images are resized to it on the device, bilinear and
    # antialiased when shrinking. 0 → the student's size, or a loaded teacher's own fixed
    # input size. A teacher trained in the run trains at this size.
    image_size: int = checked(0, lambda v: v == 0 or IMAGE_SIZES[0] <= v <= IMAGE_SIZES[1],
                              f"0 (the student's size) or {IMAGE_SIZES[0]}..{IMAGE_SIZES[1]}")
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _corruption_names(v):
    from mentor.corruptions import CORRUPTIONS

    return all(isinstance(n, str) and n in CORRUPTIONS for n in v)


@dataclass
class RobustnessConfig(Section):
    corruptions: list = checked(list, _corruption_names,
                                "a list of corruption names (`mentor robustness --help`)")  # [] → all 19
    severities: list = checked(lambda: [1, 2, 3, 4, 5],
                               lambda v: len(v) > 0 and all(
                                   isinstance(s, int) and 1 <= s <= 5 for s in v),
                               "a non-empty list of severities in 1..5")
    max_images: int = at_least(0, 0)  # 0 → every test image; else a seeded subset, for speed
    seed: int = seed_field()  # of the corruptions' random draws


# ----------------------------------------------------------------------------- building


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value, tp, key: str):
    """Check a TOML value against a field type; ints are accepted where floats are."""
    if typing.get_origin(tp) is Literal:
        choices = typing.get_args(tp)
        if value in choices and type(value) is type(choices[0]):
            return value
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"config key {key!r} must be one of "
                          f"{', '.join(repr(c) for c in choices)}; got {value!r}.{hint}")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (dict, list) and isinstance(value, tp):
        return tp(value)
    ok = isinstance(value, tp) and not (tp is int and isinstance(value, bool))
    if not ok:
        raise UsageError(
            f"config key {key!r} must be {_type_name(tp)}, got {value!r} "
            f"({type(value).__name__})."
        )
    return value


def _check_range(field_, value, key: str):
    check = field_.metadata.get("check")
    if check is not None and not check[0](value):
        raise UsageError(f"config key {key!r} must be {check[1]}, got {value!r}.")


def _check_model(section: "ModelConfig", key: str):
    """The model's name and its option names, checked without building it (preflight
    builds it, before training, once the data's shape is known)."""
    from mentor.models import check_spec, option_defaults

    try:
        check_spec(section.name, section.options, section.weights, section.input_scale)
        defaults = option_defaults(section.name)
    except MentorError as error:  # the models' checks say MentorError; here it is the config's
        raise UsageError(f"[{key}] {error}") from None
    for option, value in section.options.items():
        _check_option_type(f"{key}.options.{option}", value, defaults.get(option))


def _check_option_type(key: str, value, default):
    """An option's value of the type of its default in the builder's signature (a float
    also takes an int); an option whose default is None takes anything."""
    if default is None:
        return
    if isinstance(default, bool):
        want, ok = "true or false", isinstance(value, bool)
    elif isinstance(default, (int, float)):
        want = "an integer" if isinstance(default, int) else "a number"
        ok = (isinstance(value, int) if isinstance(default, int)
              else isinstance(value, (int, float))) and not isinstance(value, bool)
    elif isinstance(default, str):
        want, ok = "a string", isinstance(value, str)
    elif isinstance(default, (list, tuple)):
        want, ok = "a list", isinstance(value, list)
    else:
        return
    if not ok:
        raise UsageError(f"config key {key!r} must be {want} (its default is {default!r}); "
                         f"got {value!r} ({type(value).__name__}).")


def _build(cls, values: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" Did you mean '{prefix}{close[0]}'?" if close else ""
            section = f"[{prefix[:-1]}]" if prefix else "the top level"
            raise UsageError(
                f"unknown config key {full!r}.{hint} Keys in {section}: {', '.join(fields)}."
            )
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise UsageError(f"config key {full!r} is a section; write [{full}] in TOML.")
            # Start from this recipe's own default for the section (distill's [train] has
            # clipnorm 1.0), so a file that sets one key keeps the others.
            field_ = fields[key]
            base = field_.default_factory() if field_.default_factory is not dataclasses.MISSING \
                else tp()
            kwargs[key] = _build(tp, {**_shallow(base), **value}, f"{full}.")
        else:
            kwargs[key] = _coerce(value, tp, full)
            _check_range(fields[key], kwargs[key], full)
    built = cls(**kwargs)
    if isinstance(built, ModelConfig):
        _check_model(built, prefix[:-1])
    return built


def _shallow(instance) -> dict:
    """A dataclass's fields as a dict, nested sections still as dicts of their fields."""
    return {f.name: (_shallow(v) if dataclasses.is_dataclass(v := getattr(instance, f.name))
                     else v) for f in dataclasses.fields(instance)}


def to_dict(config) -> dict:
    with quietly():
        return dataclasses.asdict(config)


def _pretrained(model: ModelConfig) -> bool:
    """Whether a [model] section starts from trained weights (or may: a keras.Model given
    from Python)."""
    return bool(model.weights) or model.name.endswith(".keras") or model.name.startswith(
        ("keras_hub:", "object:"))


def _check_frozen_body(section, prefix: str):
    """train.backbone_lr_scale = 0 keeps all but the head as initialised: right for a
    pretrained body, a model that cannot learn for a random one."""
    model, train = getattr(section, "model", None), getattr(section, "train", None)
    if isinstance(model, ModelConfig) and isinstance(train, TrainConfig) and \
            train.backbone_lr_scale == 0 and not _pretrained(model):
        raise UsageError(
            f"config key '{prefix}train.backbone_lr_scale' is 0, which freezes all but the "
            f"head of the model, but {prefix}model ({model.name!r}) starts from random "
            "weights: its body would never learn. Set it > 0 (1 trains the whole model), or "
            f"start from trained weights ({prefix}model.weights, a PATH.keras model, or "
            "keras.applications with weights = \"imagenet\").")


def _check_together(config):
    """Rules between keys, checked at load like the rest: the shared ones here, a recipe's
    own in its config's `check` method."""
    _check_frozen_body(config, "")
    teacher = getattr(config, "teacher", None)
    if isinstance(teacher, TeacherConfig) and not teacher.path:  # trained in this run
        _check_frozen_body(teacher, "teacher.")
    check = getattr(config, "check", None)
    if check is not None:
        check()
    return config


def build_config(cls, values: dict):
    """A recipe's config (`cls`, its dataclass) from a dict of TOML values, every key and
    every rule between keys checked."""
    return _check_together(_build(cls, values))


def data_of(source) -> tuple[DataConfig, int]:
    """The [data] section and seed of a saved config (a run's config.toml), read without
    its recipe's other sections."""
    values, _, _ = read_toml(source)
    data = values.get("data", {})
    if not isinstance(data, dict):
        raise UsageError(f"{source}: config key 'data' is a section; write [data] in TOML.")
    return _build(DataConfig, data, "data."), values.get("seed", 0)


def _parse_value(text: str):
    """A --set value is parsed as TOML (1, 0.5, true, "s", [1, 2]); bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def set_dotted(values: dict, key: str, value) -> dict:
    """values["a"]["b"] = value for key "a.b", creating sections on the way."""
    *path, last = key.strip().split(".")
    node = values
    for part in path:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UsageError(f"--set {key}: {part!r} is a value, not a section.")
    node[last] = value
    return values


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Apply `section.key=value` strings to a raw config dict (before type checks)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set takes key=value (e.g. train.epochs=20), got {item!r}.")
        set_dotted(values, key, _parse_value(text.strip()))
    return values


# ----------------------------------------------------------------------------- presets


def _preset_dir():
    return importlib.resources.files("mentor") / "presets"


def list_presets() -> list[tuple[str, str]]:
    """(name, description) of every shipped preset, sorted by name."""
    out = []
    for entry in sorted(_preset_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            values = tomllib.loads(entry.read_text())
            out.append((entry.name[:-5], values.get("description", "")))
    return out


def read_toml(source) -> tuple[dict, str, str]:
    """Read a preset name or a TOML path (a str or a path object). Returns (values, name,
    text)."""
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str):
        raise UsageError(f"a config is a preset name or a .toml path, got "
                         f"{type(source).__name__} {source!r}.")
    path = pathlib.Path(source)
    if source.endswith(".toml") or path.exists():
        if not path.is_file():
            raise UsageError(f"no such config file: {source}. Give a preset name or a .toml path.")
        name = path.stem
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            line = e.object[:e.start].count(b"\n") + 1
            raise UsageError(f"{source} is not a TOML file: byte {e.object[e.start]:#04x} on "
                             f"line {line} is not UTF-8 text, which TOML is. Give a TOML text "
                             "file (saved as UTF-8), or a preset name.") from None
        except OSError as e:
            raise UsageError(f"cannot read config file {source} ({e.strerror or e}).") from None
    else:
        # a preset is a plain name: "../x" must not reach a file outside the presets
        entry = _preset_dir() / f"{source}.toml"
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", source) or source.startswith(".") \
                or not entry.is_file():
            names = [n for n, _ in list_presets()]
            close = difflib.get_close_matches(source, names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UsageError(
                f"unknown preset {source!r}.{hint} Presets: {', '.join(names)} "
                "(`mentor presets` describes them), or give a path to a .toml file."
            )
        text, name = entry.read_text(), source
    try:
        return tomllib.loads(text), name, text
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{source} is not valid TOML: {e}.") from None
    except RecursionError:
        raise UsageError(f"{source} nests arrays or tables too deeply to be a config; a "
                         "mentor config is a few flat sections.") from None


# ----------------------------------------------------------------------------- writing


# TOML basic strings: `"` and `\` escaped, and every control character (newlines, tabs,
# U+007F), which TOML forbids raw in them; other Unicode is written as itself (UTF-8).
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        elif "\ud800" <= ch <= "\udfff":
            raise UsageError(f"the string {text[:40]!r} holds a lone surrogate "
                             f"(U+{ord(ch):04X}), which no text file can hold; remove it.")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(key) -> str:
    key = str(key)
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "nan"
        return repr(v)  # inf, -inf, 1e-05, 0.5: all TOML floats as repr writes them
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps(values: dict, _path: tuple = ()) -> str:
    """Write a nested dict as TOML that tomllib reads back as the same dict: sections for
    nested dicts, every key and string escaped as TOML needs."""
    flat = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in values.items()
            if not isinstance(v, dict)]
    header = "[" + ".".join(_toml_key(k) for k in _path) + "]"
    lines = ([header] if _path and (flat or not values) else []) + flat
    for k, v in values.items():
        if isinstance(v, dict):
            lines += ["", dumps(v, (*_path, k)).rstrip("\n")]
    return "\n".join(lines).strip("\n") + "\n"
