"""Watching a policy play: a pygame window (``human``), frames for video files (``video``), GIFs in TensorBoard.

Headless facts this module is built on (checked with pygame 2.6.1, pygame-ce 2.5.8 and gymnasium 1.4.0):

* ``render_mode="human"`` never fails without a display: SDL silently falls back to its ``offscreen``
  driver and nothing is shown. So we decide ourselves whether a window is possible
  (:func:`display_available`) and refuse ``human`` with a clear :class:`~rl_lab.errors.ConfigError`.
* ``rgb_array`` rendering works headless; ``SDL_VIDEODRIVER=dummy`` makes it quiet and deterministic.
* torch's ``SummaryWriter.add_video`` silently logs nothing with moviepy 2, so GIFs are encoded with
  Pillow and logged as an image summary (:func:`add_gif_summary`).

pygame, imageio and Pillow are imported lazily, inside the functions that need them, so that the
environment variables set by :func:`check_render_mode` are in place before pygame is imported and
so that importing this module stays cheap.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rl_lab.config import RENDER_MODES, VIDEO_FORMATS
from rl_lab.errors import ConfigError, MissingExtraError
from rl_lab.utils import atomic_path

log = logging.getLogger(__name__)

ActFn = Callable[[np.ndarray], np.ndarray]
"""A batched policy: observations ``(B, obs_dim)`` float32 -> actions ``(B,)`` int64 (or ``(B, d)`` float32).

The same alias as :data:`rl_lab.policy.ActFn`, declared here so that importing this module does not import torch."""

_HEADLESS_DRIVERS = ("dummy", "offscreen")
# GIF frame delays are stored in 1/100 s; browsers (and TensorBoard's <img>) replace delays of
# 0-10 ms by 100 ms, so a 60 fps GIF would play at 10 fps. 20 ms (50 fps) is the fastest safe delay.
_MIN_GIF_DURATION_MS = 20


@dataclass
class RenderedEpisode:
    """One episode played by :func:`play_episodes`."""

    score: float
    length: int
    action_counts: np.ndarray  # (n_actions,) int64: how often each action was taken (empty for Box actions)
    frames: list[np.ndarray] | None  # HxWx3 uint8 frames (video mode only), first frame = after reset
    actions: np.ndarray | None = None  # Box actions: (length, d) float32, every action taken


def display_available() -> bool:
    """True only if a display is set (``DISPLAY`` or ``WAYLAND_DISPLAY``) and SDL is not forced headless."""
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    driver = os.environ.get("SDL_VIDEODRIVER", "").strip().lower()
    return has_display and driver not in _HEADLESS_DRIVERS


def check_render_mode(mode: str) -> None:
    """Validate ``evaluator.render`` and prepare the SDL environment variables for it.

    Call this before pygame is imported (it sets ``PYGAME_HIDE_SUPPORT_PROMPT=1`` and, for ``video``
    on a headless machine, ``SDL_VIDEODRIVER=dummy``).

    Raises:
        ConfigError: unknown mode, or ``human`` when no window can be shown.
    """
    os.environ["PYGAME_HIDE_SUPPORT_PROMPT"] = "1"
    if mode not in RENDER_MODES:
        raise ConfigError(
            f"evaluator.render={mode!r} is not a render mode. Use one of: none (no rendering), "
            "human (a pygame window; needs a display), video (mp4/gif files; works headless)."
        )
    if mode == "human" and not display_available():
        driver = os.environ.get("SDL_VIDEODRIVER", "")
        why = (
            f"SDL_VIDEODRIVER={driver} forces a headless driver"
            if driver.strip().lower() in _HEADLESS_DRIVERS
            else "neither DISPLAY nor WAYLAND_DISPLAY is set"
        )
        raise ConfigError(
            f"evaluator.render=human needs a display to open a window, but there is no display here ({why}; "
            "SDL would silently render to nothing). Use evaluator.render=video to write the episodes to "
            "mp4/gif files instead, or run under a virtual display: xvfb-run -a rl-lab-eval ... "
            "evaluator.render=human (apt packages xvfb and xauth)."
        )
    if mode == "video" and not display_available():
        if os.environ.get("SDL_VIDEODRIVER", "").strip().lower() not in _HEADLESS_DRIVERS:
            os.environ["SDL_VIDEODRIVER"] = "dummy"


def play_episodes(
    act_fn: ActFn,
    env_id: str,
    episodes: int,
    seed: int,
    mode: str,
    max_steps: int | None = None,
    fps: float | None = None,
    overlay: bool = True,
) -> list[RenderedEpisode]:
    """Play ``episodes`` episodes one after another in one (non-vectorized) rendered env.

    Episode ``k`` is reset with ``seed + k``; actions are ``act_fn(obs[None])[0]``.

    * ``human``: the env draws its own window at ``render_fps`` (``fps`` overrides it); a small text
      overlay (episode, step, score, last action) is drawn on top when ``overlay``. Closing the window
      or Ctrl-C ends playback: the env is closed and the episodes *completed* so far are returned.
    * ``video``: frames come from ``env.render()`` (``rgb_array``), including the first frame after
      reset, so an episode of length ``L`` has ``L + 1`` frames.
    * ``none``: no rendering at all (``frames`` is None).

    Raises:
        ConfigError: bad mode (see :func:`check_render_mode`), unknown env id, actions neither Discrete nor Box.
    """
    check_render_mode(mode)
    import gymnasium as gym

    kwargs: dict[str, Any] = {"render_mode": {"human": "human", "video": "rgb_array"}.get(mode)}
    if max_steps is not None:
        kwargs["max_episode_steps"] = int(max_steps)
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.Error as e:
        raise ConfigError(f"cannot create environment {env_id!r} for rendering: {e}") from e
    human = mode == "human"
    overlay_drawer = _Overlay() if (human and overlay) else None
    done: list[RenderedEpisode] = []
    try:
        space = env.action_space
        box = isinstance(space, gym.spaces.Box)
        if not (box or isinstance(space, gym.spaces.Discrete)):
            raise ConfigError(
                f"environment {env_id!r} has action space {space}; rendering a policy needs Discrete or Box actions."
            )
        n_actions, start = (0, 0) if box else (int(space.n), int(space.start))
        if human and fps is not None:
            # render_fps is a class attribute: give this env instance its own copy.
            md = {**env.unwrapped.metadata, "render_fps": fps}
            env.unwrapped.metadata = md
            env.metadata = md
        for k in range(episodes):
            obs, _ = env.reset(seed=seed + k)
            frames: list[np.ndarray] | None = [_frame(env.render())] if mode == "video" else None
            counts = np.zeros(n_actions, dtype=np.int64)
            taken: list[np.ndarray] = []
            score, length, last_action = 0.0, 0, None
            if human and _after_human_render(overlay_drawer, k, episodes, length, score, last_action):
                return done
            while True:
                out = np.asarray(act_fn(np.asarray(obs, dtype=np.float32)[None]))[0]
                if box:
                    action: Any = out.astype(space.dtype)
                    taken.append(out)
                else:
                    action = int(out)
                    counts[action - start] += 1
                obs, reward, terminated, truncated, _ = env.step(action)
                score += float(reward)
                length += 1
                last_action = action
                if frames is not None:
                    frames.append(_frame(env.render()))
                if human and _after_human_render(overlay_drawer, k, episodes, length, score, last_action):
                    return done
                if terminated or truncated:
                    break
            acts = np.asarray(taken, dtype=np.float32).reshape(length, -1) if box else None
            done.append(RenderedEpisode(score=score, length=length, action_counts=counts, frames=frames, actions=acts))
    except KeyboardInterrupt:
        if not human:
            raise
        log.info("playback interrupted (Ctrl-C) after %d completed episode(s)", len(done))
        return done
    finally:
        env.close()
        if human:
            _quit_display()
    return done


def _frame(img: Any) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"env.render() returned an array of shape {a.shape}, expected HxWx3")
    return a.astype(np.uint8, copy=False)


def _after_human_render(drawer: _Overlay | None, k: int, episodes: int, step: int, score: float, action: Any) -> bool:
    """After the env drew a human frame: handle window events, draw the overlay. True = window closed."""
    import pygame

    if not pygame.display.get_init():  # an env whose human mode does not use pygame: nothing to do
        return False
    # Drain the whole queue (not just QUIT): the env only pumps events, and a full SDL queue drops new ones.
    if any(ev.type == pygame.QUIT for ev in pygame.event.get()):
        log.info("render window closed; stopping playback after %d completed episode(s)", k)
        return True
    if drawer is not None:
        last = (
            "-"
            if action is None
            else (
                str(action) if np.ndim(action) == 0 else np.array2string(np.asarray(action), precision=2, separator=" ")
            )
        )
        drawer.draw(f"episode {k + 1}/{episodes}  step {step}  score {score:g}  action {last}")
    return False


def _quit_display() -> None:
    """Make sure no window stays open, whatever the env's close() did."""
    import sys

    pygame = sys.modules.get("pygame")
    if pygame is not None and pygame.display.get_init():
        pygame.display.quit()


class _Overlay:
    """A one-line text overlay on the pygame display surface; silently disabled without fonts."""

    def __init__(self) -> None:
        self._font: Any = None
        self._failed = False

    def draw(self, text: str) -> None:
        if self._failed:
            return
        try:
            import pygame

            surface = pygame.display.get_surface()
            if surface is None:
                return
            if self._font is None:
                pygame.font.init()
                self._font = pygame.font.Font(None, 20)  # pygame's bundled default font
            label = self._font.render(text, True, (0, 0, 0))
            w, h = label.get_size()
            sw, sh = surface.get_size()
            if w + 8 > sw or h + 6 > sh:  # does not fit: shorten to what fits, else skip
                label = self._font.render(text.split("  score")[0], True, (0, 0, 0))
                w, h = label.get_size()
                if w + 8 > sw or h + 6 > sh:
                    return
            box = pygame.Surface((w + 8, h + 6), pygame.SRCALPHA)
            box.fill((255, 255, 255, 200))
            surface.blit(box, (2, 2))
            surface.blit(label, (6, 5))
            pygame.display.flip()
        except Exception as e:  # no SDL_ttf / font file, or a display going away: never crash playback
            self._failed = True
            log.warning("render overlay disabled: %s", e)


def write_video(frames: list[np.ndarray], path: Path, fmt: str, fps: float) -> Path:
    """Write HxWx3 uint8 ``frames`` to ``path`` as ``mp4`` (h264) or animated ``gif``, atomically.

    Raises:
        ConfigError: unknown ``fmt`` (``evaluator.video_format``).
        MissingExtraError: imageio / imageio-ffmpeg (mp4) or Pillow (gif) is not installed.
        ValueError: no frames.
    """
    if fmt not in VIDEO_FORMATS:
        raise ConfigError(f"evaluator.video_format={fmt!r} is not supported. Use one of: {', '.join(VIDEO_FORMATS)}.")
    if not frames:
        raise ValueError(f"no frames to write to {path}")
    path = Path(path)
    if fmt == "mp4":
        _write_mp4(frames, path, fps)
    else:
        _write_gif(frames, path, fps)
    return path


def _write_mp4(frames: list[np.ndarray], path: Path, fps: float) -> None:
    try:
        import imageio.v2 as iio
    except ImportError as e:
        raise MissingExtraError("imageio", "video", "Writing mp4 evaluation videos") from e
    try:
        import imageio_ffmpeg  # noqa: F401  (ships the ffmpeg binary imageio's FFMPEG plugin runs)
    except ImportError as e:
        raise MissingExtraError("imageio-ffmpeg", "video", "Writing mp4 evaluation videos") from e
    # yuv420p (what players accept) needs even width and height: crop a trailing odd row/column.
    h, w = frames[0].shape[:2]
    h2, w2 = h - h % 2, w - w % 2
    with atomic_path(path, suffix=".mp4") as tmp:
        writer = iio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", macro_block_size=1)
        try:
            for f in frames:
                writer.append_data(np.ascontiguousarray(np.asarray(f, dtype=np.uint8)[:h2, :w2, :3]))
        finally:
            writer.close()


def _pil():
    try:
        from PIL import Image
    except ImportError as e:
        raise MissingExtraError("pillow", "video", "Writing GIF evaluation videos") from e
    return Image


def _gif_bytes_to(target: Any, frames: list[np.ndarray], duration_ms: int) -> None:
    Image = _pil()
    ims = [f if isinstance(f, Image.Image) else Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    ims[0].save(
        target,
        format="GIF",
        save_all=True,
        append_images=ims[1:],
        duration=max(_MIN_GIF_DURATION_MS, int(duration_ms)),
        loop=0,
    )


def _write_gif(frames: list[np.ndarray], path: Path, fps: float) -> None:
    _pil()  # fail with MissingExtraError before creating a temp file
    with atomic_path(path, suffix=".gif") as tmp:
        _gif_bytes_to(tmp, frames, int(1000 / fps))


def add_gif_summary(
    writer: Any,
    tag: str,
    frames: list[np.ndarray],
    step: int,
    fps: float,
    max_frames: int = 300,
    scale: float = 0.5,
) -> None:
    """Log ``frames`` as an animated GIF image summary on a torch ``SummaryWriter``.

    Frames are downscaled by ``scale`` and evenly subsampled to at most ``max_frames`` (the frame
    delay grows accordingly, so the clip keeps its real-time length) to keep event files small.
    torch's ``add_video`` is not used: with moviepy 2 it silently logs nothing.
    """
    if not frames:
        return
    import io

    from tensorboard.compat.proto.summary_pb2 import Summary

    Image = _pil()
    n = len(frames)
    idx = np.unique(np.linspace(0, n - 1, min(n, max(1, int(max_frames)))).round().astype(int))
    h, w = np.asarray(frames[0]).shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    ims = []
    for i in idx:
        im = Image.fromarray(np.asarray(frames[i], dtype=np.uint8))
        ims.append(im if im.size == size else im.resize(size, Image.Resampling.BILINEAR))
    duration_ms = int(1000 / fps * n / len(idx))
    buf = io.BytesIO()
    _gif_bytes_to(buf, ims, duration_ms)
    img = Summary.Image(height=size[1], width=size[0], colorspace=3, encoded_image_string=buf.getvalue())
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=img)]), step)
