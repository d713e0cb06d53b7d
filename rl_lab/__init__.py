"""rl_lab: learn policies from filtered rollouts (collect, keep the best episodes, imitate them)."""

__version__ = "0.1.0"
