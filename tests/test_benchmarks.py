"""The benchmark's baselines (experiments/benchmarks/seed_script.py) and its arithmetic, on tiny inputs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "experiments" / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    """(run.py, seed_script.py) as modules with their own names; run.py imports seed_script from its folder."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("benchmarks_run", BENCH / "run.py")
        run = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(run)
        yield run, sys.modules["seed_script"]
    finally:
        sys.path.remove(str(BENCH))


def test_flops_of_the_recipe_mlp(bench):
    run, _ = bench
    # 2 x (4*128 + 128*256 + 256*512 + 512*256 + 256*128 + 128*2) multiply-adds: 0.66 MFLOP a sample forward;
    # x3 with the backward over 5 epochs of ~19.7k samples gives the ~194 GFLOP the anchors state.
    assert run.mlp_forward_flops([4, *run.HIDDEN, 2]) == 656_896
    assert run.gemm_peak(n=64, calls=3) > 0


def test_the_plain_training_loop_validates_every_epoch_and_takes_class_indices(bench):
    _, seed_script = bench
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    y = (x[:, 2] > 0).astype(np.int64)
    torch.manual_seed(0)
    model, figures = seed_script.train_model(x, y, epochs=2, validation=(x[:64], y[:64]), verbose=False)
    assert set(figures) == {"train_loss", "train_accuracy", "val_accuracy"} and 0 <= figures["val_accuracy"] <= 1
    one_hot = np.eye(2, dtype=np.int64)[y]  # the blog's targets train the same way
    torch.manual_seed(0)
    _, figures_one_hot = seed_script.train_model(x, one_hot, epochs=2, verbose=False)
    assert figures_one_hot["train_loss"] == pytest.approx(figures["train_loss"])


def test_play_reports_the_lowest_score_and_the_steps(bench, capsys):
    _, seed_script = bench
    env = gym.make("CartPole-v1")
    res = seed_script.play(env, seed_script.neural_network_model(4), games=3, seed=7)
    env.close()
    assert res["score_min"] <= res["score_mean"] and res["steps"] == round(3 * res["score_mean"])
    assert "Average Score" in capsys.readouterr().out
