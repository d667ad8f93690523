"""The `hydra/sweeper: ser_optuna` config, registered in Hydra's config store on plugin scan."""

# No `from __future__ import annotations`: Hydra's plugin scan runs this module before it is in
# sys.modules, where dataclasses would look up string annotations.

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class OptunaSweeperConf:
    """Settings of `hydra.sweeper` (see docs/scaling.md for storages and shared studies)."""

    _target_: str = "hydra_plugins.ser_optuna_sweeper.sweeper.OptunaSweeper"
    # The sweeper instantiates the sampler itself (seeded per worker), so Hydra must not.
    _recursive_: bool = False
    # An Optuna sampler config, e.g. {_target_: optuna.samplers.TPESampler, seed: 1234};
    # null: Optuna's default (TPE, unseeded).
    sampler: Any = None
    # "minimize" or "maximize", or a list of them for several objectives.
    direction: Any = "minimize"
    # null (in memory), a database URL (sqlite:///optuna.db, postgresql://...) or the path of
    # a journal file (optuna.journal), the form for a shared file system.
    storage: str | None = None
    # The study's name in the storage: workers and later runs with the same name share it.
    study_name: str | None = None
    # Trials of the study in all (counting other workers' and earlier runs', failures aside).
    n_trials: int = 20
    # Trials launched at once (in parallel with a parallel launcher such as joblib or submitit).
    n_jobs: int = 1
    # The share of a batch's trials that may fail before the sweep stops with the error.
    max_failure_rate: float = 0.0
    # The search space, in Hydra's sweep syntax: choice(...), range(...), interval(...),
    # tag(log, interval(...)), int(interval(...)); plain values are fixed for every trial.
    params: dict[str, Any] | None = None


ConfigStore.instance().store(
    group="hydra/sweeper", name="ser_optuna", node=OptunaSweeperConf, provider="ser"
)
