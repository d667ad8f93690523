"""SAVEE, Surrey Audio-Visual Expressed Emotion (Haq & Jackson, 2009, AVSP; licence required):
AudioData/<speaker>/<emotion><NN>.wav, e.g. AudioData/DC/sa01.wav.

Four male speakers (DC, JE, JK, KL) say 15 TIMIT sentences per emotion (30 neutral); the emotion
prefix is a, d, f, h, n, sa or su. The flattened copy found on mirrors (DC_a01.wav) is read too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ser.data.corpus import audio_dir, require_root, scan

# 'sa'/'su' are listed before 'a' so the alternation never reads "sa01" as sad -> "a" + junk.
EMOTIONS = {
    "sa": "sad",
    "su": "surprised",
    "a": "angry",
    "d": "disgust",
    "f": "fearful",
    "h": "happy",
    "n": "neutral",
}
SPEAKERS = ("DC", "JE", "JK", "KL")
NAME = re.compile(r"^(?:(DC|JE|JK|KL)_)?(sa|su|a|d|f|h|n)(\d{2})$")


def parse_name(path: Path) -> dict[str, str] | None:
    """Fields of a SAVEE file (speaker from its folder or a DC_ prefix), or None."""
    match = NAME.match(path.stem)
    if match is None:
        return None
    prefix, emotion, number = match.groups()
    speaker = prefix or path.parent.name
    if speaker not in SPEAKERS:
        return None
    return {
        "speaker": speaker,
        "label": EMOTIONS[emotion],
        "gender": "male",
        "sentence": f"{emotion}{number}",
    }


def load(root: str | Path) -> pd.DataFrame:
    """One row per file: path, speaker ('DC', 'JE', 'JK', 'KL'), label, gender, sentence."""
    root = require_root(
        root,
        "SAVEE",
        "SAVEE_ROOT",
        "AudioData/DC ... AudioData/KL",
        "licence from kahlan.eps.surrey.ac.uk/savee/",
    )
    return scan(audio_dir(root, "AudioData"), parse_name, "SAVEE", "AudioData/DC/a01.wav ...")
