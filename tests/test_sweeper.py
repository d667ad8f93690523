"""ser's Optuna sweeper (hydra/sweeper: ser_optuna): the sweep configs' search spaces as Optuna
distributions, storages and their errors, n_trials as the size of a study that workers and
later commands share; then the real `python train.py -m hparams_search=optuna` with a stored
study resumed, and two workers on one journal file at once."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from hydra.core.utils import JobReturn, JobStatus
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

import hydra_plugins.ser_optuna_sweeper._impl as impl
from hydra_plugins.ser_optuna_sweeper._impl import (
    RESULTS_FILE,
    OptunaSweeperImpl,
    SearchSpace,
    Storage,
    open_storage,
)
from ser.errors import SerError
from ser.project import CONFIG_DIR

ComposeFn = Callable[..., DictConfig]
CONF = Path(CONFIG_DIR)
optuna.logging.set_verbosity(optuna.logging.WARNING)


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def sweeper_params(cfg: DictConfig) -> list[str]:
    return [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]


@pytest.mark.parametrize("option", options("hparams_search"))
def test_each_sweep_config_is_an_optuna_search_space_whose_trials_compose(
    option: str, compose: ComposeFn
) -> None:
    base = [f"experiment={option}"] if option in options("experiment") else []
    cfg = compose([*base, f"hparams_search={option}"], hydra=True)
    assert cfg.hydra.sweeper._target_.startswith("hydra_plugins.ser_optuna_sweeper.")
    space = SearchSpace.parse(sweeper_params(cfg))
    assert set(space.distributions) == set(cfg.hydra.sweeper.params)
    # Every value of the space reaches the composed config as Hydra would set it.
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(4):
        trial = study.ask(dict(space.distributions))
        overrides = space.overrides(trial.params)
        run = compose([*base, f"hparams_search={option}", *overrides], hydra=True)
        for key, value in trial.params.items():
            got = OmegaConf.select(run, key)
            if (CONF / key).is_dir():  # a config group: the option picked
                assert run.hydra.runtime.choices[key] == value
            elif key in space.choice_texts:  # the choice as written, e.g. [512,256]
                text = space.choice_texts[key][value]
                plain = OmegaConf.to_container(got) if isinstance(got, ListConfig) else got
                assert plain == yaml.safe_load(text)
            else:
                assert got == pytest.approx(value)


def test_the_default_sweep_keeps_its_search_space(compose: ComposeFn) -> None:
    cfg = compose(["hparams_search=optuna"], hydra=True)
    space = SearchSpace.parse(sweeper_params(cfg)).distributions
    assert space["model.optimizer.lr"] == FloatDistribution(0.0003, 0.01)
    assert space["model.optimizer.weight_decay"] == FloatDistribution(0.00001, 0.01)
    assert space["model.net.dropout"] == CategoricalDistribution([0.1, 0.3, 0.5])
    assert space["data.batch_size"] == CategoricalDistribution([16, 32, 64])
    mlp = SearchSpace.parse(
        sweeper_params(compose(["hparams_search=ravdess_mlp_compare"], hydra=True))
    )
    assert mlp.distributions["model.optimizer.lr"] == FloatDistribution(0.0005, 0.01, log=True)
    assert mlp.choice_texts["model.net.hidden_sizes"]["[512,256]"] == "[512,256]"


def test_hydra_sweep_syntax_maps_to_optuna_distributions() -> None:
    space = SearchSpace.parse(
        [
            "a=int(interval(1, 8))",
            "b=tag(log, int(interval(1, 1024)))",
            "c=range(0, 10, 3)",
            "d=range(0.1, 0.5, 0.1)",
            "e=shuffle(range(3))",
            "f=1,2",
            "g=choice('a b', x)",
            "+h=3",
            "a=interval(0, 1)",  # a later override of a key replaces the earlier one
            "f=5",
        ]
    )
    d = space.distributions
    assert d["a"] == FloatDistribution(0.0, 1.0)
    assert d["b"] == IntDistribution(1, 1024, log=True)
    assert d["c"] == IntDistribution(0, 9, step=3)
    assert isinstance(d["d"], FloatDistribution) and d["d"].step == pytest.approx(0.1)
    assert set(d["e"].choices) == {0, 1, 2}  # type: ignore[attr-defined]
    assert space.fixed == {"+h": "+h=3", "f": "f=5"}
    assert space.overrides({"g": "a b", "c": 3}) == ["+h=3", "f=5", "g=a\\ b", "c=3"]
    with pytest.raises(SerError, match="choice"):
        SearchSpace.parse(["x=glob(*)"])


@pytest.mark.parametrize(
    ("storage", "expected"),
    [
        ("postgres://u@localhost/db", "knows no database 'postgres'"),
        ("postgresql://u:secret@localhost/db", "driver psycopg is not installed"),
        ("sqlite:/x.db", "neither a database URL nor a file"),
        ("sqlite:///{tmp}/no_such_dir/optuna.db", "no_such_dir does not exist"),
        ("{tmp}/no_such_dir/optuna.journal", "no_such_dir does not exist"),
        ("{tmp}", "is a folder"),
        ("{tmp}/not_a_journal.journal", "not an Optuna journal file"),
    ],
)
def test_a_bad_storage_is_one_line_naming_the_fix(
    storage: str, expected: str, tmp_path: Path
) -> None:
    (tmp_path / "not_a_journal.journal").write_bytes(b"\x80binary\n")
    with pytest.raises(SerError, match=expected) as raised:
        open_storage(storage.format(tmp=tmp_path))
    assert "secret" not in str(raised.value)  # a password is never shown
    assert "\n" not in str(raised.value)


class FakeLauncher:
    """Runs a trial as a call of `objective` on its overrides (after `delay_s`), as Hydra's
    launcher would run the training job; the jobs numbered in `fail` fail."""

    def __init__(
        self,
        objective: Callable[[dict[str, str]], float],
        delay_s: float = 0,
        fail: set[int] | None = None,
    ) -> None:
        self.objective = objective
        self.delay_s = delay_s
        self.fail = fail or set()
        self.jobs: list[tuple[int, dict[str, str]]] = []

    def launch(self, job_overrides: list[list[str]], initial_job_idx: int) -> list[JobReturn]:
        returns = []
        for idx, overrides in enumerate(job_overrides, initial_job_idx):
            time.sleep(self.delay_s)
            values = dict(o.split("=", 1) for o in overrides)
            self.jobs.append((idx, values))
            if idx in self.fail:
                error = RuntimeError(f"job {idx} failed")
                returns.append(JobReturn(overrides, status=JobStatus.FAILED, _return_value=error))
            else:
                value = self.objective(values)
                returns.append(
                    JobReturn(overrides, status=JobStatus.COMPLETED, _return_value=value)
                )
        return returns


def make_sweeper(
    sweep_dir: Path, launcher: FakeLauncher, storage: str | None, n_trials: int, **settings: Any
) -> OptunaSweeperImpl:
    sweeper = OptunaSweeperImpl(
        sampler=OmegaConf.create(
            {"_target_": "optuna.samplers.TPESampler", "seed": 1234, "n_startup_trials": 3}
        ),
        direction="maximize",
        storage=storage,
        study_name="study" if storage else None,
        n_trials=n_trials,
        n_jobs=settings.pop("n_jobs", 1),
        max_failure_rate=settings.pop("max_failure_rate", 0.0),
        params=OmegaConf.create({"x": "interval(0, 1)", "y": "choice(1, 2, 3)"}),
    )
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}}})
    sweeper.launcher = launcher  # type: ignore[assignment]
    return sweeper


def objective(values: dict[str, str]) -> float:
    return float(values["x"]) * int(values["y"])


def results(sweep_dir: Path) -> DictConfig:
    cfg = OmegaConf.load(sweep_dir / RESULTS_FILE)
    assert isinstance(cfg, DictConfig)
    return cfg


def journal_study(path: Path, name: str = "study") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(path))))


def test_a_stored_study_resumes_to_n_trials_and_replaces_failed_trials(tmp_path: Path) -> None:
    journal = str(tmp_path / "optuna.journal")
    flaky = FakeLauncher(objective, fail={1, 2})
    make_sweeper(tmp_path / "a", flaky, journal, 4, max_failure_rate=1.0).sweep([])
    study = journal_study(Path(journal))
    assert [t.state for t in study.trials].count(TrialState.FAIL) == 2
    assert len(flaky.jobs) == 4  # a worker's own bound: n_trials launched at most
    # Resuming runs only what is missing: the failed trials' replacements, numbered on.
    launcher = FakeLauncher(objective)
    make_sweeper(tmp_path / "b", launcher, journal, 4).sweep([])
    study = journal_study(Path(journal))
    assert [t.state for t in study.trials].count(TrialState.COMPLETE) == 4
    assert [idx for idx, _ in launcher.jobs] == [4, 5]  # job numbers are trial numbers
    # A study that has its trials runs none, and reports the same best trial.
    idle = FakeLauncher(objective)
    make_sweeper(tmp_path / "c", idle, journal, 4).sweep([])
    assert idle.jobs == []
    assert results(tmp_path / "c").best_trial == results(tmp_path / "b").best_trial
    assert results(tmp_path / "c").best_value == study.best_value


def test_a_stored_study_of_the_other_direction_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = str(tmp_path / "optuna.journal")
    make_sweeper(tmp_path, FakeLauncher(objective), journal, 1).sweep([])
    sweeper = make_sweeper(tmp_path, FakeLauncher(objective), journal, 2)
    sweeper.directions = ["minimize"]
    with pytest.raises(SystemExit) as exit_info:
        sweeper.sweep([])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: study 'study'") and "hydra.sweeper.direction=maximize" in line


def test_too_many_failures_stop_the_sweep_with_the_jobs_error(tmp_path: Path) -> None:
    journal = tmp_path / "optuna.journal"
    failing = FakeLauncher(objective, fail={1})
    with pytest.raises(RuntimeError, match="job 1 failed"):
        make_sweeper(tmp_path, failing, str(journal), 5).sweep([])
    assert len(failing.jobs) == 2
    states = [t.state for t in journal_study(journal).trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL]


def test_a_stopped_worker_leaves_no_trial_running(tmp_path: Path) -> None:
    journal = tmp_path / "optuna.journal"

    def interrupted(values: dict[str, str]) -> float:
        raise KeyboardInterrupt  # Ctrl-C, or SIGTERM as the training job raises it

    with pytest.raises(KeyboardInterrupt):
        make_sweeper(tmp_path, FakeLauncher(interrupted), str(journal), 5).sweep([])
    assert [t.state for t in journal_study(journal).trials] == [TrialState.FAIL]


@pytest.mark.parametrize("kind", ["journal", "database"])
def test_workers_on_one_study_run_exactly_n_trials_between_them(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three workers (threads here, processes in use) on one stored study: n_trials trials in
    all, each once, each drawn by its own seeded sampler, the same best trial reported by all.
    "database" stands for a database server: no lock file, surplus trials are marked failed."""
    path = tmp_path / ("optuna.journal" if kind == "journal" else "optuna.db")
    storage = str(path) if kind == "journal" else f"sqlite:///{path}"
    if kind == "database":
        RDBStorage(storage)  # the schema, before workers race to create it

        def unlocked(spec: str | None) -> Storage:
            return Storage(RDBStorage(storage), None, storage)

        monkeypatch.setattr(impl, "open_storage", unlocked)
    launchers = [FakeLauncher(objective, delay_s=0.05 * (1 + w)) for w in range(3)]
    sweepers = [make_sweeper(tmp_path / f"w{w}", launchers[w], storage, 9) for w in range(3)]
    threads = [threading.Thread(target=s.sweep, args=([],)) for s in sweepers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    study = optuna.load_study(
        study_name="study",
        storage=storage if kind == "database" else JournalStorage(JournalFileBackend(str(path))),
    )
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 9
    assert all(t.user_attrs.get("surplus") for t in study.trials if t.state != TrialState.COMPLETE)
    ran = [idx for launcher in launchers for idx, _ in launcher.jobs]
    assert sorted(ran) == sorted(t.number for t in complete)  # no trial ran twice
    params = [
        tuple(sorted(values.items())) for launcher in launchers for _, values in launcher.jobs
    ]
    assert len(set(params)) == len(params)
    assert all(launcher.jobs for launcher in launchers)
    best = {
        (r.best_trial, r.best_value) for r in map(results, (tmp_path / f"w{w}" for w in range(3)))
    }
    assert best == {(study.best_trial.number, study.best_value)}


def test_on_a_database_server_a_trial_asked_in_a_race_is_surplus(tmp_path: Path) -> None:
    """Without a lock file, another worker may ask between this worker's count and its ask:
    the trial with n_trials counted trials before it is marked surplus (failed), not run."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="study", storage=url, direction="maximize")
    other = optuna.load_study(study_name="study", storage=url)
    ask = study.ask

    def ask_after_the_other_worker(*args: Any, **kwargs: Any) -> optuna.trial.Trial:
        other.ask()  # the other worker's trial 0, asked after this worker counted none
        return ask(*args, **kwargs)

    study.ask = ask_after_the_other_worker  # type: ignore[method-assign]
    sweeper = make_sweeper(tmp_path, FakeLauncher(objective), url, 1)
    assert sweeper._reserve(study, Storage(study._storage, None, url), 1) == []
    (surplus,) = [t for t in study.trials if t.number == 1]
    assert surplus.state == TrialState.FAIL and surplus.user_attrs["surplus"]


# The real command line: `python train.py -m hparams_search=optuna` on the small corpus.


def store(root: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{root.resolve()}/mlruns/mlflow.db")


def mlflow_runs(root: Path) -> list[Any]:
    client = store(root)
    experiment = client.get_experiment_by_name("ser-synthetic")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def stored_sweep(storage: str, *overrides: str) -> list[str]:
    return [
        "-m",
        "hparams_search=optuna",
        "debug=fast",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=s",
        *overrides,
    ]


@pytest.mark.slow
def test_two_workers_share_one_study_and_the_next_command_resumes_it(
    tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess[str]], train_args
) -> None:
    journal = tmp_path / "optuna.journal"
    workers, logs = [], []
    for name in ("a", "b"):
        args = train_args(
            *stored_sweep(str(journal), "hydra.sweeper.n_trials=2"),
            f"hydra.sweep.dir={tmp_path / name}",
        )
        logs.append(tmp_path / f"{name}.log")
        with open(logs[-1], "w") as log:
            workers.append(
                subprocess.Popen(args, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
            )
    try:
        for worker, log in zip(workers, logs, strict=True):
            assert worker.wait(timeout=600) == 0, log.read_text()[-3000:]
    finally:
        for worker in workers:
            worker.kill()
    study = journal_study(journal, "s")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    # Each worker ran its share, the job folders named by trial number: none twice.
    ran = [{int(p.name) for p in (tmp_path / w).iterdir() if p.is_dir()} for w in ("a", "b")]
    assert ran[0] | ran[1] == {0, 1} and not ran[0] & ran[1]
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 2
    # Both report the study's best trial: the one that finished last waited for the other.
    best = {(r.best_trial, r.best_value) for r in map(results, (tmp_path / "a", tmp_path / "b"))}
    assert best == {(study.best_trial.number, study.best_value)}

    # The next command on the stored study runs the missing trial only, as job 2.
    third = cli(
        train_args(*stored_sweep(str(journal), "hydra.sweeper.n_trials=3",
                                 f"hydra.sweep.dir={tmp_path}/c")),
        cwd=tmp_path,
    )  # fmt: skip
    assert third.returncode == 0, third.stderr[-3000:]
    study = journal_study(journal, "s")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert [p.name for p in (tmp_path / "c").iterdir() if p.is_dir()] == ["2"]
    found = mlflow_runs(tmp_path)
    assert sorted(int(r.data.tags["sweep_job"]) for r in found) == [0, 1, 2]
    assert {r.data.tags["optuna_study"] for r in found} == {"s"}
    best = results(tmp_path / "c")
    assert (best.best_trial, best.best_value) == (study.best_trial.number, study.best_value)
    assert best.best_value == pytest.approx(max(r.data.metrics["val/uar_best"] for r in found))


def test_a_bad_storage_on_the_command_line_is_one_error_line(
    tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess[str]], train_args
) -> None:
    result = cli(train_args(*stored_sweep("postgres://me@localhost/optuna")), cwd=tmp_path)
    assert result.returncode == 2
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert line.startswith("error: hydra.sweeper.storage=postgres://") and "postgresql://" in line
    assert not (tmp_path / "mlruns").exists()  # nothing ran
