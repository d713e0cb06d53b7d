"""Robustness: Ctrl-C saves and resumes bit for bit, kill -9 never leaves a damaged file, fuzzed configs
either run or fail cleanly with a ConfigError (exit code 2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from rl_lab.app import CONFIG_DIR
from rl_lab.config import Config, validate
from rl_lab.data import load_dataset
from rl_lab.errors import ConfigError
from rl_lab.pipeline import run
from rl_lab.policy import load_policy

TRAIN_LONG = ["debug=fast", "collector.episodes=400", "trainer.epochs=40", "policy.hidden_sizes=[64]"]


def start(args: list[str], out: Path) -> subprocess.Popen:
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen(
        [sys.executable, "-m", "rl_lab", *args, f"hydra.run.dir={out}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, f"the run ended before {path.name} appeared: {proc.communicate()}"
        assert time.time() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.02)


def check_artifacts_complete(out: Path) -> None:
    """Every artifact that exists loads: nothing is half-written."""
    if (out / "dataset.npz").exists():
        load_dataset(out / "dataset.npz")
    for name in ("policy.pt", "policy_last.pt"):
        if (out / name).exists():
            load_policy(out / name)
    for name in ("eval.json", "metrics.json"):
        if (out / name).exists():
            json.loads((out / name).read_text())


@pytest.mark.slow
def test_ctrl_c_during_training_saves_and_resume_is_bit_identical(tmp_path):
    out = tmp_path / "run"
    proc = start(TRAIN_LONG, out)
    wait_for(out / "policy_last.pt", proc)
    t0 = time.time()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert time.time() - t0 < 10  # "about a second" on a quiet machine; loose bound for loaded CI
    assert "Traceback" not in stderr and f"rl-lab resume={out}" in stderr and "last complete checkpoint" in stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "interrupted"
    _, payload = load_policy(out / "policy_last.pt")
    assert payload["extra"]["round"] == 0 and 1 <= payload["extra"]["epoch"] < 40
    check_artifacts_complete(out)
    assert list((out / "tb").glob("events.*"))  # flushed

    resumed = subprocess.run(
        [sys.executable, "-m", "rl_lab", f"resume={out}", f"hydra.run.dir={tmp_path / 'r'}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    full = tmp_path / "full"
    done = subprocess.run(
        [sys.executable, "-m", "rl_lab", *TRAIN_LONG, f"hydra.run.dir={full}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    a, b = json.loads((out / "metrics.json").read_text()), json.loads((full / "metrics.json").read_text())
    assert a["status"] == "completed"
    assert a["weights_sha256"] == b["weights_sha256"], "resumed weights differ from an uninterrupted run's"
    assert (
        json.loads((out / "eval.json").read_text())["scores"] == json.loads((full / "eval.json").read_text())["scores"]
    )


@pytest.mark.slow
def test_ctrl_c_during_collection_stops_fast_without_a_dataset(tmp_path):
    out = tmp_path / "run"
    proc = start(["collector.episodes=50000000", "env.num_envs=64"], out)
    wait_for(out / "tb", proc)
    time.sleep(1.0)
    t0 = time.time()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert time.time() - t0 < 10
    assert "Traceback" not in stderr
    assert json.loads((out / "metrics.json").read_text())["status"] == "interrupted"
    assert not (out / "dataset.npz").exists()
    assert not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_kill_9_never_leaves_a_damaged_artifact(tmp_path):
    for i, delay in enumerate((0.0, 0.3, 0.8)):
        out = tmp_path / f"run{i}"
        proc = start(TRAIN_LONG, out)
        wait_for(out / ".hydra", proc)
        time.sleep(delay)
        wait_for(out / "tb", proc)
        time.sleep(delay)
        proc.kill()
        proc.communicate()
        check_artifacts_complete(out)


# --- fuzzing ---------------------------------------------------------------------------------------


def maybe(strategy):
    return st.one_of(st.none(), strategy)


OVERRIDES = st.fixed_dictionaries(
    {
        "collector.episodes": st.integers(-3, 120),
        "env.num_envs": st.integers(-2, 24),
        "trainer.epochs": st.integers(-1, 2),
        "trainer.batch_size": st.integers(-2, 200),
        "evaluator.episodes": st.integers(-1, 4),
        "collector.min_score": maybe(st.floats(-10, 120, allow_nan=False)),
        "collector.top_fraction": maybe(st.floats(-0.5, 1.5, allow_nan=False)),
        "policy.dropout": st.floats(-0.5, 1.5, allow_nan=False),
        "policy.activation": st.sampled_from(["relu", "tanh", "gelu", "swish", ""]),
        "policy.hidden_sizes": st.lists(st.integers(-2, 16), max_size=3),
        "trainer.lr": st.floats(-1e-2, 0.1, allow_nan=False),
        "trainer.val_fraction": st.floats(-0.5, 1.5, allow_nan=False),
        "evaluator.render": st.sampled_from(["none", "none", "fancy"]),
        "evaluator.video_format": st.sampled_from(["mp4", "gif", "avi"]),
        "env.id": st.sampled_from(["CartPole-v1", "CartPole-v1", "CartPole-v1", "NoSuch-v0", "Pendulum-v1"]),
    }
)


def compose_config(values: dict) -> Config:
    overrides = [
        f"{k}={'null' if v is None else json.dumps(v) if isinstance(v, list) else v}" for k, v in values.items()
    ]
    overrides = [o if not o.endswith("=") else o + "''" for o in overrides]
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose(config_name="config", overrides=["debug=fast", "evaluator.max_steps=30", *overrides])
    config = OmegaConf.to_object(cfg)
    assert isinstance(config, Config)
    return config


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(values=OVERRIDES)
def test_fuzzed_configs_run_or_fail_with_a_config_error(tmp_path_factory, values):
    out = tmp_path_factory.mktemp("fuzz")
    config = compose_config(values)
    try:
        validate(config)
        metrics = run(config, out)
    except ConfigError as e:
        message = str(e)
        assert message and "\n" not in message.strip() and len(message) < 1200  # one paragraph
        assert not list(out.glob("**/.*.tmp")), "a temp file was left behind"
        for name in ("policy.pt", "eval.json"):
            assert not (out / name).exists(), f"{name} written by a run that failed"
        return
    assert metrics["status"] == "completed"
    check_artifacts_complete(out)
    ev = json.loads((out / "eval.json").read_text())
    assert ev["episodes"] == config.evaluator.episodes and np.isclose(sum(ev["action_balance"]), 1.0)
