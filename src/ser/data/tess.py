"""TESS, the Toronto emotional speech set (Dupuis & Pichora-Fuller, 2010, University of Toronto):
<SPK>_<emotion>/<SPK>_<word>_<emotion>.wav.

Two actresses (OAF aged 64, YAF aged 26) say 200 target words in the carrier phrase "Say the word
_" in 7 emotions. The published folder names are inconsistent in case and wording (YAF_fear,
OAF_Fear, OAF_Pleasant_surprise, YAF_pleasant_surprised), so names are matched case-insensitively.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ser.data.corpus import require_root, scan

EMOTIONS = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fearful",
    "happy": "happy",
    "neutral": "neutral",
    "ps": "surprised",
    "pleasant_surprise": "surprised",
    "pleasant_surprised": "surprised",
    "sad": "sad",
}
AGES = {"OAF": 64, "YAF": 26}


def parse_name(path: Path) -> dict[str, object] | None:
    """Fields of a TESS file name (emotion from the name, else from its folder), or None."""
    parts = path.stem.split("_", 2)
    if len(parts) != 3:
        return None
    speaker, word, emotion = parts[0].upper(), parts[1].lower(), parts[2].lower()
    if speaker not in AGES:
        return None
    label = EMOTIONS.get(emotion)
    if label is None:
        # The folder (e.g. OAF_Pleasant_surprise) names the emotion when the file name does not.
        folder = path.parent.name.split("_", 1)
        if len(folder) != 2 or folder[0].upper() != speaker:
            return None
        label = EMOTIONS.get(folder[1].lower())
        if label is None:
            return None
    return {
        "speaker": speaker,
        "label": label,
        "gender": "female",
        "age": AGES[speaker],
        "text": word,
    }


def load(root: str | Path) -> pd.DataFrame:
    """One row per word: path, speaker ('OAF'/'YAF'), label, gender, age, text (the word)."""
    root = require_root(
        root,
        "TESS",
        "TESS_ROOT",
        "the OAF_* and YAF_* emotion folders",
        "tspace.library.utoronto.ca/handle/1807/24487; "
        "`python scripts/download_data.py tess --to DIR` prints the steps",
    )
    return scan(root, parse_name, "TESS", "OAF_<word>_<emotion>.wav or YAF_<word>_<emotion>.wav")
