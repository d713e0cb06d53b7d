"""The Python API: ``rl_lab.run(overrides, out_dir)`` runs what ``rl-lab <overrides>`` runs, from Python.

It composes the same config as the CLI (``configs/`` and the typed schemas), with the same
validation: bad input raises :class:`~rl_lab.errors.ConfigError` (the CLI's exit 2) instead of
exiting. It runs in the calling process and returns the content of ``metrics.json``.

Example:
    >>> import rl_lab
    >>> m = rl_lab.run(["experiment=cem", "seed=1"], out_dir="runs/cem_seed1")  # doctest: +SKIP
    >>> m["eval"]["score_mean"]  # doctest: +SKIP
    500.0
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rl_lab.config import Config
from rl_lab.errors import ConfigError


def compose(overrides: list[str] | None = None) -> Config:
    """The validated :class:`Config` that ``rl-lab <overrides>`` would run.

    Raises:
        ConfigError: a bad override, key, value or group option.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from rl_lab.app import CONFIG_DIR, config_error_message, override_key_error, to_config

    overrides = list(overrides or [])
    try:
        # The CLI's checks and wording: an unknown key ('+' or not) first, then Hydra's own errors.
        message = override_key_error(OverridesParser.create().parse_overrides(overrides), [CONFIG_DIR])
        if message is not None:
            raise ConfigError(message)
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name="rl_lab"):
            cfg = hydra_compose("config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(config_error_message(e) or f"{' '.join(overrides)}: {e}") from None
    return to_config(cfg)


def run(overrides: list[str] | None = None, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Run the pipeline with the CLI's config and ``overrides``; write the run into ``out_dir``.

    Args:
        overrides: Hydra overrides, as on the command line (``["env=acrobot", "seed=3"]``).
        out_dir: the run dir; ``None``: ``outputs/<date>/<time>`` under the current dir, as the CLI.

    Returns:
        The content of ``metrics.json``.

    Raises:
        ConfigError: bad input (what the CLI reports with exit 2).
    """
    from rl_lab.app import setup_job
    from rl_lab.pipeline import run as run_pipeline

    config = compose(overrides)
    out = (
        Path(out_dir)
        if out_dir is not None
        else Path("outputs") / time.strftime("%Y-%m-%d") / time.strftime("%H-%M-%S")
    )
    out.mkdir(parents=True, exist_ok=True)
    setup_job(config)
    return run_pipeline(config, out)
