"""Configuration: one dataclass per recipe, TOML presets, `--set key=value` overrides.

A config file is TOML whose top-level `recipe` names the dataclass; every other key must be
a field of it (sections are nested dataclasses), so a typo is an error, never a silent
default. Presets are TOML files shipped in `mentor/presets/`; each opens with a comment
block giving its evidence (command, machine, time, result).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import pathlib
import sys
import typing
from dataclasses import dataclass, field

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from mentor.errors import MentorError


# ----------------------------------------------------------------------------- sections


@dataclass
class DataConfig:
    train: str = "embedded:mnist5k"  # a source spec: see `mentor train --help`
    test: str = ""  # "" → hold back test_fraction of `train`
    test_fraction: float = 0.2  # used only when `test` is empty
    val_fraction: float = 0.1  # of the training images, for monitoring and early stopping
    image_size: int = 0  # 0 → the training images' own (square) size
    channels: int = 0  # 0 → the training images' own channel count
    # Loader threads. 1 is exact and enough (gathering uint8 rows is cheap: benchmarks/);
    # with more, Keras 3.15 serves its first-batch peek from the shared queue, so the
    # first batch is trained last and runs are not bit-reproducible.
    workers: int = 1


@dataclass
class ModelConfig:
    name: str = "small_cnn"  # see `mentor.models.MODELS`
    options: dict = field(default_factory=dict)  # passed to the builder, checked there


@dataclass
class AugmentConfig:
    kind: str = "weak"  # "none" | "weak" (flip + translate) | "strong" (weak + RandAugment)
    flip: bool = True  # horizontal flips: off for digits and text
    translate: float = 0.125  # max shift as a fraction of the side (4 px at 32 px)
    num_ops: int = 2  # RandAugment N (Cubuk et al. 2020)
    magnitude: int = 9  # RandAugment M in 0..10; 9 as in the consistency seed


@dataclass
class RuntimeConfig:
    """Where the run computes (runtime.py). Not part of what a run *is*: a run may resume
    on another machine with other devices, so resuming ignores this section."""
    devices: int = 1  # data parallel over this many devices (JAX); 0 → all visible
    precision: str = "float32"  # "float32" | "mixed_bfloat16" | "mixed_float16"


@dataclass
class TrainConfig:
    # The global batch: split evenly across runtime.devices, so the device count changes
    # neither the batch nor the learning rate that belongs to it.
    batch_size: int = 64
    epochs: int = 10
    steps_per_epoch: int = 0  # 0 → one pass over the training images
    optimizer: str = "adamw"  # "adamw" | "adam" | "sgd" (Nesterov momentum)
    learning_rate: float = 1e-3  # peak learning rate
    weight_decay: float = 1e-4  # decoupled; kernels only (not biases or norm parameters)
    momentum: float = 0.9  # sgd only
    schedule: str = "cosine"  # "cosine" (warm-up then cosine to 0) | "constant" | "plateau"
    warmup_steps: int = 0
    clipnorm: float = 0.0  # global gradient-norm clip; 0 → off
    label_smoothing: float = 0.0
    ema: float = 0.0  # decay of the weight average used for evaluation; 0 → off
    swa_start: float = 0.0  # fraction of epochs after which SWA averages; 0 → off
    plateau_patience: int = 3  # epochs without val improvement before lr × plateau_factor
    plateau_factor: float = 0.5
    early_stopping: int = 0  # patience in epochs, restoring the best weights; 0 → off
    checkpoint_every: int = 1  # epochs between checkpoints
    keep_checkpoints: int = 2


# ----------------------------------------------------------------------------- recipes


@dataclass
class SupervisedConfig:
    recipe: str = "supervised"
    description: str = ""
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


@dataclass
class TeacherConfig:
    # A .keras file or a mentor run directory (its model.keras); "" → train the teacher first
    # with `supervised` on the same data, using the sections below.
    path: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class ConsistencyLossConfig:
    temperature: float = 10.0  # Noisy-Student consistency seed (keras-io)
    ce_weight: float = 0.5  # ½·CE(labels, student) …
    kd_weight: float = 0.5  # … + ½·KL(teacher/T ‖ student/T)
    t_squared: bool = True  # × T² (Hinton et al. 2015): else at T = 10 the KL gradient is 1/100


@dataclass
class RobustnessConfig:
    corruptions: list = field(default_factory=list)  # [] → all 19
    severities: list = field(default_factory=lambda: [1, 2, 3, 4, 5])
    max_images: int = 0  # 0 → every test image; else a seeded subset, for speed
    seed: int = 0  # of the corruptions' random draws


@dataclass
class ConsistencyConfig:
    recipe: str = "consistency"
    description: str = ""
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    model: ModelConfig = field(default_factory=ModelConfig)  # the student
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(kind="strong"))
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: ConsistencyLossConfig = field(default_factory=ConsistencyLossConfig)
    robustness: RobustnessConfig = field(default_factory=RobustnessConfig)
    # Start the student from the teacher's initial weights (consistency seed 000), when the
    # teacher is trained in this run with the same model.
    student_from_teacher_init: bool = False
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


@dataclass
class DistillAugmentConfig:
    """The one view teacher and student share (Beyer et al. 2022, function matching)."""
    crop_size: int = 0  # side of the crop both models see; 0 → the data's image size
    crop_area: list = field(default_factory=lambda: [0.05, 1.0])  # inception crop area fraction
    crop_ratio: list = field(default_factory=lambda: [0.75, 4 / 3])  # its aspect-ratio range
    flip: bool = True  # horizontal; off for digits and text
    mixup: bool = True  # MixUp with λ ~ U(0, 1) and a partner from the same batch
    mixup_per_image: bool = True  # one λ per image; false → one λ per batch (big_vision)
    eval_crop: float = 1.0  # test view: central crop of this fraction (seed 003: 0.875), resized


@dataclass
class DistillTeacherConfig(TeacherConfig):
    # The teacher's function is the mean of its outputs on the view and on the view's mirror
    # image: a two-member test-time ensemble, one more teacher forward per step. Its accuracy
    # (teacher_acc) is measured the same way, since that is the function the student matches.
    flip_average: bool = False


@dataclass
class DistillLossConfig:
    temperature: float = 1.0  # the paper matches plain softmaxes (T = 1); seed 003 used 10
    t_squared: bool = True  # × T² as big_vision and Hinton et al.: gradients independent of T


@dataclass
class BaselineConfig:
    """The same student trained on the labels alone, with the same steps and optimizer."""
    enabled: bool = False  # also train it, so metrics.json has student_labels_only_acc
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # its label-training view


@dataclass
class DistillConfig:
    recipe: str = "distill"
    description: str = ""
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    teacher: DistillTeacherConfig = field(default_factory=DistillTeacherConfig)
    model: ModelConfig = field(default_factory=ModelConfig)  # the student
    augment: DistillAugmentConfig = field(default_factory=DistillAugmentConfig)
    # Function matching wants patience: AdamW, warm-up then cosine to 0, clip-norm 1.0.
    train: TrainConfig = field(default_factory=lambda: TrainConfig(clipnorm=1.0, warmup_steps=100))
    loss: DistillLossConfig = field(default_factory=DistillLossConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


@dataclass
class TargetConfig:
    """The images AdaMatch must classify. Their labels, when a source has them, are used
    for monitoring only (pseudo-label accuracy), never for training, except the
    `labels_per_class` labeled ones of mode "ssda"."""
    train: str = ""  # unlabeled target images (uda, ssda); unused in ssl
    labels_per_class: int = 0  # ssda: labeled target images per class, added to the source


@dataclass
class AdaMatchLossConfig:
    tau: float = 0.9  # relative confidence threshold: τ · mean max p of weak source views
    ratio: int = 3  # target (unlabeled) batch = ratio × source batch (paper: 3)
    source_momentum: float = 0.999  # running average of the source weak softmax
    target_window: int = 128  # the target weak softmax is averaged over this many batches
    # The papers' weight decay: an L2 term wd·‖w‖²/2 on kernels in the loss (FixMatch and
    # AdaMatch code), so SGD's momentum carries it; keras-io's example silently dropped it.
    l2: float = 0.0005


@dataclass
class AdaMatchConfig:
    recipe: str = "adamatch"
    description: str = ""
    seed: int = 0
    mode: str = "uda"  # "uda" | "ssda" | "ssl"
    # data.train: the labeled source (ssl: the one data set); data.test: target-domain test
    data: DataConfig = field(default_factory=DataConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    labels_per_class: int = 0  # ssl: labeled images per class of data.train; the rest unlabeled
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="wrn28_2"))
    weak: AugmentConfig = field(default_factory=lambda: AugmentConfig(kind="weak"))
    strong: AugmentConfig = field(default_factory=lambda: AugmentConfig(kind="strong"))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        optimizer="sgd", learning_rate=0.03, momentum=0.9, weight_decay=0.0, ema=0.999))
    loss: AdaMatchLossConfig = field(default_factory=AdaMatchLossConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


RECIPES: dict[str, type] = {"supervised": SupervisedConfig, "consistency": ConsistencyConfig,
                            "distill": DistillConfig, "adamatch": AdaMatchConfig}


# ----------------------------------------------------------------------------- building


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value, tp, key: str):
    """Check a TOML value against a field type; ints are accepted where floats are."""
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (dict, list) and isinstance(value, tp):
        return tp(value)
    ok = isinstance(value, tp) and not (tp is int and isinstance(value, bool))
    if not ok:
        raise MentorError(
            f"config key {key!r} must be {_type_name(tp)}, got {value!r} "
            f"({type(value).__name__})."
        )
    return value


def _build(cls, values: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" Did you mean '{prefix}{close[0]}'?" if close else ""
            section = f"[{prefix[:-1]}]" if prefix else "the top level"
            raise MentorError(
                f"unknown config key {full!r}.{hint} Keys in {section}: {', '.join(names)}."
            )
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise MentorError(f"config key {full!r} is a section; write [{full}] in TOML.")
            # Start from this recipe's own default for the section (distill's [train] has
            # clipnorm 1.0), so a file that sets one key keeps the others.
            field_ = next(f for f in dataclasses.fields(cls) if f.name == key)
            base = field_.default_factory() if field_.default_factory is not dataclasses.MISSING \
                else tp()
            kwargs[key] = _build(tp, {**_shallow(base), **value}, f"{full}.")
        else:
            kwargs[key] = _coerce(value, tp, full)
    return cls(**kwargs)


def _shallow(instance) -> dict:
    """A dataclass's fields as a dict, nested sections still as dicts of their fields."""
    return {f.name: (_shallow(v) if dataclasses.is_dataclass(v := getattr(instance, f.name))
                     else v) for f in dataclasses.fields(instance)}


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def from_dict(values: dict):
    recipe = values.get("recipe")
    if recipe not in RECIPES:
        raise MentorError(
            f"config must name its recipe with recipe = \"…\", one of {', '.join(RECIPES)}; "
            f"got {recipe!r}."
        )
    return _build(RECIPES[recipe], values)


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
            raise MentorError(f"--set {key}: {part!r} is a value, not a section.")
    node[last] = value
    return values


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Apply `section.key=value` strings to a raw config dict (before type checks)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise MentorError(f"--set takes key=value (e.g. train.epochs=20), got {item!r}.")
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


def read_toml(source: str) -> tuple[dict, str, str]:
    """Read a preset name or a TOML path. Returns (values, name, text)."""
    path = pathlib.Path(source)
    if source.endswith(".toml") or path.exists():
        if not path.is_file():
            raise MentorError(f"no such config file: {source}. Give a preset name or a .toml path.")
        text, name = path.read_text(), path.stem
    else:
        entry = _preset_dir() / f"{source}.toml"
        if not entry.is_file():
            names = [n for n, _ in list_presets()]
            close = difflib.get_close_matches(source, names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise MentorError(
                f"unknown preset {source!r}.{hint} Presets: {', '.join(names)} "
                "(`mentor presets` describes them), or give a path to a .toml file."
            )
        text, name = entry.read_text(), source
    try:
        return tomllib.loads(text), name, text
    except tomllib.TOMLDecodeError as e:
        raise MentorError(f"{source} is not valid TOML: {e}.") from None


def load_config(source: str, overrides: list[str] = ()):
    """Resolve a preset name or TOML path plus --set overrides into a recipe config."""
    values, name, _ = read_toml(source)
    return from_dict(apply_overrides(values, list(overrides))), name


# ----------------------------------------------------------------------------- writing


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps(values: dict, _prefix: str = "") -> str:
    """Write a nested dict of scalars as TOML (enough for resolved configs)."""
    flat = [f"{k} = {_toml_value(v)}" for k, v in values.items() if not isinstance(v, dict)]
    lines = ([f"[{_prefix[:-1]}]"] if _prefix and (flat or not values) else []) + flat
    for k, v in values.items():
        if isinstance(v, dict):
            lines += ["", dumps(v, f"{_prefix}{k}.")]
    return "\n".join(lines).strip("\n") + "\n"
