"""A user's corpus listed in a CSV table with (at least) a path, a label and a speaker column.

Relative paths resolve against `root` when given, else against the CSV's own folder; labels are
stripped and lowercased like those of the built-in corpora. Other columns are kept.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pandas as pd

from ser.data.corpus import warn_skipped
from ser.errors import SerError

log = logging.getLogger(__name__)


def load(
    path: str | Path,
    root: str | Path | None = None,
    path_column: str = "path",
    label_column: str = "label",
    speaker_column: str = "speaker",
) -> pd.DataFrame:
    """One row per listed file that exists: path (absolute), speaker, label, then other columns."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SerError(
            f"csv dataset table not found at {path}; set dataset.loader.path to a CSV with "
            f"{path_column}, {label_column} and {speaker_column} columns"
        )
    try:
        delimiter = sniff_delimiter(path)
        # dtype=str: speaker ids like "01" stay as written
        table = pd.read_csv(path, sep=delimiter, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise SerError(f"csv dataset {path} cannot be read: {err}") from None
    columns = {"path": path_column, "speaker": speaker_column, "label": label_column}
    absent = [f"{name} ({key}_column)" for key, name in columns.items() if name not in table]
    if absent:
        raise SerError(
            f"csv dataset {path} lacks columns {', '.join(absent)}; read with the delimiter "
            f"{delimiter!r}, it has {list(table.columns)} (set dataset.loader.<key>_column to "
            "rename)"
        )
    base = Path(root).expanduser() if root is not None else path.parent
    out = pd.DataFrame(
        {
            "path": table[path_column].str.strip(),
            "speaker": table[speaker_column].str.strip(),
            "label": table[label_column].str.strip().str.lower(),
        }
    )
    extra = [c for c in table.columns if c not in columns.values() and c not in out]
    out = pd.concat([out, table[extra]], axis=1)
    blank = (out[["path", "speaker", "label"]] == "").any(axis=1)
    if blank.any():
        log.warning(
            "csv dataset %s: skipped %d rows with an empty path, speaker or label (rows %s)",
            path,
            int(blank.sum()),
            ", ".join(str(i + 2) for i in list(out.index[blank])[:5]),  # +2: header, 1-based
        )
        out = out[~blank]
    resolved = [(base / p).resolve() for p in out["path"]]  # absolute paths stay as they are
    exists = [p.is_file() for p in resolved]
    missing = [p for p, ok in zip(resolved, exists, strict=True) if not ok]
    warn_skipped(f"csv dataset {path}", base, missing, "missing")
    out = out.assign(path=[str(p) for p in resolved])[exists].reset_index(drop=True)
    if out.empty:
        raise SerError(
            f"csv dataset {path} lists no existing audio files (paths relative to {base})"
        )
    return out


def sniff_delimiter(path: Path, candidates: str = ",;\t|") -> str:
    """The table's delimiter, found by the standard library's sniffer on its first lines
    (spreadsheets in many locales save "CSV" with semicolons); a comma when it cannot tell."""
    with open(path, newline="", encoding="utf-8") as handle:
        sample = handle.read(65536)
    try:
        return csv.Sniffer().sniff(sample, delimiters=candidates).delimiter
    except csv.Error:
        return ","
