"""Sweeps through Hydra's own plugins: joblib, submitit_local, ray, Optuna; and a clear error without them.

Every sweep runs the real CLI (``python -m rl_lab``) in a subprocess on tiny budgets.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from rl_lab import launchers
from rl_lab.launchers import check_plugins

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TINY = ["debug=fast", "collector.episodes=200", "evaluator.episodes=4"]


def job_dirs(sweep: Path) -> list[Path]:
    """The job dirs of a sweep, in job-number order."""
    jobs = [p for p in sweep.iterdir() if (p / ".hydra").is_dir()]
    return sorted(jobs, key=lambda p: int(p.name.split("_", 1)[0]))


def check_job(job: Path) -> dict:
    """A job that completed and wrote every artifact; returns its metrics."""
    m = json.loads((job / "metrics.json").read_text())
    assert m["status"] == "completed", m
    for name in ("policy.pt", "eval.json"):
        assert (job / name).is_file(), f"{name} missing in {job}"
    assert list(job.rglob("dataset.npz")), f"no dataset.npz in {job}"  # round_<k>/ when rounds > 1
    return m


def hydra_yaml(job: Path) -> dict:
    return yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]


def job_config(job: Path) -> dict:
    return yaml.safe_load((job / ".hydra" / "config.yaml").read_text())


def event_pids(job: Path) -> set[int]:
    """PIDs of the processes that wrote the job's TensorBoard files.

    TensorBoard names them ``events.out.tfevents.<time>.<host>.<pid>.<n>`` (the host may contain dots).
    """
    return {int(f.name.split(".")[-2]) for f in (job / "tb").rglob("events.out.tfevents.*")}


def plugin_installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


# --- launchers ----------------------------------------------------------------------------------


def test_joblib_sweep_runs_each_job_in_its_own_process_with_one_thread(cli, tmp_path):
    sweep = tmp_path / "sweep"
    # n_jobs=2 explicitly, so a 1-core runner still gets two workers
    proc = cli("-m", "launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1", *TINY, f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    jobs = job_dirs(sweep)
    assert len(jobs) == 2
    # <job number>_<override_dirname>: two seeds never share a dir (configs/hydra/default.yaml)
    for num, job in enumerate(jobs):
        assert job.name == f"{num}_collector.episodes=200,evaluator.episodes=4,seed={num}"  # no launcher/debug/n_jobs
    pids = []
    for job in jobs:
        metrics = check_job(job)
        assert hydra_yaml(job)["launcher"]["_target_"].endswith("JoblibLauncher")
        assert job_config(job)["threads"] == 1  # one torch thread per job
        assert metrics["env_threads"] == 1  # and one EnvPool worker: parallel jobs never oversubscribe
        (pid,) = event_pids(job)  # the whole job ran in one process
        pids.append(pid)
    # the basic launcher runs every job in the CLI's own process; joblib spread them over workers
    assert pids[0] != pids[1]


def test_submitit_local_sweep_writes_artifacts_in_each_job_dir(cli, tmp_path):
    sweep = tmp_path / "sweep"
    proc = cli("-m", "launcher=submitit_local", "seed=0,1", *TINY, f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    jobs = job_dirs(sweep)
    assert len(jobs) == 2
    for job in jobs:
        check_job(job)
        assert hydra_yaml(job)["launcher"]["_target_"].endswith("LocalLauncher")
        assert job_config(job)["threads"] == 1
    assert (sweep / ".submitit").is_dir()  # job stdout/stderr live there
    # submitit_local job ids are the PIDs of the job processes
    assert len({hydra_yaml(job)["job"]["id"] for job in jobs}) == 2


@pytest.mark.skipif(
    not plugin_installed("hydra_plugins.hydra_ray_launcher"), reason='needs the ray extra: pip install -e ".[ray]"'
)
def test_ray_sweep_writes_artifacts_in_each_job_dir(cli, tmp_path):
    sweep = tmp_path / "sweep"
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray puts unix sockets in it
    try:
        proc = cli(
            "-m",
            "launcher=ray",
            "hydra.launcher.ray.init.num_cpus=2",
            "seed=0,1",
            *TINY,
            f"hydra.sweep.dir={sweep}",
            env={"RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": str(ray_tmp)},
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    jobs = job_dirs(sweep)
    assert len(jobs) == 2
    for job in jobs:
        check_job(job)
        assert job_config(job)["threads"] == 1


# --- Optuna -------------------------------------------------------------------------------------


def test_optuna_search_finishes_and_records_the_best_value(cli, tmp_path):
    sweep = tmp_path / "search"
    proc = cli("hparams_search=optuna", "hydra.sweeper.n_trials=3", *TINY, f"hydra.sweep.dir={sweep}")  # no -m
    assert proc.returncode == 0, proc.stderr
    jobs = job_dirs(sweep)
    assert len(jobs) == 3
    scores = []
    for job in jobs:
        scores.append(check_job(job)["eval"]["score_mean"])
        sizes = job_config(job)["policy"]["hidden_sizes"]
        assert isinstance(sizes, list) and all(isinstance(s, int) for s in sizes)  # "[64,64]" became a list
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(max(scores))  # direction: maximize
    assert {"trainer.lr", "policy.dropout", "policy.hidden_sizes", "collector.min_score"} <= set(results["best_params"])


# --- every experiment ---------------------------------------------------------------------------


def test_every_experiment_config_runs_in_one_sweep(cli, tmp_path):
    experiments = sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml"))
    assert experiments
    sweep = tmp_path / "sweep"
    # debug=fast comes after experiment in the defaults list, so it shrinks every experiment;
    # the command line beats an experiment's own settings (cem: 40 rounds). 128 episodes on 128 sub-envs:
    # the MountainCar experiments' collected episodes run up to 5,000 steps (200 episodes: 40 s here).
    small = ["debug=fast", "collector.episodes=128", "env.num_envs=128", "evaluator.episodes=4", "rounds=2"]
    proc = cli("-m", "experiment=glob(*)", *small, f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    jobs = job_dirs(sweep)
    ran = sorted(
        o for job in jobs for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) if "experiment=" in o
    )
    assert ran == [f"experiment={name}" for name in experiments]
    for job in jobs:
        check_job(job)
        assert job_config(job)["rounds"] == 2


# --- a missing plugin: one paragraph, exit 2 ----------------------------------------------------


@pytest.mark.parametrize(
    "argv,module,extra",
    [
        (["-m", "launcher=joblib", "seed=0,1"], "hydra_plugins.hydra_joblib_launcher", "sweep"),
        (["-m", "launcher=submitit_local"], "hydra_plugins.hydra_submitit_launcher", "sweep"),
        (["-m", "launcher=slurm", "hydra.launcher.partition=gpu"], "hydra_plugins.hydra_submitit_launcher", "sweep"),
        (["-m", "+launcher=ray"], "hydra_plugins.hydra_ray_launcher", "ray"),
        (["hparams_search=optuna"], "hydra_plugins.hydra_optuna_sweeper", "sweep"),
        (["-m", "hydra/launcher=submitit_slurm"], "hydra_plugins.hydra_submitit_launcher", "sweep"),
        (["-m", "hydra/sweeper=optuna"], "hydra_plugins.hydra_optuna_sweeper", "sweep"),
        (["-m", "hydra/launcher=ray"], "ray", "ray"),  # the plugin without its library is no better
    ],
)
def test_missing_plugin_exits_2_naming_the_extra(monkeypatch, capsys, argv, module, extra):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    with pytest.raises(SystemExit) as exc:
        check_plugins(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f'pip install -e ".[{extra}]"' in err
    assert err.strip().count("\n") == 0  # one paragraph


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["-m", "seed=0,1"],
        ["launcher=nosuch"],  # unknown options are Hydra's to report
        ["hydra.launcher.n_jobs=2", "--cfg", "job"],
        ["experiment=cem", "collector.min_score=null"],
    ],
)
def test_no_plugin_needed_or_all_installed_is_a_no_op(monkeypatch, argv):
    monkeypatch.setattr(importlib.util, "find_spec", lambda *a: None)  # nothing installed
    check_plugins(argv)


def test_installed_plugins_pass():
    for (group, option), plugin in launchers.PLUGINS.items():
        if all(plugin_installed(m) for m in plugin.modules):
            check_plugins(["-m", f"{group}={option}"])  # does not exit


BLOCKED_CLI = """
import sys

class Block:  # makes hydra_plugins.hydra_joblib_launcher look not installed
    def find_spec(self, name, path=None, target=None):
        if name.startswith("hydra_plugins.hydra_joblib_launcher"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Block())
sys.argv = ["rl-lab", "-m", "launcher=joblib", "seed=0,1", "hydra.sweep.dir=sweep"]
from rl_lab.app import main
main()
"""


def test_cli_without_the_joblib_plugin_says_what_to_install(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKED_CLI], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert "launcher=joblib" in proc.stderr and 'pip install -e ".[sweep]"' in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "sweep").exists()


@pytest.mark.skipif(plugin_installed("hydra_plugins.hydra_ray_launcher"), reason="the ray plugin is installed")
def test_cli_launcher_ray_without_the_ray_extra(cli, tmp_path):
    proc = cli("-m", "launcher=ray", "seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert proc.returncode == 2
    assert 'pip install -e ".[ray]"' in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
