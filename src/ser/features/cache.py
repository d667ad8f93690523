"""A content-addressed feature cache: one .npy per (file content, preprocessing, features)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ser.atomic import atomic_write


def file_fingerprint(path: str | Path) -> str:
    """SHA-256 of the file's bytes: renaming or touching a file keeps its cache entries."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def config_digest(*parts: object) -> str:
    """A stable hash of JSON-serialisable configuration parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


class FeatureCache:
    """Stores arrays under `root/<key[:2]>/<key>.npy`; writes are atomic (temp file + rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path_for(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        path = self.path_for(key)
        if not path.exists():
            return None
        try:
            return np.load(path)
        except (ValueError, OSError, EOFError):
            # A damaged entry (e.g. disk full in an older version) is recomputed, not trusted.
            path.unlink(missing_ok=True)
            return None

    def put(self, key: str, array: np.ndarray) -> None:
        with atomic_write(self.path_for(key)) as tmp, open(tmp, "wb") as handle:
            np.save(handle, array)
