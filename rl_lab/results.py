"""Typed results of a run: the figures of a round's stages, a round, and the whole ``metrics.json``.

Each class is one section of ``metrics.json``. ``to_dict()`` is its JSON form and ``from_dict()``
reads it back (resume reads an interrupted run's ``metrics.json``). The keys are the public
contract (DESIGN.md, "Outputs contract"): a field's name is its key, fields appear in the file in
the order they are declared, and a value that is None is written as ``null``, except for the fields
declared with :func:`optional`, which are left out when None. Those are the action figures that depend on the
action space:

- a discrete (``Discrete``) env has ``action_balance`` (the share of each action) and, in an
  evaluation, ``action_counts``;
- a continuous (``Box``) env has per-dimension ``action_mean``, ``action_std`` and
  ``action_saturation`` (lists of floats) and ``action_histogram`` (a dict) instead.

``from_dict`` refuses a key it does not know, so a new figure cannot be dropped from
``metrics.json`` without a test noticing: it gets a field here first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Self

_OMIT_NONE = "omit_if_none"


def optional() -> Any:
    """A field that defaults to None and is left out of the JSON form when None."""
    return field(default=None, metadata={_OMIT_NONE: True})


class _Section:
    """``to_dict`` / ``from_dict`` for a dataclass whose fields are JSON values or other sections."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: every field by name, in declaration order; :func:`optional` fields only when set."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.metadata.get(_OMIT_NONE):
                continue
            out[f.name] = value.to_dict() if isinstance(value, _Section) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read the JSON form back.

        Raises:
            ValueError: a key that is not a field, or a field without a default that is missing.
        """
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = [key for key in data if key not in known]
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown keys {unknown}")
        try:
            return cls(**cls._read_fields(dict(data)))
        except TypeError as e:  # a missing key
            raise ValueError(f"{cls.__name__}: {e}") from None

    @classmethod
    def _read_fields(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Turn nested sections' dicts into their classes (overridden where there are any)."""
        return data


@dataclass(kw_only=True)
class CollectFigures(_Section):
    """A round's collection (or its reused dataset) and the score filter: ``metrics.json``'s ``collect``."""

    episodes: int
    kept_episodes: int
    kept_fraction: float
    samples: int  # transitions of the kept episodes
    score_mean: float  # of all the episodes, kept or not
    score_std: float
    score_max: float
    threshold: float | None  # the lowest kept score (not the configured collector.min_score)
    action_balance: list[float] | None = optional()  # discrete: the share of each action in the kept data
    action_mean: list[float] | None = optional()  # continuous: per action dimension
    action_std: list[float] | None = optional()
    action_saturation: list[float] | None = optional()
    action_histogram: dict[str, Any] | None = optional()
    env_steps: int | None  # None for a dataset read from a file
    useful_steps: int  # steps of the recorded episodes (the autoreset steps are not data)
    steps_per_second: float | None
    seconds: float


@dataclass(kw_only=True)
class TrainFigures(_Section):
    """A round's fit: ``metrics.json``'s ``train`` (:class:`rl_lab.train.TrainResult` holds the fit itself)."""

    history: list[dict[str, float]]  # one dict per epoch: train/loss, train/accuracy, val/loss, val/accuracy
    epochs: int
    samples: int
    val_samples: int
    final_loss: float | None
    train_accuracy: float | None
    val_loss: float | None  # None without a validation split
    val_accuracy: float | None
    seconds: float
    samples_per_second: float  # training samples times configured epochs per second
    loss: str | None = optional()  # continuous: what the losses measure, "mse" (a mean head) or "nll" (Gaussian)


@dataclass(kw_only=True)
class EvalFigures(_Section):
    """A round's evaluation: ``eval.json`` without its per-episode ``scores``, plus ``seconds`` and ``screened``."""

    env_id: str
    episodes: int
    score_mean: float
    score_std: float
    score_min: float
    score_median: float
    score_max: float
    success_rate: float | None  # None when the env has no reward threshold
    reward_threshold: float | None
    length_mean: float
    action_counts: list[int] | None = optional()  # discrete
    action_balance: list[float] | None = optional()  # discrete
    action_mean: list[float] | None = optional()  # continuous: per action dimension
    action_std: list[float] | None = optional()
    action_saturation: list[float] | None = optional()
    action_histogram: dict[str, Any] | None = optional()
    cut_step: int | None = optional()  # evaluator.early_exit stopped it at this step: stop_score was out of reach
    score_bound: float | None = optional()  # ... and the full evaluation's mean could have been at most this
    seconds: float
    # Not a full evaluation: the screening episodes (evaluator.screen_episodes), or the episodes as they stood
    # when evaluator.early_exit cut it short (cut_step).
    screened: bool

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any], *, seconds: float, screened: bool) -> EvalFigures:
        """From an ``eval.json`` dict (:meth:`rl_lab.evaluate.EvalReport.summary`)."""
        figures = {k: v for k, v in summary.items() if k != "scores"}
        return cls.from_dict({**figures, "seconds": seconds, "screened": screened})


@dataclass(kw_only=True)
class RoundResult(_Section):
    """One round: an element of ``metrics.json``'s ``rounds``."""

    round: int
    collect: CollectFigures
    train: TrainFigures
    eval: EvalFigures
    dataset_sha256: str
    weights_sha256: str
    elapsed_seconds: float  # from the start of round 0 (of the first run, for a resumed one) to this round's end

    @classmethod
    def _read_fields(cls, data: dict[str, Any]) -> dict[str, Any]:
        sections = {"collect": CollectFigures, "train": TrainFigures, "eval": EvalFigures}
        return {k: sections[k].from_dict(v) if k in sections else v for k, v in data.items()}


RUNNING, INTERRUPTED, COMPLETED = "running", "interrupted", "completed"  # a failed run: "failed" (rl_lab.app)


@dataclass(kw_only=True)
class RunMetrics(_Section):
    """``metrics.json``: the run, its rounds so far, and the last round's figures at the top.

    The top-level ``collect``, ``train`` and ``eval`` are the last round's (no fields of their
    own: ``to_dict`` writes them from ``rounds[-1]``, once there is a round). ``solve_seconds`` is
    written once known, and in a completed run always (``null`` when ``stop_score`` was never
    reached); ``weights_sha256`` once the run completed; ``error`` only in a failed run.
    """

    status: str  # running | interrupted | completed | failed
    rounds: list[RoundResult] = field(default_factory=list)
    env_id: str
    seed: int
    device: str
    backend: str
    env_threads: int | None
    total_seconds: float = 0.0
    solve_seconds: float | None = None  # seconds to the first round whose evaluation reached stop_score
    weights_sha256: str | None = optional()  # the final policy's
    error: str | None = optional()  # what made a run fail (written by the app)

    @property
    def last(self) -> RoundResult | None:
        """The last round run, or None before the first."""
        return self.rounds[-1] if self.rounds else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "rounds": [r.to_dict() for r in self.rounds],
            "env_id": self.env_id,
            "seed": self.seed,
            "device": self.device,
            "backend": self.backend,
            "env_threads": self.env_threads,
        }
        if self.last is not None:
            last = self.last
            out.update(collect=last.collect.to_dict(), train=last.train.to_dict(), eval=last.eval.to_dict())
        out["total_seconds"] = self.total_seconds
        if self.solve_seconds is not None or self.status == COMPLETED:
            out["solve_seconds"] = self.solve_seconds
        for key in ("weights_sha256", "error"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return super().from_dict({k: v for k, v in data.items() if k not in ("collect", "train", "eval")})

    @classmethod
    def _read_fields(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "rounds": [RoundResult.from_dict(r) for r in data.get("rounds", [])]}
