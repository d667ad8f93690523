"""RAVDESS speech (Livingstone & Russo, 2018): Actor_NN/MM-VV-EE-II-SS-RR-AA.{wav,flac}."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from ser.errors import SerError

log = logging.getLogger(__name__)

EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
AUDIO_SUFFIXES = (".wav", ".flac")


def parse_name(path: Path) -> dict[str, str] | None:
    """Fields of a RAVDESS speech file name, or None if the name is not one."""
    parts = path.stem.split("-")
    if len(parts) != 7 or not all(p.isdigit() and len(p) == 2 for p in parts):
        return None
    modality, channel, emotion, intensity, statement, repetition, actor = parts
    # 03 = audio only, 01 = speech (song files have channel 02).
    if modality != "03" or channel != "01" or emotion not in EMOTIONS:
        return None
    return {
        "speaker": actor,
        "label": EMOTIONS[emotion],
        "gender": "male" if int(actor) % 2 else "female",
        "intensity": "strong" if intensity == "02" else "normal",
        "statement": statement,
        "repetition": repetition,
    }


def load(root: str | Path) -> pd.DataFrame:
    """One row per speech file: path, speaker ('01'..'24'), label, gender, intensity, ..."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise SerError(
            f"RAVDESS not found at {root}; set dataset.loader.root (or $RAVDESS_ROOT) to the "
            "folder holding Actor_01 ... Actor_24 (speech audio from zenodo.org/records/1188976)"
        )
    rows, unexpected = [], []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        fields = parse_name(path) if path.suffix.lower() in AUDIO_SUFFIXES else None
        if fields is None:
            unexpected.append(path)
            continue
        rows.append({"path": str(path.resolve()), **fields})
    if unexpected:
        shown = ", ".join(str(p.relative_to(root)) for p in unexpected[:5])
        log.warning(
            "RAVDESS: skipped %d files that are not speech audio: %s", len(unexpected), shown
        )
    if not rows:
        raise SerError(f"no RAVDESS speech files (03-01-EE-II-SS-RR-AA.wav|flac) under {root}")
    return pd.DataFrame(rows)
