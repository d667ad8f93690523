"""Shards of a corpus for `python -m ser.features features.shard=I/N`: N processes (a sweep
through Hydra's submitit launcher, a SLURM job array) fill one feature cache together."""

from __future__ import annotations

import re
from collections.abc import Iterable

from ser.errors import SerError

_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def parse_shard(value: object) -> tuple[int, int] | None:
    """`features.shard` as (index, count): "I/N" is shard I, counted from 0, of N; None (null)
    is every file. Anything else is a SerError naming the values the key takes."""
    if value is None:
        return None
    match = _SHARD.fullmatch(value) if isinstance(value, str) else None
    if match is not None:
        index, count = int(match[1]), int(match[2])
        if index < count:
            return index, count
    raise SerError(
        f"features.shard={value!r} is not valid: it takes I/N, shard I (from 0) of N with "
        "0 <= I < N, e.g. features.shard=0/2 and features.shard=1/2 for two workers, "
        "or null for every file"
    )


def shard_files(paths: Iterable[object], index: int, count: int) -> list[str]:
    """The files of shard `index` of `count`: the distinct paths sorted, then every `count`-th
    from position `index`. Every file is in exactly one shard, whatever order the manifest
    lists them in and whichever process asks; neighbours in the sorted order (a speaker's
    files) go to different shards, so the shards' work is even."""
    return sorted({str(path) for path in paths})[index::count]
