"""Shared helpers for corpus loaders: find the root, scan it, warn about strays, refuse empties."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from ser.errors import SerError

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3")


def require_root(root: str | Path, corpus: str, env: str, holding: str, source: str) -> Path:
    """`root` as a Path, or a one-line SerError naming the corpus, the path and how to get it."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise SerError(
            f"{corpus} not found at {path}; set dataset.loader.root (or ${env}) to the folder "
            f"holding {holding} ({source})"
        )
    return path


def audio_dir(root: Path, name: str) -> Path:
    """`root/name` when the corpus's own top-level folder is there, else `root` itself (so the
    root may point at either the corpus folder or its audio sub-folder)."""
    sub = root / name
    return sub if sub.is_dir() else root


def warn_skipped(corpus: str, root: Path, skipped: list[Path], what: str) -> None:
    """One warning for all skipped files (the first few named), not one per file."""
    if not skipped:
        return
    shown = ", ".join(_relative(p, root) for p in skipped[:5])
    more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
    log.warning("%s: skipped %d files that are %s: %s%s", corpus, len(skipped), what, shown, more)


def scan(
    root: Path,
    parse: Callable[[Path], dict[str, Any] | None],
    corpus: str,
    expected: str,
    suffixes: Iterable[str] = AUDIO_SUFFIXES,
) -> pd.DataFrame:
    """One row per file under `root` that `parse` accepts (path first); others are skipped with
    one warning; no accepted file at all is a SerError describing the `expected` names."""
    suffixes = tuple(s.lower() for s in suffixes)
    rows, skipped = [], []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        fields = parse(path) if path.suffix.lower() in suffixes else None
        if fields is None:
            skipped.append(path)
            continue
        rows.append({"path": str(path.resolve()), **fields})
    warn_skipped(corpus, root, skipped, f"not {corpus} audio")
    return frame(rows, corpus, expected, root)


def frame(rows: list[dict[str, Any]], corpus: str, expected: str, root: Path) -> pd.DataFrame:
    """The rows as a DataFrame, or a SerError when there are none."""
    if not rows:
        raise SerError(f"no {corpus} files ({expected}) under {root}")
    return pd.DataFrame(rows)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
