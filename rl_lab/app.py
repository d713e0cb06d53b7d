"""Hydra entry points, and nothing else: ``rl-lab`` (the pipeline) and ``rl-lab-eval`` (a saved policy).

Each entry point turns the DictConfig into the typed :class:`~rl_lab.config.Config`, validates it,
calls a plain function with the run dir, and maps known errors to one paragraph and an exit
code: 2 for bad input (:class:`~rl_lab.errors.ConfigError`, and the config errors Hydra finds
itself: a bad override, value or group option), 130 for Ctrl-C. ``HYDRA_FULL_ERROR=1`` shows the
full traceback instead.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import re
import shlex
import signal
import sys
import traceback
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from rl_lab.config import Config, register_configs, validate  # noqa: E402
from rl_lab.errors import ConfigError, RLLabError  # noqa: E402

log = logging.getLogger("rl_lab")
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")
register_configs()


def to_config(cfg: DictConfig, training: bool = True) -> Config:
    """DictConfig -> validated :class:`Config` (a :class:`ConfigError` names the bad value or key)."""
    for key in _extra_keys(cfg, Config):  # a key added with '+' that the schema does not know
        raise ConfigError(f"{key}: {unknown_key_message(key)}")
    config = OmegaConf.to_object(cfg)
    assert isinstance(config, Config)
    return validate(config, training=training)


def _setup_job(config: Config) -> None:
    """Reset process-wide state at the start of every job (the basic launcher runs a sweep in one process)."""
    import torch

    from rl_lab.envs import available_cores

    cores = available_cores()
    torch.set_num_threads(config.threads or cores)
    if config.env.num_threads is None:  # EnvPool's workers: every allowed core, but 1 per job in a parallel sweep
        config.env.num_threads = 1 if _parallel_sweep_job() else cores


def _parallel_sweep_job() -> bool:
    """This job runs beside others on the same machine (a joblib launcher's worker process)."""
    try:
        target = str(HydraConfig.get().launcher.get("_target_", ""))
    except (ValueError, AttributeError):  # no Hydra config (a plain Python call)
        return False
    return HydraConfig.get().mode == RunMode.MULTIRUN and "joblib" in target.lower()


@contextmanager
def _sigint() -> Iterator[Any]:
    """First Ctrl-C asks the loops to stop at the next safe point; a second one stops at once."""
    from rl_lab.pipeline import StopFlag

    flag = StopFlag()
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if flag.stop:
            raise KeyboardInterrupt
        flag.stop = True

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (some launchers): keep the default behaviour
        pass
    try:
        yield flag
    finally:
        try:
            signal.signal(signal.SIGINT, previous)
        except ValueError:
            pass


def _guard(job: Callable[[list[Path]], Any], out_dir: Path, resumable: bool = True) -> Any:
    """Run ``job``; turn rl_lab errors and Ctrl-C into a message and an exit code (no traceback).

    ``job`` receives ``[run dir]`` and may replace it (a resumed run writes into the original run dir).
    """
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    full = _full_error()
    where = [out_dir]
    try:
        return job(where)
    except RLLabError as e:
        if full:
            raise
        print(f"rl-lab: error: {e}", file=sys.stderr)
        _mark_failed(where[0], str(e))
        if multirun:  # let the sweep go on; rl-lab-report flags the job
            return None
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        if full:
            raise
        out = where[0]
        if resumable:
            last = out / "policy_last.pt"
            kept = f"last complete checkpoint: {last}" if last.is_file() else "no training epoch had completed yet"
            print(f"rl-lab: interrupted ({kept}). Resume with: rl-lab resume={out}", file=sys.stderr)
        else:
            print("rl-lab-eval: interrupted.", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # a bug: the entry point shows its traceback (exit 1), never as a config error
        e._rl_lab_job_error = True  # type: ignore[attr-defined]
        raise


def _mark_failed(out_dir: Path, message: str) -> None:
    import json

    from rl_lab.utils import write_json

    path = out_dir / "metrics.json"
    metrics: dict[str, Any] = {}
    if path.is_file():
        try:
            metrics = json.loads(path.read_text())
        except (OSError, ValueError):
            metrics = {}
    metrics.update(status="failed", error=message)
    write_json(path, metrics)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _main(cfg: DictConfig) -> float | None:
    """Collect, train and evaluate; return the metric a sweep optimises."""
    out_dir = Path(HydraConfig.get().runtime.output_dir)

    def job(where: list[Path]) -> float | None:
        from rl_lab.pipeline import run

        config = to_config(cfg)
        out = where[0]
        if config.resume:
            config, out = _resume_config(config)
            where[0] = out
        if config.evaluator.render != "none":  # e.g. human without a display: refuse before any work
            from rl_lab.render import check_render_mode

            check_render_mode(config.evaluator.render)
        _setup_job(config)
        with _sigint() as flag:
            metrics = run(config, out, stop=flag)
        log.info(_next_steps(out, HydraConfig.get().mode == RunMode.MULTIRUN))
        if not config.optimized_metric:
            return None
        section, _, key = config.optimized_metric.partition("/")
        return metrics.get(section, {}).get(key)

    return _guard(job, out_dir)


def _resume_config(config: Config) -> tuple[Config, Path]:
    """The interrupted run's own config (from its ``.hydra/config.yaml``) and its run dir."""
    run_dir = Path(config.resume).resolve()
    saved = run_dir / ".hydra" / "config.yaml"
    if not saved.is_file():
        raise ConfigError(
            f"resume={config.resume!r}: {saved} not found. Give the run dir of an interrupted rl-lab run "
            "(the folder that holds metrics.json and .hydra/)."
        )
    base = OmegaConf.structured(Config)
    original = OmegaConf.to_object(OmegaConf.merge(base, OmegaConf.load(saved)))
    assert isinstance(original, Config)
    original.resume = str(run_dir)
    return validate(original), run_dir


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def _play(cfg: DictConfig) -> float | None:
    """Evaluate (and optionally render) a saved policy without retraining."""
    out_dir = Path(HydraConfig.get().runtime.output_dir)

    def job(where: list[Path]) -> float | None:
        from rl_lab.envs import env_info
        from rl_lab.pipeline import EVAL, evaluate_policy, format_eval
        from rl_lab.policy import load_policy
        from rl_lab.tracking import Tracker
        from rl_lab.utils import derive_seed, resolve_device, seed_everything, write_json

        out = where[0]
        config = to_config(cfg, training=False)
        if not config.checkpoint:
            raise ConfigError(
                "checkpoint is not set: rl-lab-eval needs the policy to play, e.g. "
                "rl-lab-eval checkpoint=outputs/<date>/<time>/policy.pt"
            )
        _setup_job(config)
        seed_everything(config.seed)
        policy, payload = load_policy(config.checkpoint)
        env_id = config.env.id or payload["env_id"]
        info = env_info(env_id)
        kw = policy.kwargs
        if (kw["obs_dim"], kw["n_actions"]) != (info.obs_dim, info.n_actions):
            raise ConfigError(
                f"checkpoint={config.checkpoint!r} was trained for {kw['obs_dim']} observations and "
                f"{kw['n_actions']} actions (env {payload['env_id']!r}), but env.id={env_id!r} has {info.obs_dim} and "
                f"{info.n_actions}. Evaluate it on its own env (leave env.id unset) or pick a matching checkpoint."
            )
        device = resolve_device(config.device)
        tracker = Tracker(out / "tb")
        with _sigint() as flag:
            report = evaluate_policy(
                policy,
                config,
                info,
                seed=derive_seed(config.seed, EVAL, 1_000_000),
                device=device,
                stop=flag,
                out_dir=out,
                tracker=tracker,
                step=0,
            )
        tracker.close()
        summary = report.summary()
        write_json(out / "eval.json", summary)
        log.info(format_eval(summary, report.seconds))
        log.info(f"run dir:  {_shown(out)}  (eval.json, tb/{', videos/' if (out / 'videos').is_dir() else ''})")
        return summary["score_mean"]

    return _guard(job, out_dir, resumable=False)


def main() -> None:
    """Console script ``rl-lab``."""
    from rl_lab.launchers import check_plugins

    check_plugins(sys.argv[1:])  # a missing launcher/sweeper plugin: one paragraph, exit 2
    _main()


def play() -> None:
    """Console script ``rl-lab-eval``."""
    from rl_lab.launchers import check_plugins

    check_plugins(sys.argv[1:])
    _play()
