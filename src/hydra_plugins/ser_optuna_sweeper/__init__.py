"""ser's Hydra sweeper for Optuna (`hydra/sweeper: ser_optuna`): Optuna's ask/tell API over
Hydra's launcher, with studies that persist in a storage and are shared by several workers.

It replaces hydra-optuna-sweeper, which holds Optuna at 2.10 (whose storages fail against
SQLAlchemy 2). Hydra finds it by scanning the `hydra_plugins` namespace package."""
