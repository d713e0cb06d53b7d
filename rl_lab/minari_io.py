"""Minari datasets in and out (the ``minari`` extra: ``pip install -e '.[minari]'``).

- **Export**: ``rl-lab-export <dataset.npz> --id <namespace/name-vN>`` writes the kept episodes of an
  rl_lab dataset as a Minari dataset: per episode its ``N + 1`` observations (the final one
  included), ``N`` actions, rewards, terminations and truncations. The env spec is the dataset's
  env (its step limit set to the collection's ``max_steps`` when that differed); the metadata key
  ``rl_lab`` holds the filter (``min_score`` / ``top_fraction``, threshold), the seed, the round,
  the behaviour and the counts.
- **Import**: ``collector.dataset=minari:<id>`` trains on a local Minari dataset:
  :func:`load_minari` converts its episodes into an rl_lab :class:`~rl_lab.data.Dataset`, each
  episode's return being the sum of its rewards, and applies rl_lab's filter to those returns.

Minari datasets live under ``MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``). Nothing is
ever downloaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import re
import shutil
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rl_lab.data import DATASET_FORMAT, Dataset, load_dataset
from rl_lab.errors import ConfigError, MissingExtraError, RLLabError

MINARI_PREFIX = "minari:"
# Minari's own id grammar, with the version required: (namespace/)name-vN
_ID_RE = re.compile(r"^(?:[-_\w][-_\w/]*[-_\w]+/)?[-_\w]+?-v\d+$")


def _minari(feature: str) -> Any:
    """The ``minari`` module, or :class:`MissingExtraError` naming the extra (h5py is its storage)."""
    for package in ("minari", "h5py"):
        if importlib.util.find_spec(package) is None:
            raise MissingExtraError(package, "minari", feature)
    import minari

    return minari


def _check_id(dataset_id: str, what: str) -> None:
    if not _ID_RE.fullmatch(dataset_id):
        raise ConfigError(
            f"{what}: {dataset_id!r} is not a Minari dataset id. Ids have the form (namespace/)name-vN, "
            "for example rl_lab/cartpole-random-v0 (letters, digits, '_' and '-'; a version -v<number> at the end)."
        )


def _datasets_root() -> str:
    return os.environ.get("MINARI_DATASETS_PATH") or os.path.join("~", ".minari", "datasets")


def kept_episodes(ds: Dataset) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, bool]]:
    """Each kept episode as ``(observations (N + 1, obs_dim), actions (N,), rewards (N,), terminated)``.

    Raises:
        ConfigError: the dataset was written before rl_lab recorded rewards, terminations and final
            observations.
    """
    if not ds.has_transitions:
        raise ConfigError(
            "this dataset.npz was written by an older rl_lab, which did not record each step's reward, how each "
            "episode ended or its final observation, so its episodes cannot be written as full episodes. Collect "
            "it again with this version (rl-lab ... writes a new dataset.npz in the run dir)."
        )
    assert ds.rewards is not None and ds.final_obs is not None and ds.terminated is not None
    bounds = np.r_[0, np.cumsum(ds.episode_lengths[ds.kept])]
    for j in range(bounds.size - 1):
        a, b = int(bounds[j]), int(bounds[j + 1])
        obs = np.concatenate([ds.obs[a:b], ds.final_obs[j : j + 1]])
        yield obs, ds.actions[a:b], ds.rewards[a:b], bool(ds.terminated[j])


def _env_spec(ds: Dataset) -> Any:
    """The gymnasium spec of the dataset's env, its step limit set to the collection's ``max_steps``."""
    from rl_lab.envs import _spec

    env_id = ds.meta.get("env_id")
    if not env_id:
        raise ConfigError("the dataset names no env (meta env_id); give a dataset.npz written by an rl-lab run.")
    spec = _spec(str(env_id))
    max_steps = ds.meta.get("max_steps")
    if max_steps is not None and spec.max_episode_steps != max_steps:
        spec = dataclasses.replace(spec, max_episode_steps=int(max_steps))
    return spec


def export_minari(
    ds: Dataset,
    dataset_id: str,
    *,
    author: str | None = None,
    description: str | None = None,
    source: str | None = None,
) -> Any:
    """Write the kept episodes of ``ds`` as the Minari dataset ``dataset_id``; return the ``MinariDataset``.

    Raises:
        ConfigError: a bad id, an id that already exists, or a dataset without full episodes.
        MissingExtraError: minari or h5py is not installed.
    """
    minari = _minari("rl-lab-export")
    from minari.data_collector.episode_buffer import EpisodeBuffer
    from minari.storage.datasets_root_dir import get_dataset_path

    _check_id(dataset_id, "--id")
    target = get_dataset_path(dataset_id)
    if target.exists():
        raise ConfigError(
            f"--id {dataset_id!r}: a Minari dataset with this id already exists at {target}. Minari never "
            f"overwrites one: pick another name or version (e.g. -v{_next_version(dataset_id)}), or delete it first "
            f"(minari delete {dataset_id})."
        )
    spec = _env_spec(ds)
    episodes = list(kept_episodes(ds))
    if not episodes:
        raise ConfigError("the dataset keeps no episode, so there is nothing to export.")
    import gymnasium as gym

    env = gym.make(spec)
    action_dtype = env.action_space.dtype
    buffers = [
        EpisodeBuffer(
            id=j,
            observations=obs,
            actions=actions.astype(action_dtype),
            rewards=rewards.astype(np.float64),
            terminations=np.r_[np.zeros(len(rewards) - 1, dtype=bool), terminated],
            truncations=np.r_[np.zeros(len(rewards) - 1, dtype=bool), not terminated],
        )
        for j, (obs, actions, rewards, terminated) in enumerate(episodes)
    ]
    m = ds.meta
    rule = (
        f"min_score={m.get('min_score')}" if m.get("min_score") is not None else f"top_fraction={m.get('top_fraction')}"
    )
    behaviour = m.get("behaviour", "random")
    text = description or (
        f"{len(buffers)} of {ds.episode_returns.size} episodes of {m.get('env_id')} played by rl_lab's {behaviour} "
        f"behaviour (round {m.get('round', 0)}, collection seed {m.get('seed')}), kept by the filter {rule} "
        f"(lowest kept score {m.get('threshold')})."
    )
    rl_lab_meta = {
        "format": DATASET_FORMAT,
        "env_id": m.get("env_id"),
        "min_score": m.get("min_score"),
        "top_fraction": m.get("top_fraction"),
        "threshold": m.get("threshold"),
        "seed": m.get("seed"),
        "round": m.get("round"),
        "behaviour": behaviour,
        "max_steps": m.get("max_steps"),
        "episodes": int(ds.episode_returns.size),
        "kept_episodes": ds.kept_episodes,
        "samples": ds.samples,
        "dataset_sha256": ds.content_hash(),
        "source": source,
    }
    try:
        with warnings.catch_warnings():  # minari warns about every metadata field left out (author email, ...)
            warnings.simplefilter("ignore", UserWarning)
            out = minari.create_dataset_from_buffers(
                dataset_id,
                buffers,
                env=spec,
                algorithm_name=f"rl_lab filtered {behaviour} rollouts ({rule})",
                author=author,
                description=text,
                requirements=["rl-lab"],
            )
        out.storage.update_metadata({"rl_lab": rl_lab_meta})
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # no half-written dataset blocks the id
        raise
    finally:
        env.close()
    return out


def _next_version(dataset_id: str) -> int:
    return int(dataset_id.rsplit("-v", 1)[1]) + 1 if "-v" in dataset_id else 0


def load_minari(
    ref: str,
    *,
    env_id: str,
    min_score: float | None,
    top_fraction: float | None,
    key: str = "collector.dataset",
) -> Dataset:
    """Read the local Minari dataset ``minari:<id>`` as an rl_lab dataset, filtered by rl_lab's rule.

    Each episode's return is the sum of its rewards (float64, in step order, as the collector sums
    them); ``min_score`` / ``top_fraction`` select the kept episodes as in a collection.

    Args:
        ref: ``minari:<id>``.
        env_id: the run's ``env.id``; it must be the dataset's env.

    Raises:
        ConfigError: no such dataset, spaces rl_lab can't learn, another env, nothing kept.
        MissingExtraError: minari or h5py is not installed.
    """
    from rl_lab.collect import _select
    from rl_lab.envs import check_spaces

    dataset_id = ref[len(MINARI_PREFIX) :] if ref.startswith(MINARI_PREFIX) else ref
    what = f"{key}={ref!r}"
    minari = _minari(f"{key}=minari:<id>")
    from minari.storage.datasets_root_dir import get_dataset_path

    _check_id(dataset_id, what)
    if not (get_dataset_path(dataset_id) / "data").is_dir():
        local = sorted(str(p.relative_to(get_dataset_path())).rsplit("/data", 1)[0] for p in _data_dirs())
        listed = f" Local datasets: {', '.join(local)}." if local else " There are no local datasets."
        raise ConfigError(
            f"{what}: there is no local Minari dataset {dataset_id!r} under {_datasets_root()} "
            f"(MINARI_DATASETS_PATH sets that root).{listed} rl_lab never downloads: write one with "
            f"rl-lab-export <dataset.npz> --id {dataset_id}, or fetch it yourself (minari download {dataset_id})."
        )
    try:
        md = minari.load_dataset(dataset_id)
        obs_space, act_space = md.observation_space, md.action_space
        meta = md.storage.metadata
    except Exception as e:  # a damaged or foreign directory
        raise ConfigError(f"{what}: the Minari dataset cannot be read ({type(e).__name__}: {str(e)[:200]}).") from None
    data_env = (meta.get("rl_lab") or {}).get("env_id") or (md.env_spec.id if md.env_spec is not None else None)
    if data_env is None:
        raise ConfigError(
            f"{what}: the dataset names no environment (no env_spec), and rl_lab needs one to evaluate the policy."
        )
    try:
        obs_dim, action = check_spaces(str(data_env), obs_space, act_space)
    except ConfigError as e:
        raise ConfigError(f"{what}: rl_lab cannot learn from this dataset's spaces. {e}") from None
    if env_id != data_env and env_id.partition(":")[2] != data_env and str(data_env).partition(":")[2] != env_id:
        raise ConfigError(
            f"{what} holds episodes of env {data_env!r}, but env.id={env_id!r} (CartPole-v1 unless you set it). "
            f"The policy is evaluated in env.id: set env.id={data_env}."
        )
    obs_l, act_l, rew_l, final_l, term_l, returns, lengths = [], [], [], [], [], [], []
    for ep in md.iterate_episodes():
        obs = np.asarray(ep.observations, dtype=np.float32).reshape(len(ep) + 1, obs_dim)
        rewards = np.asarray(ep.rewards, dtype=np.float64)
        obs_l.append(obs[:-1])
        final_l.append(obs[-1])
        act_l.append(np.asarray(ep.actions).astype(action.store_dtype()).reshape(len(ep), *action.row_shape()))
        rew_l.append(rewards)
        term_l.append(bool(len(ep) and ep.terminations[-1]))
        returns.append(float(np.cumsum(rewards)[-1]) if rewards.size else 0.0)
        lengths.append(len(ep))
    if not returns:
        raise ConfigError(f"{what}: the dataset has no episodes.")
    r = np.array(returns, dtype=np.float64)
    kept, threshold = _select(r, min_score, top_fraction)
    if not kept.any():
        raise ConfigError(
            f"collector.min_score={min_score!r}: none of the {r.size} episodes of {ref} reaches it (best score "
            f"{r.max():g}, mean {r.mean():.1f}). Lower it, e.g. collector.min_score={np.quantile(r, 0.9):g}, or keep "
            "the best share with collector.min_score=null collector.top_fraction=0.1."
        )
    idx = np.flatnonzero(kept)
    samples = int(sum(lengths[i] for i in idx))
    ds = Dataset(
        obs=np.concatenate([obs_l[i] for i in idx]) if samples else np.zeros((0, obs_dim), np.float32),
        actions=np.concatenate([act_l[i] for i in idx]) if samples else action.empty(0),
        episode_returns=r,
        episode_lengths=np.array(lengths, dtype=np.int64),
        kept=kept,
        meta={
            "threshold": threshold,
            "min_score": min_score,
            "top_fraction": top_fraction,
            "seed": None,
            "env_id": env_id,
            "round": 0,
            "behaviour": ref,
            "episodes": int(r.size),
            "kept_episodes": int(idx.size),
            "samples": samples,
        },
        rewards=np.concatenate([rew_l[i] for i in idx]) if samples else np.zeros(0, np.float64),
        terminated=np.array([term_l[i] for i in idx], dtype=bool),
        final_obs=np.stack([final_l[i] for i in idx]),
    )
    if action.continuous:
        if ds.actions.size and not np.all(np.isfinite(ds.actions)):
            raise ConfigError(f"{what}: the actions hold NaN or infinite values; the dataset is damaged.")
    elif ds.actions.size and (ds.actions.min() < 0 or ds.actions.max() >= action.n):
        raise ConfigError(f"{what}: actions outside 0 .. {action.n - 1}; the dataset does not fit its action space.")
    return ds


def _data_dirs() -> Iterator[Path]:
    from minari.storage.datasets_root_dir import get_dataset_path

    root = get_dataset_path()
    yield from (p for p in root.rglob("data") if (p / "metadata.json").is_file())


# --------------------------------------------------------------------------------------- CLI


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="rl-lab-export",
        description="Write the kept episodes of an rl_lab dataset.npz as a local Minari dataset "
        "(under MINARI_DATASETS_PATH, default ~/.minari/datasets).",
    )
    parser.add_argument("dataset", type=Path, help="a dataset.npz written by rl-lab (in a run dir: round_*/ or top)")
    parser.add_argument("--id", required=True, dest="dataset_id", help="Minari id: (namespace/)name-vN")
    parser.add_argument("--author", default=None, help="author recorded in the Minari metadata")
    parser.add_argument("--description", default=None, help="description (default: env, behaviour, filter, seed)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``rl-lab-export <dataset.npz> --id <namespace/name-vN>``.

    Returns:
        0 on success; 2 with one paragraph on stderr for bad input (missing file, not a dataset,
        existing or malformed id, missing extra).
    """
    args = _parse_args(argv)
    try:
        ds = load_dataset(args.dataset, key="dataset")
        out = export_minari(
            ds, args.dataset_id, author=args.author, description=args.description, source=str(args.dataset)
        )
    except RLLabError as err:
        print(f"rl-lab-export: {err}", file=sys.stderr)
        return err.exit_code
    env_id = ds.meta.get("env_id")
    print(
        f"Wrote Minari dataset {args.dataset_id}: {out.total_episodes} episodes, {out.total_steps} steps of "
        f"{env_id}, in {out.storage.data_path.parent}.\n"
        f"Load it with minari.load_dataset({args.dataset_id!r}); train on it with "
        f"rl-lab collector.dataset=minari:{args.dataset_id} env.id={env_id}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
