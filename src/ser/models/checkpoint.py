"""Convert a checkpoint that holds pickled objects into one that loads with weights_only.

    python -m ser.models.checkpoint convert OLD.ckpt NEW.ckpt

Loading OLD unpickles it, which can run code: do it only for a file you trust (one you
trained with an older ser). NEW keeps what inference needs (weights, labels, the run config,
the training speakers) as tensors and plain data; it does not resume training.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from ser.atomic import atomic_write
from ser.errors import SerError, exit_on_user_error
from ser.models.module import CONFIG_KEY, TRAIN_SPEAKERS_KEY, load_checkpoint


def plain(value: Any) -> Any:
    """Tensors, numbers, strings and (nested) dicts and lists of them; OmegaConf containers
    and tuples become dicts and lists, anything else is refused."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor):
        return value
    raise SerError(f"cannot keep a {type(value).__name__} in a safe checkpoint; retrain with ser")


def plain_settings(settings: dict) -> dict:
    """The settings that are plain data; the rest (an optimizer factory, a module) is what
    training needed, not inference, and is left out."""
    kept = {}
    for key, value in settings.items():
        try:
            kept[str(key)] = plain(value)
        except SerError:
            continue
    return kept


def convert(source: str | Path, target: str | Path) -> Path:
    """Write `target`, the safe form of the trusted checkpoint `source`, and check that it
    loads with weights_only."""
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise SerError(f"checkpoint {source} not found; check the path")
    old = torch.load(source, map_location="cpu", weights_only=False)  # trusted by the caller
    if not isinstance(old, dict) or old.get(CONFIG_KEY) is None:
        raise SerError(f"{source} is not a ser checkpoint (no stored config); retrain with ser")
    new = {
        "state_dict": {k: v.detach().clone() for k, v in old["state_dict"].items()},
        "hyper_parameters": plain_settings(old.get("hyper_parameters") or {}),
        CONFIG_KEY: plain(old[CONFIG_KEY]),
        TRAIN_SPEAKERS_KEY: plain(old.get(TRAIN_SPEAKERS_KEY)),
        "pytorch-lightning_version": str(old.get("pytorch-lightning_version", "")),
    }
    with atomic_write(target) as tmp:
        torch.save(new, tmp)
    load_checkpoint(target)  # the converted file must load safely
    return target


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ser.models.checkpoint", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    convert_parser = commands.add_parser("convert", help="re-save a trusted checkpoint safely")
    convert_parser.add_argument("source", help="the old checkpoint (unpickled: trust it)")
    convert_parser.add_argument("target", help="where to write the safe checkpoint")
    return parser


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    print(convert(args.source, args.target))


if __name__ == "__main__":
    main()
