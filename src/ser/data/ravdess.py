"""RAVDESS speech (Livingstone & Russo, 2018): Actor_NN/MM-VV-EE-II-SS-RR-AA.{wav,flac}."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ser.data.corpus import require_root, scan

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
    root = require_root(
        root,
        "RAVDESS",
        "RAVDESS_ROOT",
        "Actor_01 ... Actor_24",
        "speech audio from zenodo.org/records/1188976, or scripts/download_data.py ravdess",
    )
    return scan(root, parse_name, "RAVDESS speech", "03-01-EE-II-SS-RR-AA.wav|flac")
