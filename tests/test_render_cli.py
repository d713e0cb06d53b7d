"""Rendering from the real CLI: video files + TensorBoard GIFs, and a clear refusal of a window without a display."""

from __future__ import annotations

import json

import imageio.v2 as imageio
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

pytestmark = pytest.mark.slow

SMALL = ["debug=fast", "collector.episodes=300", "evaluator.episodes=3"]


def test_video_after_training_and_from_a_checkpoint(cli, tmp_path):
    out = tmp_path / "run"
    proc = cli(*SMALL, "evaluator.render=video", "evaluator.render_episodes=2", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr
    videos = sorted((out / "videos").iterdir())
    assert [v.name for v in videos] == ["episode_0.mp4", "episode_1.mp4"]
    frames = imageio.mimread(videos[0])
    ev = json.loads((out / "eval.json").read_text())
    assert len(frames) == ev["scores"][0] + 1  # the first frame after reset, then one per step
    assert frames[0].shape == (400, 600, 3)
    assert ev["episodes"] == 3  # rendered episodes count in the statistics

    ev_dir = tmp_path / "ev"
    proc = cli(
        f"checkpoint={out / 'policy.pt'}",
        "evaluator.episodes=2",
        "evaluator.render=video",
        "evaluator.video_format=gif",
        f"hydra.run.dir={ev_dir}",
        entry="rl_lab.eval",
    )
    assert proc.returncode == 0, proc.stderr
    gif = Image.open(ev_dir / "videos" / "episode_0.gif")
    assert gif.format == "GIF" and gif.n_frames > 1
    ea = EventAccumulator(str(ev_dir / "tb"), size_guidance={"images": 0})
    ea.Reload()
    assert "eval/episode_0" in ea.Tags()["images"]
    assert ea.Images("eval/episode_0")[0].encoded_image_string[:4] == b"GIF8"


def test_human_without_a_display_is_refused_with_advice(cli, tmp_path):
    out = tmp_path / "run"
    assert cli(*SMALL, f"hydra.run.dir={out}").returncode == 0
    proc = cli(
        f"checkpoint={out / 'policy.pt'}",
        "evaluator.render=human",
        entry="rl_lab.eval",
        env={"DISPLAY": "", "WAYLAND_DISPLAY": ""},
    )
    assert proc.returncode == 2
    assert "evaluator.render=video" in proc.stderr and "xvfb-run" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_human_without_a_display_is_refused_before_any_work(cli, tmp_path):
    out = tmp_path / "run"
    proc = cli(*SMALL, "evaluator.render=human", f"hydra.run.dir={out}", env={"DISPLAY": "", "WAYLAND_DISPLAY": ""})
    assert proc.returncode == 2, proc.stderr
    assert "evaluator.render=video" in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "dataset.npz").exists() and not (out / "policy.pt").exists()  # nothing collected or trained
    assert "collect:" not in proc.stdout
