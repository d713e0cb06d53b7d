"""Typed configuration: one dataclass per Hydra group, registered as schemas, validated in one place.

Values live in ``configs/`` (YAML); the schemas live here, so a misspelt key or a wrong type
fails when Hydra composes the config. Cross-field checks (``validate``) raise one error type,
:class:`~rl_lab.errors.ConfigError`, whose message names the key, the value and the fix.
Library functions take these dataclasses (or plain values), never a ``DictConfig``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rl_lab.errors import ConfigError

ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "leaky_relu", "silu")
BOX_HEADS = ("mean", "gaussian")  # policy.box_head (rl_lab.policy.MLPPolicy's box_head)
RENDER_MODES = ("none", "human", "video")
VIDEO_FORMATS = ("mp4", "gif")
BEHAVIOURS = ("random", "policy")
RANKINGS = ("return", "advantage")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("float32", "float64")
BACKENDS = ("auto", "native", "envpool", "gymnasium")
VECTORIZATIONS = ("sync", "async")


@dataclass
class EnvConfig:
    """Which environment, and how many copies run side by side."""

    id: str | None = (
        "CartPole-v1"  # a gymnasium id (Discrete or finite Box actions, flat Box observations), or module:id
    )
    num_envs: int = 2000  # sub-envs of the vector env (collection; evaluation uses min(num_envs, episodes))
    precision: str = "float32"  # float32 | float64: arithmetic of rl_lab's CartPole (float64 = gymnasium's bit for bit)
    backend: str = "auto"  # auto | native | envpool | gymnasium (auto: native CartPole, then EnvPool, then gymnasium)
    num_threads: int | None = None  # EnvPool worker threads; None: the cores available (1 in a joblib sweep job)
    vectorization: str = "sync"  # sync | async: gymnasium's SyncVectorEnv or AsyncVectorEnv (gymnasium backend)

    def vector_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`rl_lab.envs.make_vec_env` that this group sets."""
        return {
            "backend": self.backend,
            "precision": self.precision,
            "num_threads": self.num_threads,
            "vectorization": self.vectorization,
        }


@dataclass
class CollectorConfig:
    """How episodes are played and which ones are kept."""

    episodes: int = 10_000  # exactly this many episodes are started and finished
    max_steps: int | None = None  # an episode is truncated after this many steps; None: the env's own limit
    min_score: float | None = 50.0  # keep episodes scoring >= min_score ...
    top_fraction: float | None = None  # ... or the best top_fraction of them (exactly one of the two is set)
    rank_by: str = "return"  # return | advantage: top_fraction ranks by the return minus that of the nearest starts
    neighbours: int = 20  # rank_by=advantage: how many episodes with the nearest first observations form the baseline
    behaviour: str = "random"  # random | policy (the previous round's policy; round 0 is always random)
    temperature: float = 1.0  # softmax temperature of the policy behaviour (round 1)
    temperature_decay: float = 1.0  # rounds: each round after round 1 multiplies the temperature by this, in (0, 1]
    noise_std: float = 0.3  # Box actions: the policy behaviour's Gaussian noise (round 1), in half action ranges
    noise_decay: float = 1.0  # Box actions, rounds: each round after round 1 multiplies noise_std by this, in (0, 1]
    accumulate: bool = False  # rounds: train on the elites of all rounds so far instead of this round's only
    dataset: str | None = None  # train on this existing dataset.npz instead of collecting


@dataclass
class PolicyConfig:
    """The fully connected network; input and output sizes come from the env's spaces."""

    hidden_sizes: list[int] = field(default_factory=lambda: [128, 256, 512, 256, 128])  # [] = linear policy
    activation: str = "relu"  # relu | tanh | elu | gelu | leaky_relu | silu
    dropout: float = 0.2  # after each hidden layer; inactive in evaluation
    layer_norm: bool = False  # LayerNorm after each hidden Linear, before the activation
    obs_norm: bool = False  # standardize the inputs by the mean/std of the first data the policy trains on
    box_head: str = "mean"  # Box actions: mean (tanh mean, MSE) | gaussian (+ a learned log-std, NLL; sampled)


@dataclass
class TrainerConfig:
    """Supervised training on the kept (observation, action) pairs."""

    epochs: int = 5
    batch_size: int = 64
    lr: float = 2.33e-4
    weight_decay: float = 0.0
    val_fraction: float = 0.1  # held-out share of the samples for validation accuracy (0 = none)
    warm_start: bool = True  # rounds: start from the previous round's weights (False: fresh weights each round)
    fast: bool = True  # the one-node training step (rl_lab.fast_mlp) where the network allows it; False: plain autograd
    progress: bool = True  # progress bar on a TTY (always quiet when not a TTY)


@dataclass
class EvaluatorConfig:
    """Evaluation episodes of the trained policy."""

    episodes: int = 100
    screen_episodes: int = 0  # rounds with stop_score: play this many first, the full evaluation only if it may pass
    early_exit: bool = False  # rounds with stop_score: stop an evaluation once its mean provably cannot reach it
    greedy: bool = True  # argmax actions; False samples from the softmax
    max_steps: int | None = None  # None: the env's own limit (500 for CartPole-v1)
    render: str = "none"  # none | human | video
    render_episodes: int = 1  # how many of the evaluation episodes are shown / recorded
    video_format: str = "mp4"  # mp4 | gif
    fps: float | None = None  # playback / video frame rate; None: the env's render_fps


@dataclass
class Config:
    """The whole run. ``rl-lab`` reads every group; ``rl-lab-eval`` reads env, evaluator and checkpoint."""

    env: EnvConfig = field(default_factory=EnvConfig)
    collector: CollectorConfig = field(default_factory=CollectorConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    evaluator: EvaluatorConfig = field(default_factory=EvaluatorConfig)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda (cuda without CUDA is an error, not a silent fallback)
    threads: int | None = 1  # torch intra-op threads (1: fastest for small batches, no oversubscription); None: all
    rounds: int = 1  # >1: the cross-entropy method (round k collects with round k-1's policy)
    stop_score: float | None = None  # stop the rounds once the evaluation mean reaches this
    weight_histograms: bool = False  # log weight histograms to TensorBoard after each round
    plots: bool = False  # also draw report.png next to report.md (needs the plots extra: matplotlib, about 1 s)
    optimized_metric: str | None = "eval/score_mean"  # returned to Hydra sweepers (Optuna)
    checkpoint: str | None = None  # rl-lab-eval: the policy.pt to evaluate
    resume: str | None = None  # continue an interrupted run from its run dir


# The schema of each config group, stored as ``<group>/base_<group>``. The dataclass defaults are the one
# source of truth: every option configs/<group>/<option>.yaml extends its schema (``defaults: [base_<group>,
# _self_]``, Hydra's "Extending configs" pattern) and sets only what differs, so ``Config()`` is what plain
# ``rl-lab`` runs (tests/test_config.py checks both). ``rl-lab --help`` hides the ``base_*`` names (app.py).
SCHEMA_PREFIX = "base_"
GROUP_SCHEMAS: dict[str, type] = {
    "env": EnvConfig,
    "collector": CollectorConfig,
    "policy": PolicyConfig,
    "trainer": TrainerConfig,
    "evaluator": EvaluatorConfig,
}


def register_configs() -> None:
    """Store the schemas in Hydra's ConfigStore: ``base_config`` (the primary config's) and ``<group>/base_<group>``."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name=f"{SCHEMA_PREFIX}config", node=Config)
    for group, node in GROUP_SCHEMAS.items():
        cs.store(group=group, name=f"{SCHEMA_PREFIX}{group}", node=node)


def _positive_int(key: str, value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key}={value!r} is not allowed: {what} must be a positive whole number (>= 1).")


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not one of the allowed values {', '.join(allowed)}. Pick one of those.")


def _finite(key: str, value: float) -> None:
    if not math.isfinite(value):
        raise ConfigError(f"{key}={value!r} is not a finite number. Give a finite value.")


def validate(cfg: Config, *, training: bool = True) -> Config:
    """Check every value and every cross-field rule; raise :class:`ConfigError` on the first bad one.

    Args:
        cfg: the composed config.
        training: ``False`` for ``rl-lab-eval``, which ignores the collector/policy/trainer groups.

    Returns:
        ``cfg`` itself, for chaining.
    """
    _choice("device", cfg.device, DEVICES)
    _choice("env.precision", cfg.env.precision, PRECISIONS)
    _choice("env.backend", cfg.env.backend, BACKENDS)
    _choice("env.vectorization", cfg.env.vectorization, VECTORIZATIONS)
    if cfg.env.num_threads is not None:
        _positive_int("env.num_threads", cfg.env.num_threads, "the number of EnvPool worker threads")
    if cfg.threads is not None:
        _positive_int("threads", cfg.threads, "the number of torch threads")
    if training and not cfg.env.id:
        raise ConfigError("env.id is empty. Give a gymnasium environment id, e.g. env.id=CartPole-v1.")
    _positive_int("env.num_envs", cfg.env.num_envs, "the number of parallel sub-environments")

    ev = cfg.evaluator
    _positive_int("evaluator.episodes", ev.episodes, "the number of evaluation episodes")
    if isinstance(ev.screen_episodes, bool) or not isinstance(ev.screen_episodes, int) or ev.screen_episodes < 0:
        raise ConfigError(
            f"evaluator.screen_episodes={ev.screen_episodes!r} is not allowed: give how many greedy episodes screen "
            "a round before its full evaluation (0 = no screen; 10 is a good value with stop_score)."
        )
    if ev.max_steps is not None:
        _positive_int("evaluator.max_steps", ev.max_steps, "the evaluation step limit")
    _choice("evaluator.render", ev.render, RENDER_MODES)
    _choice("evaluator.video_format", ev.video_format, VIDEO_FORMATS)
    if isinstance(ev.render_episodes, bool) or not isinstance(ev.render_episodes, int) or ev.render_episodes < 0:
        raise ConfigError(
            f"evaluator.render_episodes={ev.render_episodes!r} is not allowed: give how many evaluation episodes "
            "to show or record (0 or more)."
        )
    if ev.fps is not None and not (ev.fps > 0 and math.isfinite(ev.fps)):
        raise ConfigError(f"evaluator.fps={ev.fps!r} must be a positive frame rate, or null for the env's own.")
    if not training:
        return cfg

    _positive_int("rounds", cfg.rounds, "the number of rounds")
    if cfg.stop_score is not None:
        _finite("stop_score", cfg.stop_score)
    _validate_collector(cfg.collector)
    _validate_policy(cfg.policy)
    _validate_trainer(cfg.trainer)
    return cfg


def _validate_collector(c: CollectorConfig) -> None:
    _positive_int("collector.episodes", c.episodes, "the number of episodes to collect")
    if c.max_steps is not None:
        _positive_int("collector.max_steps", c.max_steps, "the per-episode step limit")
    _choice("collector.behaviour", c.behaviour, BEHAVIOURS)
    if not (c.temperature > 0 and math.isfinite(c.temperature)):
        raise ConfigError(f"collector.temperature={c.temperature!r} must be a positive number (1.0 = plain softmax).")
    if not (0.0 < c.temperature_decay <= 1.0):
        raise ConfigError(
            f"collector.temperature_decay={c.temperature_decay!r} is outside (0, 1]: each round multiplies the "
            "behaviour's temperature by it (1.0 = a constant temperature, 0.9 = 10% greedier each round)."
        )
    if not (c.noise_std > 0 and math.isfinite(c.noise_std)):
        raise ConfigError(
            f"collector.noise_std={c.noise_std!r} must be a positive number: the standard deviation of the Gaussian "
            "noise added to the policy's mean action (Box actions), in units of half the action range "
            "(0.3 = 30% of the half-range; 1.0 = the half-range itself)."
        )
    if not (0.0 < c.noise_decay <= 1.0):
        raise ConfigError(
            f"collector.noise_decay={c.noise_decay!r} is outside (0, 1]: each round after round 1 multiplies "
            "collector.noise_std by it (1.0 = constant noise, 0.8 = 20% less noise each round)."
        )
    _choice("collector.rank_by", c.rank_by, RANKINGS)
    _positive_int("collector.neighbours", c.neighbours, "the number of neighbouring episodes in the baseline")
    if c.rank_by == "advantage" and c.min_score is not None:
        raise ConfigError(
            f"collector.rank_by=advantage ranks episodes for collector.top_fraction, but collector.min_score="
            f"{c.min_score!r} keeps by absolute score. Use collector.min_score=null collector.top_fraction=0.1 "
            "(for example), or collector.rank_by=return."
        )
    if (c.min_score is None) == (c.top_fraction is None):
        both = "both are set" if c.min_score is not None else "neither is set"
        raise ConfigError(
            f"collector.min_score={c.min_score!r} and collector.top_fraction={c.top_fraction!r}: exactly one of the "
            f"two filters must be set, but {both}. Keep episodes by absolute score "
            "(collector.min_score=50 collector.top_fraction=null) or keep the best share "
            "(collector.min_score=null collector.top_fraction=0.1)."
        )
    if c.min_score is not None:
        _finite("collector.min_score", c.min_score)
    if c.top_fraction is not None and not (0.0 < c.top_fraction <= 1.0):
        raise ConfigError(
            f"collector.top_fraction={c.top_fraction!r} is outside (0, 1]: it is the share of episodes kept, "
            "e.g. 0.1 keeps the best 10%."
        )


def _validate_policy(p: PolicyConfig) -> None:
    sizes = p.hidden_sizes
    if not isinstance(sizes, list) or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in sizes):
        raise ConfigError(
            f"policy.hidden_sizes={sizes!r} must be a list of positive layer widths, e.g. "
            "policy.hidden_sizes=[128,256] (quote it in a shell: 'policy.hidden_sizes=[128,256]'); "
            "policy.hidden_sizes=[] gives a linear policy."
        )
    _choice("policy.activation", p.activation, ACTIVATIONS)
    _choice("policy.box_head", p.box_head, BOX_HEADS)
    if not (0.0 <= p.dropout < 1.0):
        raise ConfigError(f"policy.dropout={p.dropout!r} is outside [0, 1): it is the probability of zeroing a unit.")


def _validate_trainer(t: TrainerConfig) -> None:
    _positive_int("trainer.epochs", t.epochs, "the number of training epochs")
    _positive_int("trainer.batch_size", t.batch_size, "the mini-batch size")
    if not (t.lr > 0 and math.isfinite(t.lr)):
        raise ConfigError(f"trainer.lr={t.lr!r} must be a positive learning rate, e.g. trainer.lr=2.33e-4.")
    if not (t.weight_decay >= 0 and math.isfinite(t.weight_decay)):
        raise ConfigError(f"trainer.weight_decay={t.weight_decay!r} must be 0 or more.")
    if not (0.0 <= t.val_fraction < 1.0):
        raise ConfigError(
            f"trainer.val_fraction={t.val_fraction!r} is outside [0, 1): it is the share of samples held out "
            "for validation (0 = no validation)."
        )
