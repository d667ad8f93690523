"""The sweep itself: Hydra's sweep syntax as Optuna distributions, the study's storage, and
trials asked from Optuna, run through Hydra's launcher and told back.

`n_trials` is the size of the study, not of one command: every worker on a shared study (and a
later command that resumes it) asks for trials only while the study has fewer than n_trials
trials done or under way. Failed trials do not count, so resuming a study replaces them."""

from __future__ import annotations

import contextlib
import datetime
import logging
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    Glob,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.errors import OverrideParseException
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.study import StudyDirection
from optuna.trial import Trial, TrialState

from ser.atomic import atomic_write
from ser.errors import SerError, exit_on_user_error

log = logging.getLogger(__name__)

# Trials that count towards n_trials: done, or under way in some worker.
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
# How often a worker that has run its share looks whether the others' trials have finished.
POLL_S = 2.0
RESULTS_FILE = "optimization_results.yaml"
STORAGE_FORMS = (
    "sqlite:///PATH.db, postgresql://USER:PASSWORD@HOST/DB, "
    "or a journal file path such as optuna.journal"
)


@dataclass
class SearchSpace:
    """Hydra sweep overrides as Optuna distributions, and the overrides fixed for every trial."""

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    # A categorical parameter's override text for each choice Optuna stores (a list as text).
    choice_texts: dict[str, dict[Any, str]] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, overrides: Sequence[str]) -> SearchSpace:
        """Later overrides of a key replace earlier ones (the command line the config's)."""
        try:
            parsed = OverridesParser.create().parse_overrides(list(overrides))
        except OverrideParseException as err:
            raise SerError(f"hydra.sweeper.params: {str(err).splitlines()[0]}") from None
        space = cls()
        for override in parsed:
            key = override.get_key_element()
            space.distributions.pop(key, None)
            space.choice_texts.pop(key, None)
            space.fixed.pop(key, None)
            if override.is_sweep_override():
                space.distributions[key], texts = to_distribution(override)
                if texts:
                    space.choice_texts[key] = texts
            else:
                value = override.get_value_element_as_str()
                space.fixed[key] = override.input_line or f"{key}={value}"
        return space

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """A trial's overrides: the fixed ones, then its sampled parameters."""
        sampled = [
            f"{key}={self.choice_texts[key][value] if key in self.choice_texts else value}"
            for key, value in params.items()
        ]
        return [*self.fixed.values(), *sampled]


def to_distribution(override: Override) -> tuple[BaseDistribution, dict[Any, str]]:
    """The Optuna distribution of a sweep override, with the override text of each choice."""
    value = override.value()
    if isinstance(value, Glob):
        raise SerError(
            f"hydra.sweeper.params: {override.input_line}: the Optuna sweeper takes choice(...), "
            "range(...) and interval(...) sweeps, not glob(...)"
        )
    if override.is_choice_sweep() or (isinstance(value, RangeSweep) and value.shuffle):
        elements = list(override.sweep_iterator(transformer=Transformer.identity))
        # Optuna stores str, int, float, bool or None: a list choice is stored as its text.
        texts: dict[Any, str] = {Transformer.encode(x): Transformer.str(x) for x in elements}
        return CategoricalDistribution(list(texts)), texts
    if isinstance(value, RangeSweep):
        values = [v for v in override.sweep_iterator() if isinstance(v, int | float)]
        if not values or value.step is None:
            raise SerError(f"hydra.sweeper.params: {override.input_line} is an empty range")
        low, high, step = min(values), max(values), abs(value.step)
        if all(isinstance(v, int) for v in values):
            return IntDistribution(int(low), int(high), step=int(step)), {}
        return FloatDistribution(float(low), float(high), step=float(step)), {}
    if isinstance(value, IntervalSweep) and value.start is not None and value.end is not None:
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log_scale), {}
        return FloatDistribution(float(value.start), float(value.end), log=log_scale), {}
    raise SerError(
        f"hydra.sweeper.params: {override.input_line}: the Optuna sweeper takes choice(...), "
        "range(...) and interval(...) sweeps"
    )


@dataclass
class Storage:
    """Where the study lives; `lock` serialises the trial count between workers on a file."""

    optuna: BaseStorage | None
    lock: JournalFileOpenLock | None
    shown: str  # for logs and results: a database password hidden


def open_storage(spec: str | None) -> Storage:
    """Open `hydra.sweeper.storage`: null (in memory), a database URL or a journal file."""
    if not spec:
        return Storage(None, None, "memory")
    if "://" in spec:
        return _open_database(spec)
    setting = f"hydra.sweeper.storage={spec}"
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", spec):
        raise SerError(f"{setting} is neither a database URL nor a file; use {STORAGE_FORMS}")
    path = Path(spec).expanduser()
    if path.is_dir():
        raise SerError(f"{setting} is a folder; give a file in it, e.g. {path / 'optuna.journal'}")
    if not path.parent.is_dir():
        raise SerError(f"{setting}: folder {path.parent} does not exist; create it first")
    try:
        storage = JournalStorage(JournalFileBackend(str(path)))
    except (ValueError, UnicodeDecodeError):  # the log is replayed on opening
        raise SerError(
            f"{setting} is not an Optuna journal file (an SQLite file is given as sqlite:///PATH)"
        ) from None
    # O_EXCL lock files work on NFS v3 and later, as Optuna's own journal locks.
    return Storage(storage, JournalFileOpenLock(f"{path}.ask"), spec)


def _open_database(url: str) -> Storage:
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise SerError(
            f"hydra.sweeper.storage={url} is not a database URL; use {STORAGE_FORMS}"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    setting = f"hydra.sweeper.storage={shown}"
    lock = None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        database = Path(str(parsed.database))
        if not database.parent.is_dir():
            raise SerError(f"{setting}: folder {database.parent} does not exist; create it first")
        lock = JournalFileOpenLock(f"{database}.ask")
    try:
        storage = RDBStorage(url)
    except sqlalchemy.exc.NoSuchModuleError:
        raise SerError(
            f"{setting}: SQLAlchemy knows no database {parsed.drivername!r}; use {STORAGE_FORMS}"
        ) from None
    except ImportError as err:  # Optuna's, raised from the driver's ModuleNotFoundError
        driver = getattr(err.__cause__, "name", None) or "its driver"
        raise SerError(
            f"{setting}: the database driver {driver} is not installed; pip install it "
            "(PostgreSQL: psycopg[binary]; MySQL: PyMySQL, with mysql+pymysql://) "
            "or use a journal file"
        ) from None
    except sqlalchemy.exc.SQLAlchemyError as err:
        reason = getattr(err, "orig", None) or err
        raise SerError(f"{setting}: cannot open the database ({reason})") from None
    return Storage(storage, lock, shown)


@contextlib.contextmanager
def holding(lock: JournalFileOpenLock | None) -> Iterator[None]:
    if lock is None:
        yield
        return
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def consecutive(trials: Sequence[Trial]) -> list[list[Trial]]:
    """Runs of consecutive trial numbers: each is one launch, whose job numbers are them."""
    groups: list[list[Trial]] = []
    for trial in trials:
        if groups and groups[-1][-1].number + 1 == trial.number:
            groups[-1].append(trial)
        else:
            groups.append([trial])
    return groups


def suggest(trial: Trial, space: SearchSpace) -> None:
    for name, dist in space.distributions.items():
        if isinstance(dist, CategoricalDistribution):
            trial.suggest_categorical(name, dist.choices)
        elif isinstance(dist, IntDistribution):
            trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
        elif isinstance(dist, FloatDistribution):
            trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


class OptunaSweeperImpl:
    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        params: Any,
    ) -> None:
        self.sampler_cfg = sampler
        directions = direction if isinstance(direction, list | ListConfig) else [direction]
        self.directions = [str(d) for d in directions]
        self.storage = storage
        self.study_name = study_name
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.max_failure_rate = max_failure_rate
        self.params = params or {}
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def _check_settings(self) -> None:
        if not set(self.directions) <= {"minimize", "maximize"}:
            raise SerError(
                f"hydra.sweeper.direction={self.directions}: use minimize or maximize "
                "(a list of them for several objectives)"
            )
        if self.n_trials < 0 or self.n_jobs < 1 or not 0 <= self.max_failure_rate <= 1:
            raise SerError(
                "hydra.sweeper: n_trials must be at least 0, n_jobs at least 1 and "
                "max_failure_rate between 0 and 1"
            )

    def sampler(self, seed_offset: int) -> optuna.samplers.BaseSampler:
        """The configured sampler; a seeded one's seed plus `seed_offset` (a worker's first
        trial number), so that workers on one study draw different random trials and a
        single worker draws what the configured seed gives."""
        if self.sampler_cfg is None:
            return optuna.samplers.TPESampler()
        cfg = self.sampler_cfg
        cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
        seed = cfg.get("seed")
        sampler = instantiate(cfg, **({"seed": seed + seed_offset} if seed is not None else {}))
        if not isinstance(sampler, optuna.samplers.BaseSampler):
            raise SerError(f"hydra.sweeper.sampler: {cfg.get('_target_')} is not an Optuna sampler")
        return sampler

    @exit_on_user_error
    def sweep(self, arguments: list[str]) -> None:
        assert self.config is not None and self.launcher is not None
        self._check_settings()
        space = SearchSpace.parse([*(f"{k}={v}" for k, v in self.params.items()), *arguments])
        storage = open_storage(self.storage)
        if storage.optuna is not None and not self.study_name:
            raise SerError(
                "hydra.sweeper.study_name is not set: a stored study is found by its name (to "
                "resume it, share it between workers, open it in optuna-dashboard); add "
                "hydra.sweeper.study_name=NAME"
            )
        directions = [StudyDirection[d.upper()] for d in self.directions]
        study = optuna.create_study(
            storage=storage.optuna,
            study_name=self.study_name,
            sampler=self.sampler(0),
            directions=directions,
            load_if_exists=True,
        )
        if study.directions != directions:  # Optuna loads a stored study as it was created
            stored = " ".join(d.name.lower() for d in study.directions)
            raise SerError(
                f"study {study.study_name!r} in {storage.shown} was created to {stored}, not "
                f"{' '.join(self.directions)}; set hydra.sweeper.direction={stored} or choose "
                "another hydra.sweeper.study_name"
            )
        taken = len(study.get_trials(deepcopy=False, states=COUNTED))
        log.info(
            "Study %r in %s: %d of %d trials done or running, %s",
            study.study_name,
            storage.shown,
            taken,
            self.n_trials,
            " ".join(self.directions),
        )
        launched = 0
        while launched < self.n_trials:  # a worker never runs more than n_trials itself
            trials = self._reserve(study, storage, min(self.n_jobs, self.n_trials - launched))
            if not trials:
                break
            try:
                if launched == 0:
                    study.sampler = self.sampler(trials[0].number)
                for trial in trials:
                    suggest(trial, space)
                returns = self._launch(trials, space)
            except BaseException:
                # A stopped worker's trials must not stay RUNNING: they would count forever.
                for trial in trials:
                    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                raise
            launched += len(trials)
            failures = self._tell(study, trials, returns)
            if failures and len(failures) / len(trials) > self.max_failure_rate:
                log.error(
                    "%d of %d trials failed (hydra.sweeper.max_failure_rate=%s)",
                    len(failures),
                    len(trials),
                    self.max_failure_rate,
                )
                raise failures[0]
        self._wait_for_other_workers(study)
        self._report(study, storage)

    def _reserve(self, study: optuna.Study, storage: Storage, n: int) -> list[Trial]:
        """Up to n new trials, as long as the study has fewer than n_trials."""
        with holding(storage.lock):  # count and ask as one step among workers on a file
            taken = len(study.get_trials(deepcopy=False, states=COUNTED))
            trials = [study.ask() for _ in range(min(n, self.n_trials - taken))]
        if storage.lock is not None:
            return trials
        # On a database server, workers counting at the same moment may ask too many; trial
        # numbers are unique in a study, and a trial with n_trials counted trials before it
        # is surplus: it is marked failed (user attribute `surplus`) and not run.
        counted = [t.number for t in study.get_trials(deepcopy=False, states=COUNTED)]
        kept = []
        for trial in trials:
            if sum(number < trial.number for number in counted) >= self.n_trials:
                trial.set_user_attr("surplus", True)
                study.tell(trial, state=TrialState.FAIL)
            else:
                kept.append(trial)
        return kept

    def _launch(self, trials: list[Trial], space: SearchSpace) -> list[JobReturn]:
        """Run the trials through Hydra's launcher; a trial's job number is its number, so
        workers that share a sweep folder write to distinct job folders."""
        assert self.launcher is not None
        returns: list[JobReturn] = []
        for group in consecutive(trials):
            overrides = [space.overrides(trial.params) for trial in group]
            returns.extend(self.launcher.launch(overrides, initial_job_idx=group[0].number))
        return returns

    def _values(self, value: Any) -> list[float]:
        if value is None:
            raise SerError("the run returned no value to optimise; set optimized_metric")
        if len(self.directions) == 1:
            return [float(value)]
        values = [float(v) for v in value]
        if len(values) != len(self.directions):
            raise ValueError(f"{len(values)} values returned for {len(self.directions)} objectives")
        return values

    def _tell(
        self, study: optuna.Study, trials: list[Trial], returns: list[JobReturn]
    ) -> list[Exception]:
        failures = []
        for trial, ret in zip(trials, returns, strict=True):
            try:
                values = self._values(ret.return_value)  # raises the job's exception
            except Exception as err:
                study.tell(trial, state=TrialState.FAIL)
                log.warning("Trial %d failed: %s", trial.number, err)
                failures.append(err)
            else:
                study.tell(trial, values)
                log.info("Trial %d: value %s", trial.number, " ".join(map(str, values)))
        return failures

    def _wait_for_other_workers(self, study: optuna.Study) -> None:
        """Wait until the trials that other workers run have finished, so that every worker
        reports the study's final best trial. A trial running for longer than three times the
        longest finished one (and a minute) is not waited for: its worker was likely killed."""
        announced = False
        while True:
            trials = study.get_trials(deepcopy=False)
            running = [t for t in trials if t.state == TrialState.RUNNING]
            if not running:
                return
            done = [t.duration for t in trials if t.state in COUNTED and t.duration is not None]
            patience = max(3 * max(d.total_seconds() for d in done), 60.0) if done else 60.0
            now = datetime.datetime.now()
            if all(
                t.datetime_start and (now - t.datetime_start).total_seconds() > patience
                for t in running
            ):
                log.warning(
                    "Not waiting for trials %s: running for over %.0f s (a stopped worker's?)",
                    [t.number for t in running],
                    patience,
                )
                return
            if not announced:
                log.info(
                    "Waiting for trials %s, running in other workers",
                    [t.number for t in running],
                )
                announced = True
            time.sleep(POLL_S)

    def _report(self, study: optuna.Study, storage: Storage) -> None:
        """Log the study's best trial and write it to the sweep folder's results file."""
        assert self.config is not None
        trials = study.get_trials(deepcopy=False)
        states = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
        results: dict[str, Any] = {
            "name": "optuna",
            "study_name": study.study_name,
            "storage": storage.shown,
            "directions": self.directions,
            "trials": {state: n for state, n in states.items() if n},
        }
        complete = states["complete"] > 0
        if complete and len(self.directions) == 1:
            best = study.best_trial
            results |= {
                "best_trial": best.number,
                "best_params": best.params,
                "best_value": best.value,
            }
            log.info("Best trial %d: value %s, %s", best.number, best.value, best.params)
        elif complete:
            results["best_trials"] = [
                {"number": t.number, "params": t.params, "values": t.values}
                for t in study.best_trials
            ]
            log.info("Best trials (Pareto front): %s", [t.number for t in study.best_trials])
        path = Path(self.config.hydra.sweep.dir) / RESULTS_FILE
        with atomic_write(path) as tmp:
            OmegaConf.save(OmegaConf.create(results), tmp)
        if not complete:
            raise SerError(f"no trial of study {study.study_name!r} completed; see {path.parent}")
