"""rl_lab: learn policies from filtered rollouts (collect, keep the best episodes, imitate them)."""

__version__ = "0.1.0"

from rl_lab.api import compose, run  # noqa: E402

__all__ = ["compose", "run"]
