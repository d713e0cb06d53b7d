"""Tests of rl_lab.render: render-mode checks, rendered playback, video files, TensorBoard GIFs, a real X window."""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rl_lab import render
from rl_lab.errors import ConfigError, MissingExtraError
from rl_lab.render import (
    RenderedEpisode,
    add_gif_summary,
    check_render_mode,
    display_available,
    play_episodes,
    write_video,
)

_ENV_KEYS = ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER", "PYGAME_HIDE_SUPPORT_PROMPT")


@pytest.fixture(autouse=True)
def _restore_env():
    """check_render_mode writes os.environ itself: put the SDL/display variables back after each test."""
    saved = {k: os.environ.get(k) for k in _ENV_KEYS}
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def headless(monkeypatch):
    for k in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(k, raising=False)


@pytest.fixture
def dummy_sdl(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("PYGAME_HIDE_SUPPORT_PROMPT", "1")


def always(action: int):
    return lambda obs: np.full(len(obs), action, dtype=np.int64)


def balance(obs: np.ndarray) -> np.ndarray:
    """A CartPole controller that keeps the pole up for hundreds of steps."""
    return (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)


# --- check_render_mode / display_available ------------------------------------------------------


def test_human_without_display_is_a_config_error(headless):
    assert not display_available()
    with pytest.raises(ConfigError) as ei:
        check_render_mode("human")
    msg = str(ei.value)
    assert "evaluator.render" in msg and "xvfb" in msg and "evaluator.render=video" in msg
    assert "DISPLAY" in msg
    assert ei.value.exit_code == 2
    assert os.environ["PYGAME_HIDE_SUPPORT_PROMPT"] == "1"


@pytest.mark.parametrize("driver", ["dummy", "offscreen"])
def test_human_with_display_but_headless_sdl_driver_is_a_config_error(headless, monkeypatch, driver):
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setenv("SDL_VIDEODRIVER", driver)
    assert not display_available()
    with pytest.raises(ConfigError) as ei:
        check_render_mode("human")
    assert "evaluator.render" in str(ei.value) and "xvfb" in str(ei.value)
    assert f"SDL_VIDEODRIVER={driver}" in str(ei.value)


@pytest.mark.parametrize("var", ["DISPLAY", "WAYLAND_DISPLAY"])
def test_human_with_display_passes(headless, monkeypatch, var):
    monkeypatch.setenv(var, ":0" if var == "DISPLAY" else "wayland-0")
    assert display_available()
    check_render_mode("human")
    assert "SDL_VIDEODRIVER" not in os.environ


def test_video_headless_sets_dummy_driver(headless):
    check_render_mode("video")
    assert os.environ["SDL_VIDEODRIVER"] == "dummy"
    assert os.environ["PYGAME_HIDE_SUPPORT_PROMPT"] == "1"


def test_video_with_display_leaves_driver_alone(headless, monkeypatch):
    monkeypatch.setenv("DISPLAY", ":0")
    check_render_mode("video")
    assert "SDL_VIDEODRIVER" not in os.environ


def test_none_mode_passes_headless(headless):
    check_render_mode("none")


@pytest.mark.parametrize("mode", ["rgb_array", "Human", ""])
def test_unknown_mode_is_a_config_error(mode):
    with pytest.raises(ConfigError, match="none.*human.*video"):
        check_render_mode(mode)


# --- play_episodes ------------------------------------------------------------------------------


def test_play_video_mode_constant_action(headless):
    eps = play_episodes(always(0), "CartPole-v1", episodes=2, seed=3, mode="video", max_steps=8)
    assert len(eps) == 2
    for ep in eps:
        assert isinstance(ep, RenderedEpisode)
        assert ep.length == 8  # always-left falls after ~10 steps, so the time limit ends it
        assert ep.score == pytest.approx(8.0)
        assert ep.action_counts.dtype == np.int64
        assert ep.action_counts.tolist() == [ep.length, 0]
        assert ep.frames is not None and len(ep.frames) == ep.length + 1
        for f in (ep.frames[0], ep.frames[-1]):
            assert f.shape == (400, 600, 3) and f.dtype == np.uint8
            assert len(np.unique(f.reshape(-1, 3), axis=0)) > 1  # not blank
        assert not np.array_equal(ep.frames[0], ep.frames[-1])  # the cart moved
    assert os.environ["SDL_VIDEODRIVER"] == "dummy"


def test_play_video_mode_terminates_and_seeds(headless):
    a = play_episodes(always(1), "CartPole-v1", episodes=2, seed=0, mode="video")
    b = play_episodes(always(1), "CartPole-v1", episodes=2, seed=0, mode="video")
    for ep in a:
        assert ep.length < 50  # pole falls: terminated, not truncated
        assert ep.action_counts.tolist() == [0, ep.length]
        assert ep.score == pytest.approx(ep.length)
    assert [e.length for e in a] == [e.length for e in b]
    assert all(np.array_equal(x.frames[0], y.frames[0]) for x, y in zip(a, b, strict=True))
    # episode k is reset with seed + k: the two episodes start differently
    assert not np.array_equal(a[0].frames[0], a[1].frames[0])


def test_play_none_mode_has_no_frames(headless):
    (ep,) = play_episodes(balance, "CartPole-v1", episodes=1, seed=0, mode="none", max_steps=40)
    assert ep.frames is None and ep.length == 40 and ep.action_counts.sum() == 40


def test_play_bad_env_and_mode(headless):
    with pytest.raises(ConfigError, match="Nope-v0"):
        play_episodes(always(0), "Nope-v0", episodes=1, seed=0, mode="video")
    with pytest.raises(ConfigError):
        play_episodes(always(0), "CartPole-v1", episodes=1, seed=0, mode="window")
    with pytest.raises(ConfigError, match="Discrete or Box"):
        play_episodes(always(0), "rl_lab_test/MultiDiscrete-v0", episodes=1, seed=0, mode="video")


def test_play_box_actions_records_them(headless):
    """Pendulum-v1 (Box actions): the episode's float actions are kept for the statistics, frames are drawn."""
    (ep,) = play_episodes(
        lambda obs: np.full((obs.shape[0], 1), 0.5, np.float32), "Pendulum-v1", episodes=1, seed=0, mode="video",
        max_steps=5,
    )  # fmt: skip
    assert ep.length == 5 and ep.actions.shape == (5, 1) and (ep.actions == 0.5).all()
    assert len(ep.frames) == 6 and ep.action_counts.size == 0


def test_play_video_mode_ctrl_c_propagates(headless):
    def act(obs):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        play_episodes(act, "CartPole-v1", episodes=1, seed=0, mode="video", max_steps=5)


# human mode on SDL's dummy driver (no window, but the same code path): check_render_mode is bypassed.


@pytest.fixture
def human_on_dummy(monkeypatch, dummy_sdl):
    monkeypatch.setattr(render, "check_render_mode", lambda mode: None)


def _display_closed() -> bool:
    import pygame

    return not pygame.display.get_init()


def test_human_mode_plays_and_closes_the_window(human_on_dummy):
    t = time.monotonic()
    eps = play_episodes(always(0), "CartPole-v1", episodes=2, seed=0, mode="human", max_steps=5, fps=500)
    assert [e.length for e in eps] == [5, 5] and all(e.frames is None for e in eps)
    assert time.monotonic() - t < 2.0  # fps override honoured (50 fps default would take 0.2 s, fine too)
    assert _display_closed()


def test_human_mode_fps_override_does_not_leak_into_the_env_class(human_on_dummy):
    import gymnasium as gym

    play_episodes(always(0), "CartPole-v1", episodes=1, seed=0, mode="human", max_steps=2, fps=123)
    assert gym.make("CartPole-v1").unwrapped.metadata["render_fps"] == 50


def test_human_mode_overlay_is_drawn(human_on_dummy):
    import pygame

    seen: dict[str, bool] = {}

    def act(obs):
        surf = pygame.display.get_surface()
        corner = pygame.surfarray.array3d(surf)[:150, :16]  # (x, y, 3): top-left, white in CartPole
        seen.setdefault("dark", False)
        seen["dark"] |= bool((corner.sum(axis=2) < 200).any())
        return np.zeros(len(obs), np.int64)

    play_episodes(act, "CartPole-v1", episodes=1, seed=0, mode="human", max_steps=3, fps=500)
    assert seen["dark"], "no overlay text in the top-left corner"

    seen.clear()
    play_episodes(act, "CartPole-v1", episodes=1, seed=0, mode="human", max_steps=3, fps=500, overlay=False)
    assert not seen["dark"]


def test_human_mode_overlay_without_fonts_does_not_crash(human_on_dummy, monkeypatch):
    import pygame

    def no_font(*a, **k):
        raise pygame.error("font not initialized")

    monkeypatch.setattr(pygame.font, "Font", no_font)
    eps = play_episodes(always(0), "CartPole-v1", episodes=1, seed=0, mode="human", max_steps=3, fps=500)
    assert eps[0].length == 3


def test_human_mode_window_close_returns_completed_episodes(human_on_dummy):
    import pygame

    calls = {"n": 0}

    def act(obs):
        calls["n"] += 1
        if calls["n"] == 7:  # during the 2nd episode (the 1st has 5 steps)
            pygame.event.post(pygame.event.Event(pygame.QUIT))
        return np.zeros(len(obs), np.int64)

    eps = play_episodes(act, "CartPole-v1", episodes=3, seed=0, mode="human", max_steps=5, fps=500)
    assert [e.length for e in eps] == [5]
    assert calls["n"] == 7  # stopped right after the step that saw the close
    assert _display_closed()


def test_human_mode_ctrl_c_returns_completed_episodes(human_on_dummy):
    calls = {"n": 0}

    def act(obs):
        calls["n"] += 1
        if calls["n"] == 13:  # during the 3rd episode
            raise KeyboardInterrupt
        return np.zeros(len(obs), np.int64)

    eps = play_episodes(act, "CartPole-v1", episodes=4, seed=0, mode="human", max_steps=5, fps=500)
    assert [e.length for e in eps] == [5, 5]
    assert _display_closed()


# --- write_video --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    (ep,) = play_episodes(always(0), "CartPole-v1", episodes=1, seed=0, mode="video", max_steps=9)
    assert ep.frames is not None
    return ep.frames


def test_write_mp4(tmp_path, frames):
    import imageio.v2 as iio

    out = write_video(frames, tmp_path / "ep.mp4", "mp4", fps=50)
    assert out == tmp_path / "ep.mp4" and out.stat().st_size > 0
    back = iio.mimread(out)
    assert abs(len(back) - len(frames)) <= 1
    assert back[0].shape == (400, 600, 3)
    assert sorted(os.listdir(tmp_path)) == ["ep.mp4"]  # no temp files left


def test_write_mp4_odd_size_is_cropped_to_even(tmp_path):
    import imageio.v2 as iio

    rng = np.random.default_rng(0)
    fr = [rng.integers(0, 255, (101, 151, 3), dtype=np.uint8) for _ in range(3)]
    out = write_video(fr, tmp_path / "odd.mp4", "mp4", fps=10)
    assert iio.mimread(out)[0].shape == (100, 150, 3)


def test_write_gif(tmp_path, frames):
    from PIL import Image

    out = write_video(frames, tmp_path / "ep.gif", "gif", fps=50)
    with Image.open(out) as im:
        assert im.format == "GIF" and im.size == (600, 400)
        assert im.n_frames > 1
        assert im.info["loop"] == 0
        # 20 ms a frame; Pillow merges identical consecutive frames and adds up their delays
        assert im.info["duration"] % 20 == 0
    assert sorted(os.listdir(tmp_path)) == ["ep.gif"]


def test_write_gif_fast_fps_keeps_a_playable_delay(tmp_path, frames):
    from PIL import Image

    out = write_video(frames, tmp_path / "fast.gif", "gif", fps=120)
    with Image.open(out) as im:
        assert im.info["duration"] >= 20  # browsers turn 0-10 ms delays into 100 ms


def test_write_video_replaces_existing_file(tmp_path, frames):
    p = tmp_path / "ep.gif"
    p.write_bytes(b"old")
    write_video(frames, p, "gif", fps=25)
    assert p.read_bytes().startswith(b"GIF8")
    assert sorted(os.listdir(tmp_path)) == ["ep.gif"]


def test_write_video_bad_format_and_empty(tmp_path, frames):
    with pytest.raises(ConfigError, match=r"evaluator\.video_format.*mp4.*gif"):
        write_video(frames, tmp_path / "ep.avi", "avi", fps=30)
    with pytest.raises(ValueError):
        write_video([], tmp_path / "ep.mp4", "mp4", fps=30)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("blocked", "fmt", "package"),
    [("imageio.v2", "mp4", "imageio"), ("imageio_ffmpeg", "mp4", "imageio-ffmpeg"), ("PIL", "gif", "pillow")],
)
def test_write_video_missing_extra(tmp_path, frames, monkeypatch, blocked, fmt, package):
    monkeypatch.setitem(sys.modules, blocked, None)  # makes `import blocked` raise ImportError
    with pytest.raises(MissingExtraError) as ei:
        write_video(frames, tmp_path / f"ep.{fmt}", fmt, fps=30)
    assert ei.value.package == package and ei.value.extra == "video"
    assert "[video]" in str(ei.value)
    assert os.listdir(tmp_path) == []


# --- add_gif_summary ----------------------------------------------------------------------------


def _read_images(logdir: Path, tag: str):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(logdir), size_guidance={"images": 0})
    ea.Reload()
    assert tag in ea.Tags()["images"]
    return ea.Images(tag)


def test_add_gif_summary(tmp_path, frames):
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(tmp_path)) as w:
        add_gif_summary(w, "eval/episode", frames, step=7, fps=50)
        w.flush()
    (ev,) = _read_images(tmp_path, "eval/episode")
    assert ev.step == 7
    assert ev.encoded_image_string.startswith(b"GIF8")
    assert (ev.width, ev.height) == (300, 200)  # scale 0.5
    with Image.open(io.BytesIO(ev.encoded_image_string)) as im:
        assert im.size == (300, 200) and im.n_frames > 1


def test_add_gif_summary_subsamples(tmp_path):
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    rng = np.random.default_rng(0)
    fr = [rng.integers(0, 255, (40, 60, 3), dtype=np.uint8) for _ in range(50)]
    with SummaryWriter(str(tmp_path)) as w:
        add_gif_summary(w, "gif", fr, step=0, fps=50, max_frames=10, scale=1.0)
        add_gif_summary(w, "empty", [], step=0, fps=50)  # nothing logged, no error
    (ev,) = _read_images(tmp_path, "gif")
    with Image.open(io.BytesIO(ev.encoded_image_string)) as im:
        assert im.size == (60, 40)
        assert 2 <= im.n_frames <= 10
        assert im.info["duration"] == 100  # 50 frames at 50 fps shown as 10 frames: same 1 s length


# --- a real window under Xvfb -------------------------------------------------------------------

_CHILD = """
import faulthandler, signal, sys
faulthandler.register(signal.SIGUSR1)  # _finish asks for the stacks of a child that hangs
# Ctrl-C as in a terminal: a test run started as a background job (cmd &) hands its children SIGINT ignored,
# and then Python never raises KeyboardInterrupt
signal.signal(signal.SIGINT, signal.default_int_handler)
import numpy as np
from rl_lab.render import play_episodes

def act(obs):
    return (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)

eps = play_episodes(act, "CartPole-v1", episodes=int(sys.argv[1]), seed=0, mode="human",
                    max_steps=int(sys.argv[2]), fps=float(sys.argv[3]))
print("DONE", len(eps), [e.length for e in eps], flush=True)
"""


@pytest.fixture(scope="module")
def xvfb_display():
    missing = [t for t in ("Xvfb", "xwininfo", "import") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH (apt: xvfb x11-utils imagemagick)")
    r, w = os.pipe()
    # -displayfd: Xvfb picks a free display number itself and writes it to the pipe when ready.
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(w), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        pass_fds=(w,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(w)
    try:
        with os.fdopen(r) as f:
            num = f.readline().strip()
        if not num:
            pytest.skip("Xvfb did not start")
        yield f":{num}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _start_child(display: str, tmp_path: Path, episodes: int, max_steps: int, fps: float) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("SDL_VIDEODRIVER", "WAYLAND_DISPLAY")}
    env.update(DISPLAY=display, XDG_RUNTIME_DIR=str(tmp_path), SDL_AUDIODRIVER="dummy")
    args = [str(episodes), str(max_steps), str(fps)]
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _find_window(display: str, title: str = "pygame window") -> tuple[int, int, int, int, int] | None:
    """(window id, x, y, w, h) of a top-level window with that title, from xwininfo -root -tree."""
    out = subprocess.run(
        ["xwininfo", "-root", "-tree"], env={**os.environ, "DISPLAY": display}, capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        if f'"{title}"' in line:
            m = re.search(r"(0x[0-9a-f]+) .*?(\d+)x(\d+)[+-]-?\d+[+-]-?\d+\s+\+(-?\d+)\+(-?\d+)", line)
            if m:
                wid, w, h, x, y = m.groups()
                return int(wid, 16), int(x), int(y), int(w), int(h)
    return None


def _wait_window(display: str, child: subprocess.Popen, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        win = _find_window(display)
        if win is not None:
            return win
        if child.poll() is not None:
            pytest.fail(f"child exited before its window appeared: {child.communicate()}")
        time.sleep(0.1)
    pytest.fail("no 'pygame window' appeared")


def _screenshot(display: str):
    from PIL import Image

    png = subprocess.run(
        ["import", "-window", "root", "png:-"], env={**os.environ, "DISPLAY": display}, capture_output=True, check=True
    ).stdout
    return Image.open(io.BytesIO(png)).convert("RGB")


def _finish(child: subprocess.Popen, timeout: float) -> str:
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGUSR1)  # faulthandler writes every thread's stack to stderr
        time.sleep(1.0)
        child.kill()
        out, err = child.communicate()
        pytest.fail(f"child did not finish in {timeout}s: {out} {err}")
    assert child.returncode == 0, err
    return out


@pytest.mark.xvfb
def test_real_window_under_xvfb(xvfb_display, tmp_path):
    child = _start_child(xvfb_display, tmp_path, episodes=1, max_steps=90, fps=30)  # ~3 s of playback
    try:
        _, x, y, w, h = _wait_window(xvfb_display, child)
        assert (w, h) == (600, 400)
        time.sleep(0.5)  # let a few frames be drawn
        overlay_seen = False
        for _ in range(3):
            win = np.asarray(_screenshot(xvfb_display).crop((x, y, x + w, y + h)))
            assert len(np.unique(win.reshape(-1, 3), axis=0)) > 1, "the window is blank"
            assert (win.sum(axis=2) < 100).any(), "no cart drawn"
            overlay_seen = bool((win[:16, :150].sum(axis=2) < 200).any())
            if overlay_seen:
                break
            time.sleep(0.1)
        assert overlay_seen, "no overlay text in the window's top-left corner"
        out = _finish(child, timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "DONE 1 [90]" in out
    assert _find_window(xvfb_display) is None  # the window is gone


def _send_wm_delete(display: str, wid: int) -> bool:
    """What a window manager does when the user clicks the close button: a WM_DELETE_WINDOW client message.

    Returns whether the X server took it (False: an X error, say the window was replaced meanwhile).
    """

    class XClientMessageEvent(ctypes.Structure):
        _fields_ = [
            ("type", ctypes.c_int),
            ("serial", ctypes.c_ulong),
            ("send_event", ctypes.c_int),
            ("display", ctypes.c_void_p),
            ("window", ctypes.c_ulong),
            ("message_type", ctypes.c_ulong),
            ("format", ctypes.c_int),
            ("data", ctypes.c_long * 5),
        ]

    class XEvent(ctypes.Union):
        _fields_ = [("xclient", XClientMessageEvent), ("pad", ctypes.c_long * 24)]

    lib = ctypes.util.find_library("X11")
    if lib is None:
        pytest.skip("libX11 not found for sending WM_DELETE_WINDOW")
    x11 = ctypes.CDLL(lib)
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XInternAtom.restype = ctypes.c_ulong
    x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x11.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.POINTER(XEvent)]
    x11.XFlush.argtypes = [ctypes.c_void_p]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    x11.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
    x11.XSetErrorHandler.restype = ctypes.c_void_p
    x11.XSetErrorHandler.argtypes = [ctypes.c_void_p]
    errors: list[int] = []
    # Xlib's default handler exit()s the process on an X error (a window gone: BadWindow), which
    # kills the pytest worker; this one records it, and the caller tries the window it finds next.
    handler = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)(lambda _d, _e: errors.append(1) or 0)
    dpy = x11.XOpenDisplay(display.encode())
    assert dpy, f"cannot open {display}"
    previous = x11.XSetErrorHandler(ctypes.cast(handler, ctypes.c_void_p))
    try:
        ev = XEvent()
        ev.xclient.type = 33  # ClientMessage
        ev.xclient.window = wid
        ev.xclient.message_type = x11.XInternAtom(dpy, b"WM_PROTOCOLS", 0)
        ev.xclient.format = 32
        ev.xclient.data[0] = x11.XInternAtom(dpy, b"WM_DELETE_WINDOW", 0)
        ev.xclient.data[1] = 0  # CurrentTime
        sent = bool(x11.XSendEvent(dpy, wid, 0, 0, ctypes.byref(ev)))
        x11.XSync(dpy, 0)  # any error of the request arrives now, while the handler is ours
    finally:
        x11.XSetErrorHandler(previous)
        x11.XCloseDisplay(dpy)
    return sent and not errors


@pytest.mark.xvfb
def test_closing_the_real_window_ends_playback(xvfb_display, tmp_path):
    child = _start_child(xvfb_display, tmp_path, episodes=3, max_steps=900, fps=30)  # would take 90 s
    try:
        _wait_window(xvfb_display, child)
        time.sleep(0.3)
        t = time.monotonic()
        for _ in range(3):  # the window found now; again if the server refused that one
            win = _find_window(xvfb_display)
            if win is not None and _send_wm_delete(xvfb_display, win[0]):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the X server refused WM_DELETE_WINDOW three times")
        out = _finish(child, timeout=15)
        assert time.monotonic() - t < 5
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "DONE 0 []" in out  # the first episode was not completed
    assert _find_window(xvfb_display) is None


@pytest.mark.xvfb
def test_ctrl_c_in_the_real_window_ends_playback(xvfb_display, tmp_path):
    child = _start_child(xvfb_display, tmp_path, episodes=3, max_steps=900, fps=30)
    try:
        _wait_window(xvfb_display, child)
        time.sleep(0.3)
        child.send_signal(signal.SIGINT)
        out = _finish(child, timeout=15)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "DONE 0 []" in out
    assert _find_window(xvfb_display) is None


@pytest.mark.xvfb
@pytest.mark.slow
def test_rl_lab_eval_plays_in_a_window_under_xvfb(xvfb_display, tmp_path):
    """The whole CLI: rl-lab-eval checkpoint=... evaluator.render=human opens a window and counts its episodes."""
    import json

    import torch

    from rl_lab.policy import MLPPolicy, save_policy

    torch.manual_seed(0)
    ckpt = save_policy(MLPPolicy(4, 2, [16]), tmp_path / "policy.pt", "CartPole-v1")
    env = {k: v for k, v in os.environ.items() if k not in ("SDL_VIDEODRIVER", "WAYLAND_DISPLAY", "HYDRA_FULL_ERROR")}
    env.update(DISPLAY=xvfb_display, XDG_RUNTIME_DIR=str(tmp_path), SDL_AUDIODRIVER="dummy")
    out = tmp_path / "ev"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rl_lab.eval",
            f"checkpoint={ckpt}",
            "evaluator.render=human",
            "evaluator.episodes=4",
            "evaluator.render_episodes=2",
            "evaluator.fps=20",
            f"hydra.run.dir={out}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_window(xvfb_display, child, timeout=60)
        _finish(child, timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    ev = json.loads((out / "eval.json").read_text())
    assert ev["episodes"] == 4  # 2 shown in the window + 2 batched, all counted
