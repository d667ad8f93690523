"""Where things are: the configs shipped inside the package, and the project folder that holds
a user's data, runs and outputs.

Both work the same from a clone and from an installed wheel: the configs travel as package data
(the repository's top-level `conf` is a link to them), and the project folder is `$SER_ROOT`,
else the working directory, never the place the code happens to be installed in. This module
imports nothing heavy, so that every entry point can ask it without loading Lightning or MLflow.
"""

from __future__ import annotations

import os
from pathlib import Path

# Hydra's `config_path` for every entry point (train, prepare, features, evaluate, rl.train).
CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")


def project_root() -> Path:
    """The folder a run reads its data from and writes its store and outputs to: `$SER_ROOT`,
    else the working directory (the same rule as conf/paths' `root_dir`)."""
    return Path(os.environ.get("SER_ROOT") or ".").resolve()


def default_mlruns_dir() -> Path:
    """The local MLflow store's folder when nothing else is said: `<project_root>/mlruns`.
    Training (conf/paths: `${paths.root_dir}/mlruns`) and every tool (ser-predict, ser-export,
    ser-serve, ser-stream) resolve it by this one rule, so a project of the user's own keeps its
    runs and finds them again."""
    return project_root() / "mlruns"
