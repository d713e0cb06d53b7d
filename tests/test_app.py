"""The real CLI in a subprocess: artifacts, TensorBoard events, rl-lab-eval, multirun, bad input, determinism.

The end-to-end runs are marked slow; the config errors and --help stop before any work and are not.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import rl_lab
from rl_lab.data import load_dataset
from rl_lab.errors import ConfigError
from rl_lab.policy import load_policy

SMALL = ["debug=fast", "collector.episodes=300", "evaluator.episodes=6"]


def run_dir(tmp_path: Path, name: str = "run") -> Path:
    return tmp_path / name


def check_run(out: Path) -> dict:
    """Every artifact is present and well formed."""
    ds = load_dataset(out / "dataset.npz")
    with np.load(out / "dataset.npz", allow_pickle=False) as f:
        assert {"obs", "actions", "episode_returns", "episode_lengths", "kept", "meta"} <= set(f.files)
    assert ds.samples == ds.episode_lengths[ds.kept].sum() > 0
    policy, payload = load_policy(out / "policy.pt")
    assert payload["env_id"] == "CartPole-v1"
    ev = json.loads((out / "eval.json").read_text())
    assert abs(sum(ev["action_balance"]) - 1) < 1e-9 and len(ev["scores"]) == ev["episodes"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "completed"
    assert {
        "episodes",
        "kept_episodes",
        "samples",
        "score_mean",
        "score_max",
        "env_steps",
        "seconds",
        "steps_per_second",
    } <= set(m["collect"])
    assert {"epochs", "samples", "final_loss", "val_accuracy", "seconds"} <= set(m["train"])
    assert {"score_mean", "score_std", "seconds"} <= set(m["eval"]) and m["total_seconds"] > 0
    assert (out / ".hydra" / "config.yaml").is_file()
    assert not list(out.glob(".*.tmp")) and not (out / "policy_last.pt").exists()
    return m


@pytest.mark.slow
def test_default_pipeline_writes_every_artifact_and_tensorboard(cli, tmp_path):
    out = run_dir(tmp_path)
    proc = cli(*SMALL, f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr
    check_run(out)
    text = proc.stdout + proc.stderr
    assert "kept" in text and "choice 0:" in text and "val accuracy" in text
    ea = EventAccumulator(str(out / "tb"), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    for tag in (
        "collect/kept_fraction",
        "collect/score_mean",
        "train/loss",
        "train/accuracy",
        "val/loss",
        "val/accuracy",
        "eval/score_mean",
        "eval/score_std",
        "eval/action_balance/0",
        "eval/action_balance/1",
    ):
        assert tag in tags, f"{tag} missing from {sorted(tags)}"
    assert len(ea.Scalars("train/loss")) == 1  # debug=fast trains one epoch
    assert {"collect/scores_all", "collect/scores_kept", "eval/scores"} <= set(ea.Tags()["histograms"])
    hp = ea.PluginTagToContent("hparams")
    assert hp, "no hparams summaries"
    assert len(ea.Scalars("eval/score_mean")) == 1  # the hparams metrics add no extra point to the curves
    assert any("config" in t for t in ea.Tags()["tensors"])


@pytest.mark.slow
def test_eval_cli_evaluates_a_saved_policy(cli, tmp_path):
    out = run_dir(tmp_path)
    assert cli(*SMALL, f"hydra.run.dir={out}").returncode == 0
    ev_dir = tmp_path / "ev"
    proc = cli(
        f"checkpoint={out / 'policy.pt'}", "evaluator.episodes=5", f"hydra.run.dir={ev_dir}", entry="rl_lab.eval"
    )
    assert proc.returncode == 0, proc.stderr
    ev = json.loads((ev_dir / "eval.json").read_text())
    assert ev["episodes"] == 5 and ev["env_id"] == "CartPole-v1"


@pytest.mark.slow
def test_help_lists_the_config_groups(cli):
    proc = cli("--help")
    assert proc.returncode == 0
    for group in ("env:", "policy:", "collector:", "trainer:", "evaluator:", "experiment:"):
        assert group in proc.stdout


@pytest.mark.slow
def test_multirun_two_jobs(cli, tmp_path):
    sweep = tmp_path / "sweep"
    proc = cli("-m", *SMALL, "trainer.lr=1e-3,1e-4", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    jobs = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert len(jobs) == 2
    assert jobs[0].name.startswith("0_") and jobs[0].name.endswith("trainer.lr=0.001")  # labelled by overrides
    assert jobs[1].name.startswith("1_") and jobs[1].name.endswith("trainer.lr=0.0001")
    for job in jobs:
        check_run(job)
    assert (proc.stdout + proc.stderr).count("run dir:") == 2  # each job names its dir


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["env.id=NoSuchEnv-v0"], "env.id='NoSuchEnv-v0'"),
        (["env.id=Pendulum-v1", "collector.noise_std=0"], "collector.noise_std=0"),
        (["collector.min_score=499"], "collector.min_score=499"),
        (["policy.dropout=1.5"], "policy.dropout"),
        (["collector.episodes=0"], "collector.episodes"),
        (["collector.min_score=null", "collector.top_fraction=2"], "collector.top_fraction"),
    ],
)
def test_bad_input_exits_2_with_one_paragraph_and_no_traceback(cli, tmp_path, overrides, needle):
    proc = cli(*SMALL, *overrides, f"hydra.run.dir={tmp_path / 'bad'}")
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "bad" / "policy.pt").exists()


@pytest.mark.slow
def test_missing_and_corrupt_checkpoint(cli, tmp_path):
    proc = cli(entry="rl_lab.eval")
    assert proc.returncode == 2 and "checkpoint is not set" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("checkpoint=nope.pt", entry="rl_lab.eval")
    assert proc.returncode == 2 and "checkpoint='nope.pt'" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    proc = cli("checkpoint=bad.pt", entry="rl_lab.eval")
    assert proc.returncode == 2 and "corrupt" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_same_seed_same_results_other_seed_differs(cli, tmp_path):
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        out = tmp_path / name
        assert cli(*SMALL, f"seed={seed}", f"hydra.run.dir={out}").returncode == 0
        m = json.loads((out / "metrics.json").read_text())
        weights = load_policy(out / "policy.pt")[0].state_dict()
        runs[name] = (
            m["rounds"][0]["dataset_sha256"],
            m["weights_sha256"],
            json.loads((out / "eval.json").read_text())["scores"],
            weights,
        )
    a, b, c = runs["a"], runs["b"], runs["c"]
    assert a[:3] == b[:3]
    assert all(torch.equal(x, y) for x, y in zip(a[3].values(), b[3].values(), strict=True))
    assert a[0] != c[0] and a[1] != c[1]


@pytest.mark.slow
def test_dataset_reuse_and_env_mismatch(cli, tmp_path):
    out = tmp_path / "run"
    assert cli(*SMALL, f"hydra.run.dir={out}").returncode == 0
    reuse = tmp_path / "reuse"
    proc = cli(*SMALL, f"collector.dataset={out / 'dataset.npz'}", f"hydra.run.dir={reuse}")
    assert proc.returncode == 0, proc.stderr
    a = json.loads((out / "metrics.json").read_text())["rounds"][0]["dataset_sha256"]
    b = json.loads((reuse / "metrics.json").read_text())["rounds"][0]["dataset_sha256"]
    assert a == b  # trained on the very same data, without collecting
    proc = cli(
        *SMALL, "env.id=Acrobot-v1", f"collector.dataset={out / 'dataset.npz'}", f"hydra.run.dir={tmp_path / 'bad'}"
    )
    assert proc.returncode == 2 and "CartPole-v1" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli(f"checkpoint={out / 'policy.pt'}", "env.id=Acrobot-v1", entry="rl_lab.eval")
    assert proc.returncode == 2 and "4 observations and 2 actions" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- config errors Hydra finds, misspelt keys, --help, the end of a run (issue 12) ----------------------


def one_paragraph_error(proc, prog: str = "rl-lab") -> str:
    """Exit 2, no traceback, and the message on one line starting with '<prog>: error:'."""
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "Traceback" not in text and "HYDRA_FULL_ERROR" not in text
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    "overrides,needles",
    [
        (["trainer.epochs=abc"], ["trainer.epochs=abc", "could not be converted to Integer", "trainer.epochs=5"]),
        (["policy.hidden_sizes=abc"], ["policy.hidden_sizes", "list[int]"]),
        (["nonexistent_key=1"], ["nonexistent_key is not a key", "seed, device"]),
        (["trainer.lr=["], ["trainer.lr=["]),
        (["trainer.lr=1,2"], ["Ambiguous value", "--multirun"]),
        (["-m", "trainer.epochs=abc,2"], ["trainer.epochs=abc", "Integer"]),
        (["env=pendulumx"], ["env=pendulumx", "acrobot, cartpole", "env.id=Pendulum-v1"]),
        (["env=acrobt"], ["Did you mean env=acrobot?", "env.id=Acrobot-v1"]),
        (["-m", "env=pendulumx,cartpole"], ["env.id=Pendulum-v1"]),
        (["policy=smal"], ["Did you mean policy=small?"]),
    ],
)
def test_config_errors_hydra_finds_exit_2_in_one_paragraph(cli, tmp_path, overrides, needles):
    proc = cli(*overrides, "debug=fast")
    line = one_paragraph_error(proc)
    for needle in needles:
        assert needle in line, line
    assert "base_" not in line  # the schemas are no options to pick
    assert not (tmp_path / "outputs").exists() and not list(tmp_path.glob("multirun/**/.hydra"))  # no job ran


@pytest.mark.parametrize(
    "overrides,needles",
    [
        (["trainer.epochs=abc"], ["trainer.epochs=abc", "could not be converted to Integer", "trainer.epochs=5"]),
        (["trainer.epoch=3"], ["trainer.epoch is not a key", "Did you mean trainer.epochs?"]),
        (["+trainer.epoch=3"], ["trainer.epoch is not a key", "A leading '+'"]),
        (["env=mountaincarx"], ["env=mountaincarx", "env.id=MountainCar-v0"]),
        (["policy=smal"], ["Did you mean policy=small?"]),
    ],
)
def test_the_python_api_words_config_errors_as_the_cli_does(overrides, needles):
    """rl_lab.compose raises ConfigError with the CLI's paragraph, not Hydra's raw exception text."""
    with pytest.raises(ConfigError) as info:
        rl_lab.compose(overrides)
    message = str(info.value)
    for needle in needles:
        assert needle in message, message
    assert "\n" not in message and "full_key" not in message and "object_type" not in message


def test_hydra_full_error_still_shows_the_traceback(tmp_path):
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    cmd = [sys.executable, "-m", "rl_lab", "trainer.epochs=abc"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "trainer.epochs" in proc.stderr


@pytest.mark.parametrize(
    "args,entry",
    [
        (["+trainer.epoch=3"], "rl_lab"),
        (["trainer.epoch=3"], "rl_lab"),
        (["++trainer.epoch=3"], "rl_lab"),
        (["-m", "+trainer.epoch=1,2", "seed=0,1"], "rl_lab"),
        (["--cfg", "job", "+trainer.epoch=3"], "rl_lab"),
        (["checkpoint=x.pt", "+trainer.epoch=3"], "rl_lab.eval"),
    ],
)
def test_a_misspelt_key_is_refused_appended_or_not(cli, tmp_path, args, entry):
    proc = cli(*args, "debug=fast", entry=entry)
    line = one_paragraph_error(proc, "rl-lab-eval" if entry == "rl_lab.eval" else "rl-lab")
    assert "trainer.epoch is not a key" in line and "Did you mean trainer.epochs?" in line
    assert "epochs, batch_size, lr" in line  # the section's keys
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


def test_unknown_key_suggestions_and_the_composed_config_check():
    from hydra import compose, initialize_config_dir

    from rl_lab.app import CONFIG_DIR, to_config, unknown_key_message
    from rl_lab.errors import ConfigError

    assert "Did you mean policy.dropout?" in unknown_key_message("trainer.dropout")
    assert "Did you mean env.id?" in unknown_key_message("env.idd")
    assert "Did you mean" not in unknown_key_message("nonexistent_key")
    assert "top-level keys are env, collector" in unknown_key_message("foo.bar")
    # a '+' key that reached the job anyway (e.g. from a sweeper's parameters) is refused there too
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose(config_name="config", overrides=["debug=fast", "+trainer.epoch=3"])
    with pytest.raises(ConfigError, match=r"trainer\.epoch: .*Did you mean trainer\.epochs\?"):
        to_config(cfg)


def test_gym_id_suggestion_is_case_and_punctuation_insensitive():
    from rl_lab.app import gym_id_suggestion

    assert gym_id_suggestion("mountaincar") == "MountainCar-v0"
    assert gym_id_suggestion("MOUNTAIN_CAR") == "MountainCar-v0"
    assert gym_id_suggestion("cartpole") == "CartPole-v1"  # the newest version
    assert gym_id_suggestion("acrobt") == "Acrobot-v1"
    assert gym_id_suggestion("zzqqxxjj") is None


def test_help_is_rl_labs_own(cli):
    proc = cli("--help")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("rl-lab: learn a policy") and "powered by Hydra" not in out
    for text in ("rl-lab-eval checkpoint=", "rl-lab-report", "experiment=cem", "optimized_metric (default"):
        assert text in out
    for group in ("env:", "policy:", "collector:", "trainer:", "evaluator:", "experiment:", "launcher:"):
        assert f"\n  {group} " in out  # listed with its options
    assert "base_" not in out
    assert max(len(line) for line in out.splitlines()) < 100
    proc = cli("--help", entry="rl_lab.eval")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("rl-lab-eval: evaluate") and "powered by Hydra" not in proc.stdout
    assert "base_" not in proc.stdout and "\n  experiment:" not in proc.stdout  # only the groups it reads


def test_report_lines_fit_a_100_column_terminal():
    from dataclasses import replace

    from rl_lab.pipeline import format_round
    from rl_lab.results import CollectFigures, EvalFigures, RoundResult, TrainFigures

    c = CollectFigures(
        episodes=1_000_000, kept_episodes=22640, kept_fraction=0.02264, samples=2_262_141, score_mean=-300.0,
        score_std=80.0, score_max=50.0, threshold=50.0, action_balance=[1 / 6] * 6, env_steps=None,
        useful_steps=2_262_141, steps_per_second=None, seconds=1.83,
    )  # fmt: skip
    t = TrainFigures(
        history=[], epochs=1, samples=2_000_000, val_samples=0, final_loss=0.69314, train_accuracy=0.5,
        val_loss=None, val_accuracy=None, seconds=123.45, samples_per_second=1e4,
    )  # fmt: skip
    e = EvalFigures(
        env_id="x", episodes=100000, score_mean=-123.45, score_std=101.2, score_min=-500, score_median=-99.5,
        score_max=-61, success_rate=0.4567, reward_threshold=None, length_mean=1.0, action_counts=[1] * 6,
        action_balance=[1 / 6] * 6, seconds=12.34, screened=False,
    )  # fmt: skip
    r = RoundResult(round=3, collect=c, train=t, eval=e, dataset_sha256="", weights_sha256="", elapsed_seconds=1.0)
    text = format_round(r, rounds=5)
    # the log's message column on a 100-column terminal is 71 wide (rich's time and level take 29)
    assert max(len(line) for line in text.splitlines()) <= 70, text
    assert "1 epoch," in text and "epochs" not in text
    assert "lowest kept score 50" in text and "threshold" not in text
    assert text.count("choice ") == 6 and "min -500, median -99.5, max -61" in text
    assert "2 epochs," in format_round(replace(r, round=0, train=replace(t, epochs=2)), rounds=1)


def test_a_checkpoint_that_is_a_directory_is_named_as_one(tmp_path):
    from rl_lab.errors import ConfigError
    from rl_lab.policy import read_checkpoint

    with pytest.raises(ConfigError, match="is a directory") as info:
        read_checkpoint(tmp_path)
    assert "no such file" not in str(info.value)
    (tmp_path / "policy.pt").write_bytes(b"")
    with pytest.raises(
        ConfigError, match=re.escape(f"Give the policy.pt inside it: checkpoint='{tmp_path}/policy.pt'")
    ):
        read_checkpoint(tmp_path)


def test_eval_dir_is_next_to_the_checkpoint_unless_given(tmp_path):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from rl_lab.app import _eval_dir_override

    odd = tmp_path / "a run, 'quoted'"
    odd.mkdir()
    (odd / "policy.pt").write_bytes(b"")
    added = _eval_dir_override([f'checkpoint="{odd}/policy.pt"'])
    values = {o.key_or_group: o.value() for o in OverridesParser.create().parse_overrides(added)}
    stamp = "/eval/${now:%Y-%m-%d}_${now:%H-%M-%S}"
    assert values == {"hydra.run.dir": f"{odd}{stamp}", "hydra.sweep.dir": f"{odd}{stamp}"}
    assert _eval_dir_override([f"checkpoint={tmp_path}/missing.pt"]) == []  # the job says what is wrong
    given = _eval_dir_override([f'checkpoint="{odd}/policy.pt"', "hydra.run.dir=elsewhere"])
    assert [a.split("=")[0] for a in given] == ["hydra.sweep.dir"]


@pytest.mark.slow
def test_a_run_ends_with_its_paths_and_rl_lab_eval_writes_next_to_the_policy(cli, tmp_path):
    proc = cli(*SMALL)
    assert proc.returncode == 0, proc.stderr
    (run,) = (tmp_path / "outputs").glob("*/*")
    rel = run.relative_to(tmp_path)
    text = proc.stdout
    for line in (
        f"run dir:  {rel}",
        f"policy:   {rel}/policy.pt",
        f"evaluate: rl-lab-eval checkpoint={rel}/policy.pt",
        f"curves:   tensorboard --logdir {rel}",
    ):
        assert line in text, text
    proc = cli(f"checkpoint={rel}/policy.pt", "evaluator.episodes=3", entry="rl_lab.eval")
    assert proc.returncode == 0, proc.stderr
    (ev,) = (run / "eval").iterdir()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", ev.name)
    assert json.loads((ev / "eval.json").read_text())["episodes"] == 3 and (ev / ".hydra").is_dir()
    assert list((tmp_path / "outputs").glob("*/*")) == [run]  # the newest dir is still the trained policy
    assert f"run dir:  {ev.relative_to(tmp_path)}" in proc.stdout
