"""Every shipped config composes and validates; every bad value is a ConfigError naming its key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import rl_lab
from rl_lab.app import CONFIG_DIR, help_groups
from rl_lab.config import GROUP_SCHEMAS, SCHEMA_PREFIX, Config, validate
from rl_lab.errors import ConfigError

CONFIGS = Path(CONFIG_DIR)


def make(*overrides: str, name: str = "config") -> Config:
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose(config_name=name, overrides=list(overrides))
    config = OmegaConf.to_object(cfg)
    assert isinstance(config, Config)
    return config


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def test_default_config_is_the_original_recipe():
    c = validate(make())
    assert (c.env.id, c.collector.episodes, c.collector.max_steps, c.collector.min_score) == (
        "CartPole-v1",
        10_000,
        None,  # the env's own limit: 500 for CartPole-v1
        50,
    )
    assert c.collector.top_fraction is None and c.collector.behaviour == "random"
    assert (c.policy.hidden_sizes, c.policy.activation, c.policy.dropout) == ([128, 256, 512, 256, 128], "relu", 0.2)
    assert (c.trainer.epochs, c.trainer.batch_size, c.trainer.lr) == (5, 64, 2.33e-4)
    assert (c.evaluator.episodes, c.evaluator.greedy, c.evaluator.render) == (100, True, "none")
    assert validate(make("experiment=recipe")).evaluator.episodes == 10


@pytest.mark.parametrize("group", ["env", "policy", "collector", "trainer", "evaluator", "experiment", "debug"])
def test_every_group_option_composes_and_validates(group):
    assert options(group)
    for option in options(group):
        validate(make(f"{group}={option}"))
        rl_lab.compose([f"{group}={option}"])  # the API: the CLI's composition and validation


def test_config_defaults_are_the_cli_default():
    """One source of truth: the dataclass defaults are what plain `rl-lab` runs (and rl-lab-eval, but env.id)."""
    assert dataclasses.asdict(rl_lab.compose()) == dataclasses.asdict(Config())
    assert dataclasses.asdict(validate(make())) == dataclasses.asdict(Config())
    expected = Config()
    expected.env.id = None  # configs/eval.yaml: the checkpoint's own env
    assert dataclasses.asdict(make(name="eval")) == dataclasses.asdict(expected)


def _yaml(group: str, option: str) -> dict:
    return yaml.safe_load((CONFIGS / group / f"{option}.yaml").read_text()) or {}


@pytest.mark.parametrize("group", sorted(GROUP_SCHEMAS))
def test_group_options_extend_their_schema_and_set_only_differences(group):
    schema = GROUP_SCHEMAS[group]()
    default = getattr(Config(), group)
    assert default == schema  # the primary config's default option changes nothing
    for option in options(group):
        body = _yaml(group, option)
        assert body.pop("defaults", None) == [f"{SCHEMA_PREFIX}{group}", "_self_"], f"{group}/{option}.yaml"
        for key, value in body.items():
            assert getattr(schema, key) != value, f"{group}/{option}.yaml repeats the schema's {key}: {value!r}"
        composed = getattr(rl_lab.compose([f"{group}={option}"]), group)
        assert dataclasses.asdict(composed) == {**dataclasses.asdict(schema), **body}


def test_debug_and_primary_configs_set_only_differences():
    for option in options("debug"):
        body = _yaml("debug", option)
        assert "defaults" not in body
        for section, values in body.items():
            for key, value in values.items():
                assert getattr(getattr(Config(), section), key) != value, f"debug/{option}.yaml {section}.{key}"
    top = {f.name for f in dataclasses.fields(Config) if f.name not in GROUP_SCHEMAS}
    assert not top & set(_yaml(".", "config"))  # seed, device, rounds...: the schema's defaults
    assert set(_yaml(".", "eval")) == {"defaults", "env", "hydra"}


def test_schema_entries_are_no_options_to_pick():
    assert SCHEMA_PREFIX not in help_groups()
    assert not list(CONFIGS.glob(f"*/{SCHEMA_PREFIX}*.yaml"))  # the schemas live in rl_lab/config.py only


def test_eval_config_composes():
    c = make("checkpoint=x.pt", name="eval")
    assert c.env.id is None and c.checkpoint == "x.pt"
    validate(c, training=False)


BAD = [
    ("collector.episodes=0", "collector.episodes"),
    ("collector.episodes=-5", "collector.episodes"),
    ("env.num_envs=0", "env.num_envs"),
    ("trainer.epochs=0", "trainer.epochs"),
    ("trainer.batch_size=-1", "trainer.batch_size"),
    ("evaluator.episodes=0", "evaluator.episodes"),
    ("collector.top_fraction=0.1", "exactly one"),
    ("collector.min_score=null", "exactly one"),
    ("collector.min_score=null collector.top_fraction=0", "collector.top_fraction"),
    ("collector.min_score=null collector.top_fraction=1.5", "collector.top_fraction"),
    ("policy.dropout=1.0", "policy.dropout"),
    ("policy.dropout=-0.1", "policy.dropout"),
    ("policy.activation=swish", "policy.activation"),
    ("policy.hidden_sizes=[64,0]", "policy.hidden_sizes"),
    ("trainer.lr=0", "trainer.lr"),
    ("trainer.lr=-1e-3", "trainer.lr"),
    ("trainer.val_fraction=1.0", "trainer.val_fraction"),
    ("trainer.val_fraction=-0.1", "trainer.val_fraction"),
    ("evaluator.render=window", "evaluator.render"),
    ("evaluator.video_format=avi", "evaluator.video_format"),
    ("device=tpu", "device"),
    ("env.precision=float16", "env.precision"),
    ("rounds=0", "rounds"),
    ("collector.behaviour=expert", "collector.behaviour"),
    ("collector.temperature=0", "collector.temperature"),
]


@pytest.mark.parametrize("overrides,key", BAD)
def test_bad_values_are_config_errors_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(make(*overrides.split()))
