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
import textwrap
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
GROUP_HELP = {
    "env": "the environment; or env.id=<any gymnasium id>",
    "policy": "the network",
    "collector": "how episodes are played and which are kept",
    "trainer": "supervised training",
    "evaluator": "evaluation and rendering",
    "experiment": "a whole recipe over the defaults",
    "debug": "tiny everything, for a quick look",
    "hparams_search": "a hyper-parameter search, always a sweep",
    "launcher": "where sweep jobs run; needs the sweep extra",
}


def help_groups(*groups: str) -> str:
    """``--help``'s list of config groups and options (``${rl_lab_groups:}`` in configs/hydra/help/).

    Read from the folders of configs/, so a new option shows up by itself; the ``base_*`` schemas that
    rl_lab/config.py registers are not options to pick and are left out.
    """
    root = Path(CONFIG_DIR)
    names = list(groups) or sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in ("hydra", "local"))
    lines = []
    for group in names:
        options = ", ".join(sorted(p.stem for p in (root / group).glob("*.yaml") if not p.stem.startswith("base_")))
        line = "\n".join(textwrap.wrap(f"{group}: {options}", 97, initial_indent="  ", subsequent_indent="      "))
        about = GROUP_HELP.get(group)
        if about:
            last = line.rsplit("\n", 1)[-1]
            line += f"  - {about}" if len(last) + len(about) + 4 <= 100 else f"\n      - {about}"
        lines.append(line)
    return "\n".join(lines)


OmegaConf.register_new_resolver("rl_lab_groups", help_groups, replace=True)


def to_config(cfg: DictConfig, training: bool = True) -> Config:
    """DictConfig -> validated :class:`Config` (a :class:`ConfigError` names the bad value or key)."""
    for key in _extra_keys(cfg, Config):  # a key added with '+' that the schema does not know
        raise ConfigError(f"{key}: {unknown_key_message(key, appended=True)}")
    config = OmegaConf.to_object(cfg)
    assert isinstance(config, Config)
    return validate(config, training=training)


def setup_job(config: Config) -> None:
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
        config = to_config(cfg)  # a bad value fails here, before torch is imported (about 2 s)
        out = where[0]
        if config.resume:
            config, out = _resume_config(config)
            where[0] = out
        if config.evaluator.render != "none":  # e.g. human without a display: refuse before any work
            from rl_lab.render import check_render_mode

            check_render_mode(config.evaluator.render)
        from rl_lab.pipeline import run

        setup_job(config)
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
        from rl_lab.policy import check_head, load_policy
        from rl_lab.tracking import Tracker
        from rl_lab.utils import derive_seed, resolve_device, seed_everything, write_json

        out = where[0]
        config = to_config(cfg, training=False)
        if not config.checkpoint:
            raise ConfigError(
                "checkpoint is not set: rl-lab-eval needs the policy to play, e.g. "
                "rl-lab-eval checkpoint=outputs/<date>/<time>/policy.pt"
            )
        setup_job(config)
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
        check_head(policy, info.action, env_id, config.checkpoint)  # Discrete logits vs Box means, bounds
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


# --- the end of a run -------------------------------------------------------------------------------


def _shown(path: Path) -> str:
    """``path`` as a user would type it: relative to the current dir when inside it, else absolute."""
    path = Path(path).absolute()
    try:
        rel = path.relative_to(Path.cwd())
    except ValueError:
        return str(path)
    return str(rel) if str(rel) != "." else "."


def _next_steps(out: Path, multirun: bool) -> str:
    """The run dir and what to do next with it (a sweep job: its dir only)."""
    run_dir = _shown(out)
    if multirun:
        return f"run dir:  {run_dir}"
    policy = _shown(out / "policy.pt")
    return (
        f"run dir:  {run_dir}\n"
        f"policy:   {policy}\n"
        f"evaluate: rl-lab-eval {shlex.quote(f'checkpoint={policy}')}\n"
        f"curves:   tensorboard --logdir {shlex.quote(run_dir)}"
    )


# --- config errors that Hydra finds, before or while composing --------------------------------------

_USER_FULL_ERROR = "RL_LAB_HYDRA_FULL_ERROR"  # the user's HYDRA_FULL_ERROR; main() sets Hydra's own to 1


def _full_error() -> bool:
    """The user asked for full tracebacks (``HYDRA_FULL_ERROR=1``)."""
    return os.environ.get(_USER_FULL_ERROR, os.environ.get("HYDRA_FULL_ERROR", "")) == "1"


def _schema_paths(node: Any = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the schema: sections and leaves."""
    paths: list[str] = []
    hints = typing.get_type_hints(node)
    for f in dataclasses.fields(node):
        path = f"{prefix}{f.name}"
        paths.append(path)
        if dataclasses.is_dataclass(hints[f.name]):
            paths += _schema_paths(hints[f.name], f"{path}.")
    return paths


def _schema_field(key: str) -> tuple[Any, Any] | None:
    """(type, default) of a dotted schema key; None when it is not one."""
    node: Any = Config
    *parents, leaf = key.split(".")
    for part in parents:
        hints = typing.get_type_hints(node) if dataclasses.is_dataclass(node) else {}
        if part not in hints:
            return None
        node = hints[part]
    if not dataclasses.is_dataclass(node):
        return None
    fields = {f.name: f for f in dataclasses.fields(node)}
    if leaf not in fields:
        return None
    f = fields[leaf]
    default = f.default if f.default is not dataclasses.MISSING else None
    if f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    return typing.get_type_hints(node)[leaf], default


def _unknown_part(key: str) -> tuple[str, str, list[str]] | None:
    """None when ``key`` is in the schema (or inside a leaf value); else (its section, the unknown part, the keys)."""
    node: Any = Config
    done: list[str] = []
    for part in key.split("."):
        if not dataclasses.is_dataclass(node):
            return None  # below a leaf (a list index): Hydra checks it
        hints = typing.get_type_hints(node)
        if part not in hints:
            return ".".join(done), part, [f.name for f in dataclasses.fields(node)]
        node = hints[part]
        done.append(part)
    return None


def unknown_key_message(key: str, appended: bool = False) -> str:
    """Why ``key`` is refused: the close valid keys (difflib) and the keys of its section."""
    section, bad, keys = _unknown_part(key) or ("", key, [])
    prefix = f"{section}." if section else ""
    close = [prefix + k for k in difflib.get_close_matches(bad, keys, n=2, cutoff=0.6)]
    if key == prefix + bad:  # the leaf itself: also the same name in another section (trainer.dropout)
        leaves = [p for p in _schema_paths() if "." in p and p not in close]
        close += [p for p in leaves if difflib.get_close_matches(bad, [p.rsplit(".", 1)[1]], cutoff=0.8)]
    hint = f" Did you mean {' or '.join(close[:3])}?" if close else ""
    where = f"The keys of {section} are" if section else "The top-level keys are"
    plus = " A leading '+' adds a key the schema does not have, which nothing would read." if appended else ""
    return (
        f"{key} is not a key of rl_lab's config (the schema in rl_lab/config.py).{hint} {where} "
        f"{', '.join(keys)}; `--cfg job` prints them all.{plus}"
    )


def _extra_keys(cfg: Any, schema: Any, prefix: str = "") -> Iterator[str]:
    """Keys of a composed config that its schema dataclass does not have (e.g. added with '+')."""
    if not isinstance(cfg, DictConfig) or not dataclasses.is_dataclass(schema):
        return
    hints = typing.get_type_hints(schema)
    for key in cfg.keys():
        if key == "hydra" and not prefix:
            continue
        if key not in hints:
            yield f"{prefix}{key}"
        elif dataclasses.is_dataclass(hints[key]):
            yield from _extra_keys(cfg._get_node(key), hints[key], f"{prefix}{key}.")


def _config_groups(config_dirs: list[str]) -> set[str]:
    """The config group names (folders of the config dirs, the schema groups, the optional ``local``)."""
    groups = {"hydra", "local", "env", "collector", "policy", "trainer", "evaluator"}
    for d in config_dirs:
        if os.path.isdir(d):
            groups |= {p.name for p in Path(d).iterdir() if p.is_dir()}
    return groups


def _parse_cli(argv: list[str]) -> tuple[Any, list[Any]] | None:
    """(Hydra's parsed flags, the parsed overrides) of ``argv``; None when Hydra itself should report it."""
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = get_args_parser()
    parser.exit_on_error = False
    try:
        args, _ = parser.parse_known_args(argv)
        return args, OverridesParser.create().parse_overrides(args.overrides)
    except (Exception, SystemExit):  # bad flags or override syntax: Hydra prints its own message
        return None


def override_key_error(overrides: list[Any], config_dirs: list[str]) -> str | None:
    """One paragraph for the first parsed override whose key the schema does not have ('+' or not); else None."""
    groups = _config_groups(config_dirs)
    for o in overrides:
        key = o.key_or_group
        if o.package is not None or "/" in key or key.split(".")[0] == "hydra" or key in groups:
            continue
        if _unknown_part(key) is not None:
            return f"{o.input_line}: {unknown_key_message(key, appended=o.is_add() or o.is_force_add())}"
    return None


def _check_override_keys(prog: str, argv: list[str]) -> None:
    """Exit 2 with one paragraph for an override of a key the schema does not have, '+' or not."""
    parsed = _parse_cli(argv)
    if parsed is None:
        return
    args, overrides = parsed
    if args.help or args.hydra_help:
        return
    message = override_key_error(overrides, [CONFIG_DIR, *([args.config_dir] if args.config_dir else [])])
    if message is not None:
        _config_exit(prog, message)


def _config_exit(prog: str, message: str) -> typing.NoReturn:
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(2)


def gym_id_suggestion(name: str) -> str | None:
    """The gymnasium id closest to ``name`` (case- and punctuation-insensitive): "mountaincar" -> "MountainCar-v0"."""
    import gymnasium as gym

    def norm(text: str) -> str:
        return re.sub(r"[^a-z0-9]", "", re.sub(r"-v\d+$", "", text.lower()))

    def version(env_id: str) -> tuple[int, bool]:
        m = re.search(r"-v(\d+)$", env_id)
        return (int(m.group(1)) if m else -1, "/" not in env_id)

    by_name: dict[str, list[str]] = {}
    for env_id in gym.registry:
        by_name.setdefault(norm(env_id.split("/")[-1]), []).append(env_id)
    match = difflib.get_close_matches(norm(name), list(by_name), n=1, cutoff=0.6)
    return max(by_name[match[0]], key=version) if match else None


def _missing_option_message(e: Any) -> str | None:
    """``env=mountaincar``: the group's options, the closest one and, for env, the env.id form."""
    missing = str(getattr(e, "missing_cfg_file", "") or "")
    options = getattr(e, "options", None)
    if "/" not in missing or options is None:
        return None
    group, _, option = missing.rpartition("/")
    shown = sorted(o for o in options if not o.startswith("base_"))  # the schemas are no options to pick
    close = difflib.get_close_matches(option, shown, n=1, cutoff=0.6)
    text = (
        f"{group}={option}: the config group {group} has no option {option!r} (its options: "
        f"{', '.join(shown) or 'none'})."
    )
    if close:
        text += f" Did you mean {group}={close[0]}?"
    if group == "env":
        env_id = gym_id_suggestion(option)
        example = env_id or "MountainCar-v0"
        text += f" Any gymnasium environment runs without a config file: set its id, e.g. env.id={example}" + (
            " (the closest registered id)." if env_id else "."
        )
    return text


def config_error_message(e: BaseException) -> str | None:
    """One paragraph for a config error Hydra or OmegaConf raised; None for anything else (a bug)."""
    from hydra.errors import (
        ConfigCompositionException,
        MissingConfigException,
        OverrideParseException,
        SearchPathException,
    )
    from omegaconf.errors import OmegaConfBaseException

    if getattr(e, "_rl_lab_job_error", False):
        return None
    if isinstance(e, MissingConfigException):
        text = _missing_option_message(e)
        if text:
            return text
    if isinstance(e, OverrideParseException):
        return f"{e.override}: {e.message.strip()}".replace("\n", " ")
    if not isinstance(e, ConfigCompositionException | SearchPathException | OmegaConfBaseException):
        return None
    cause = e.__cause__ if isinstance(e.__cause__, OmegaConfBaseException) else None
    lines = [str(e)] + ([str(getattr(cause, "msg", None) or cause)] if cause is not None else [])
    noise = ("full_key:", "reference_type=", "object_type=", "Config search path", "provider=", "To append to")
    parts = [ln.strip() for text in lines for ln in text.splitlines()]
    text = " ".join(p for p in parts if p and not p.startswith(noise))
    text = re.sub(r"^Error merging override (\S+) ", r"\1: ", text)
    full_key = getattr(cause or e, "full_key", None)
    field = _schema_field(str(full_key)) if full_key else None
    if field is not None:
        kind, default = field
        kind_name = kind.__name__ if isinstance(kind, type) else str(kind).replace("typing.", "")
        example = _override_value(default)
        text = (
            text.rstrip(". ")
            + f". {full_key} takes {kind_name} (rl_lab/config.py), e.g. {full_key}={example} (the default)."
        )
    return text


def _override_value(value: Any) -> str:
    """``value`` as it is typed in an override: null, true, [16,16], 2.33e-4."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    return str(value)


def _run_cli(prog: str, task: Callable[[], Any]) -> None:
    """Run a Hydra entry point: a config error, Hydra's or ours, ends in one paragraph and exit code 2.

    Hydra prints its own errors and exits 1 unless ``HYDRA_FULL_ERROR=1``, so that is set for Hydra
    (the user's own setting is kept for :func:`_full_error`) and its errors are reported here. A
    bug still exits 1 with its traceback; ``HYDRA_FULL_ERROR=1`` shows every traceback unchanged.
    """
    from rl_lab.launchers import check_plugins

    argv = sys.argv[1:]
    check_plugins(argv)  # a missing launcher/sweeper plugin: one paragraph, exit 2
    user = os.environ.get("HYDRA_FULL_ERROR")
    if user != "1":
        _check_override_keys(prog, argv)
    saved = {k: os.environ.get(k) for k in (_USER_FULL_ERROR, "HYDRA_FULL_ERROR")}
    os.environ[_USER_FULL_ERROR] = "1" if user == "1" else "0"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        task()
    except Exception as e:
        if user == "1":
            raise
        message = config_error_message(e)
        if message is None:
            traceback.print_exc()
            sys.exit(1)
        _config_exit(prog, message)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _eval_dir_override(argv: list[str]) -> list[str]:
    """``hydra.run.dir=<checkpoint's dir>/eval/<date>_<time>`` (and the sweep dir) unless given on the command line.

    So rl-lab-eval writes next to the policy it evaluates, and ``outputs/``' newest dir stays the last
    trained policy. Nothing is added for a checkpoint that is not an existing file (the job says why).
    """
    parsed = _parse_cli(argv)
    if parsed is None:
        return []
    _, overrides = parsed
    keys = {o.key_or_group.lstrip("+~") for o in overrides}
    ckpt = [o for o in overrides if o.key_or_group == "checkpoint" and not o.is_sweep_override()]
    if not ckpt or not isinstance(ckpt[-1].value(), str) or not Path(ckpt[-1].value()).is_file():
        return []
    where = str(Path(ckpt[-1].value()).parent / "eval") + "/${now:%Y-%m-%d}_${now:%H-%M-%S}"
    if re.search(r"[^\w./@:+${}%-]", where):  # quote it for Hydra's override grammar (interpolations still work)
        where = "'" + where.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return [f"{key}={where}" for key in ("hydra.run.dir", "hydra.sweep.dir") if key not in keys]


def main() -> None:
    """Console script ``rl-lab``."""
    _run_cli("rl-lab", _main)


def play() -> None:
    """Console script ``rl-lab-eval``."""
    sys.argv += _eval_dir_override(sys.argv[1:])
    _run_cli("rl-lab-eval", _play)
