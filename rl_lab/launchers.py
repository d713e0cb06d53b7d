"""Fail early, in one paragraph, when a sweep option needs a Hydra plugin that is not installed.

``rl-lab -m launcher=joblib`` without hydra-joblib-launcher makes Hydra fail with
``Could not find 'hydra/launcher/joblib'``, which does not say what to install. :func:`check_plugins`
reads the command line before Hydra does and names the missing plugin and the extra that brings it.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Plugin:
    """A Hydra plugin: the modules that must be importable, its PyPI name, and the rl-lab extra with it."""

    modules: tuple[str, ...]
    package: str
    extra: str


JOBLIB = Plugin(("hydra_plugins.hydra_joblib_launcher", "joblib"), "hydra-joblib-launcher", "sweep")
SUBMITIT = Plugin(("hydra_plugins.hydra_submitit_launcher", "submitit"), "hydra-submitit-launcher", "sweep")
RAY = Plugin(("hydra_plugins.hydra_ray_launcher", "ray"), "hydra-ray-launcher", "ray")
OPTUNA = Plugin(("hydra_plugins.hydra_optuna_sweeper", "optuna"), "hydra-optuna-sweeper", "sweep")

# (config group on the command line, option) -> plugin. The rl-lab groups (configs/launcher,
# configs/hparams_search) and Hydra's own groups, for users who pick Hydra's configs directly.
PLUGINS: dict[tuple[str, str], Plugin] = {
    ("launcher", "joblib"): JOBLIB,
    ("launcher", "submitit_local"): SUBMITIT,
    ("launcher", "slurm"): SUBMITIT,
    ("launcher", "ray"): RAY,
    ("hparams_search", "optuna"): OPTUNA,
    ("hydra/launcher", "joblib"): JOBLIB,
    ("hydra/launcher", "submitit_local"): SUBMITIT,
    ("hydra/launcher", "submitit_slurm"): SUBMITIT,
    ("hydra/launcher", "ray"): RAY,
    ("hydra/launcher", "ray_aws"): RAY,
    ("hydra/sweeper", "optuna"): OPTUNA,
}


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package, or a broken one
        return False


def _group_choices(argv: Iterable[str]) -> Iterable[tuple[str, str, str]]:
    """(group, option, the override as typed) for every ``group=option`` on the command line.

    Handles ``+group=x`` / ``++group=x`` and simple sweeps over options (``launcher=joblib,ray``);
    flags (``-m``, ``--cfg job``) and anything that is not ``key=value`` are ignored.
    """
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, _, value = arg.partition("=")
        group = key.lstrip("+").strip()
        for option in value.split(","):
            yield group, option.strip().strip("'\""), arg


def missing_plugin(argv: Iterable[str]) -> tuple[str, Plugin] | None:
    """The first override in ``argv`` whose plugin is not importable, with that plugin; None when all are."""
    for group, option, arg in _group_choices(argv):
        plugin = PLUGINS.get((group, option))
        if plugin is not None and not all(_importable(m) for m in plugin.modules):
            return arg, plugin
    return None


def check_plugins(argv: list[str]) -> None:
    """Exit with code 2 and one paragraph on stderr when an override in ``argv`` needs a missing plugin."""
    found = missing_plugin(argv)
    if found is None:
        return
    arg, plugin = found
    print(
        f"rl-lab: error: {arg} needs the Hydra plugin {plugin.package}, which is not installed in this "
        f"environment ({sys.executable}). Install the '{plugin.extra}' extra from the rl_lab checkout with: "
        f'pip install -e ".[{plugin.extra}]" (or pip install {plugin.package}), then run the command again.',
        file=sys.stderr,
    )
    sys.exit(2)
