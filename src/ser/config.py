"""Checks of a composed config's numbers before any work is done: a bad value is one error
line naming the key, the value given and what the key takes, not a traceback after minutes of
feature extraction. The `_target_` configs stay plain YAML; this is the schema for the keys
whose values a user types."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from ser.errors import SerError

_ABSENT = object()


def to_dict(node: Any) -> dict[str, Any]:
    """`OmegaConf.to_container(node, resolve=True)` of a mapping node (a DictConfig), typed as
    the plain dict it returns for one."""
    return cast(dict[str, Any], OmegaConf.to_container(node, resolve=True))


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


# (key, what a valid value passes, what the key takes): keys absent from a config are skipped.
TRAINING_CHECKS: list[tuple[str, Callable[[Any], bool], str]] = [
    ("data.batch_size", lambda v: _whole(v) and v >= 1, "a whole number >= 1, e.g. 32"),
    ("data.num_workers", lambda v: _whole(v) and v >= 0, "a whole number >= 0"),
    (
        "data.max_per_speaker_label",
        _optional(lambda v: _whole(v) and v >= 1),
        "null or a whole number >= 1",
    ),
    ("data.window_s", _optional(lambda v: _number(v) and v > 0), "null or seconds > 0"),
    ("data.window_hop_s", _optional(lambda v: _number(v) and v > 0), "null or seconds > 0"),
    ("data.random_crop_s", _optional(lambda v: _number(v) and v > 0), "null or seconds > 0"),
    (
        "trainer.max_epochs",
        lambda v: _whole(v) and v >= 1,
        "a whole number >= 1 (0 would test an untrained model)",
    ),
    ("model.optimizer.lr", lambda v: _number(v) and v > 0, "a number > 0, e.g. 0.001"),
    ("model.optimizer.weight_decay", lambda v: _number(v) and v >= 0, "a number >= 0"),
    ("model.net.dropout", lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    (
        "features.n_jobs",
        lambda v: v is None or (_whole(v) and v != 0),
        "-1 (one process per core), 1 (in-process) or another whole number but 0",
    ),
]


# Required keys whose absence a later step explains better: an unset dataset.labels gets the
# labels the corpus has (ser.data.manifest), which only reading the corpus can tell.
ANSWERED_LATER = ("dataset.labels",)


def check_required(cfg: DictConfig) -> None:
    """Raise SerError for the first key that has no default (`???` in its yaml) and was not
    set, naming the key and the config file that says what it takes."""
    plain = OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)
    missing = next((k for k in _missing_keys(plain, "") if k not in ANSWERED_LATER), None)
    if missing is None:
        return
    group = missing.split(".")[0]
    option = OmegaConf.select(cfg, f"{group}.name", default=None, throw_on_missing=False)
    where = f" (see conf/{group}/{option}.yaml)" if isinstance(option, str) else ""
    raise SerError(f"{missing} has no default; add {missing}=<value> to the command{where}")


def _missing_keys(node: Any, prefix: str) -> Iterator[str]:
    """Dotted keys whose value is OmegaConf's `???`, depth first, in config order."""
    items = node.items() if isinstance(node, dict) else enumerate(node or [])
    for key, value in items:
        name = f"{prefix}.{key}" if prefix else str(key)
        if value == "???":
            yield name
        elif isinstance(value, dict | list):
            yield from _missing_keys(value, name)


def check_training_config(cfg: DictConfig) -> None:
    """Raise SerError for a required key left unset, then for the first value that a training
    run could not use."""
    check_required(cfg)
    for key, valid, takes in TRAINING_CHECKS:
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT and not valid(value):
            raise SerError(f"{key}={value!r} is not valid: it takes {takes}")
