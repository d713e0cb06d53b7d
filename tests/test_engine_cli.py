"""The engine as a user meets it: the CLI on MountainCar, LunarLander, custom envs, machines without EnvPool or Box2D.

``tests/without`` holds stand-ins for ``envpool`` and ``Box2D`` whose import fails, as on a machine
where they are not installed: put on ``PYTHONPATH`` they shadow the real packages.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rl_lab.envs import available_cores, envpool_ids

TESTS = Path(__file__).resolve().parent
WITHOUT = {"PYTHONPATH": str(TESTS / "without")}
TINY = ("collector.episodes=64", "policy.hidden_sizes=[32]", "trainer.epochs=1", "evaluator.episodes=8")


def run_dir(tmp_path: Path) -> Path:
    (out,) = (tmp_path / "outputs").glob("*/*")
    return out


@pytest.mark.slow
def test_mountaincar_random_play_is_refused_with_the_reason(cli, tmp_path):
    r = cli("env.id=MountainCar-v0", "collector.episodes=50")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    msg = " ".join(r.stderr.split())
    assert "all 50 collected episodes scored exactly -200 (all 200 steps long)" in msg
    assert "sparse reward" in msg and "collector.max_steps" in msg
    out = run_dir(tmp_path)
    assert not list(out.rglob("*.npz")) and not list(out.rglob("*.pt"))  # nothing half-written
    assert json.loads((out / "metrics.json").read_text())["status"] == "failed"


@pytest.mark.slow
def test_lunarlander_runs_end_to_end(cli, tmp_path):
    r = cli("env=lunarlander", "collector.min_score=null", "collector.top_fraction=0.25", *TINY)
    assert r.returncode == 0, r.stderr
    metrics = json.loads((run_dir(tmp_path) / "metrics.json").read_text())
    assert metrics["env_id"] == "LunarLander-v3" and metrics["status"] == "completed"
    assert metrics["backend"] == ("envpool" if envpool_ids() is not None else "gymnasium")
    assert metrics["env_threads"] == available_cores()  # a single run: every core it may use
    assert -1000 < metrics["collect"]["score_mean"] < 0  # random landers crash (about -180); uint8 actions gave -2,200
    assert len(metrics["eval"]["action_balance"]) == 4


@pytest.mark.slow
def test_without_box2d_lunarlander_names_the_extra(cli):
    r = cli("env.id=LunarLander-v3", env=WITHOUT)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "pip install -e '.[box2d]'" in r.stderr and "env.id='LunarLander-v3'" in r.stderr


@pytest.mark.slow
def test_without_mujoco_hopper_names_the_extra(cli):
    r = cli("env.id=Hopper-v5", env=WITHOUT)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "pip install -e '.[mujoco]'" in r.stderr and "env.id='Hopper-v5'" in r.stderr


@pytest.mark.slow
def test_without_envpool_backend_envpool_names_the_extra_and_auto_falls_back(cli, tmp_path):
    r = cli("env.id=Acrobot-v1", "env.backend=envpool", env=WITHOUT)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "pip install -e '.[envpool]'" in r.stderr
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("*.npz"))
    r = cli("env.id=CartPole-v1", "env.backend=gymnasium", *TINY, env=WITHOUT)  # the rest runs without EnvPool
    assert r.returncode == 0, r.stderr


def test_auto_falls_back_to_gymnasium_without_envpool(monkeypatch):
    from rl_lab import envs

    monkeypatch.setattr(envs, "envpool_ids", lambda: None)
    assert envs.resolve_backend("Acrobot-v1") == "gymnasium"
    assert envs.resolve_backend("CartPole-v1") == "native"
    assert type(envs.make_vec_env("LunarLander-v3", 2, None)).__name__ == "SyncVectorEnv"


@pytest.mark.slow
def test_custom_env_in_module_id_form_trains_and_evaluates(cli, tmp_path):
    env = {"PYTHONPATH": str(TESTS)}
    r = cli("env.id=rl_lab_toy_env:Toy-v0", "collector.min_score=7", "env.num_envs=16", *TINY, env=env)
    assert r.returncode == 0, r.stderr
    out = run_dir(tmp_path)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["env_id"] == "rl_lab_toy_env:Toy-v0" and metrics["backend"] == "gymnasium"
    r = cli(f"checkpoint={out / 'policy.pt'}", "evaluator.episodes=4", entry="rl_lab.eval", env=env)
    assert r.returncode == 0, r.stderr


@pytest.mark.slow
def test_unknown_backend_and_native_for_other_envs_are_refused(cli):
    r = cli("env.backend=native", "env.id=Acrobot-v1")
    assert r.returncode == 2 and "CartPole only" in r.stderr
    r = cli("env.backend=envpool", "env.id=rl_lab_toy_env:Toy-v0", env={"PYTHONPATH": str(TESTS)})
    assert r.returncode == 2 and "EnvPool has no env" in r.stderr


def test_async_vectorization_gives_the_sync_data():
    import numpy as np

    from rl_lab.collect import collect
    from rl_lab.envs import make_vec_env

    hashes = []
    for mode in ("sync", "async"):
        venv = make_vec_env("CartPole-v1", 3, 500, backend="gymnasium", vectorization=mode)
        ds, _ = collect(venv, np.random.default_rng(0), 12, max_steps=500, seed=4, top_fraction=0.5)
        venv.close()
        hashes.append(ds.content_hash())
    assert type(venv).__name__ == "AsyncVectorEnv" and hashes[0] == hashes[1]
