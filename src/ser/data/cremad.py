"""CREMA-D (Cao et al., 2014, IEEE Trans. Affective Computing 5(4)): AudioWAV/AAAA_SSS_EEE_II.wav.

91 actors (1001-1091) read 12 sentences in 6 emotions; intensity is LO/MD/HI for the sentence IEO
and XX (unspecified) for the others. Gender comes from the published VideoDemographics.csv.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

import pandas as pd

from ser.data.corpus import audio_dir, require_root, scan

log = logging.getLogger(__name__)

EMOTIONS = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fearful",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
INTENSITIES = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
SENTENCES = {
    "IEO": "It's eleven o'clock.",
    "TIE": "That is exactly what happened.",
    "IOM": "I'm on my way to the meeting.",
    "IWW": "I wonder what this is about.",
    "TAI": "The airplane is almost full.",
    "MTI": "Maybe tomorrow it will be cold.",
    "IWL": "I would like a new alarm clock.",
    "ITH": "I think I have a doctor's appointment.",
    "DFA": "Don't forget a jacket.",
    "ITS": "I think I've seen this before.",
    "TSI": "The surface is slick.",
    "WSI": "We'll stop in a couple of minutes.",
}
NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
DEMOGRAPHICS = "VideoDemographics.csv"


def parse_name(path: Path) -> dict[str, str] | None:
    """Fields of a CREMA-D file name, or None if the name is not one."""
    match = NAME.match(path.stem)
    if match is None:
        return None
    actor, sentence, emotion, intensity = match.groups()
    if sentence not in SENTENCES or emotion not in EMOTIONS or intensity not in INTENSITIES:
        return None
    return {
        "speaker": actor,
        "label": EMOTIONS[emotion],
        "intensity": INTENSITIES[intensity],
        "sentence": sentence,
        "text": SENTENCES[sentence],
    }


def read_genders(*folders: Path) -> dict[str, str]:
    """ActorID -> 'male'/'female' from VideoDemographics.csv in the first folder that has it."""
    for folder in folders:
        table = folder / DEMOGRAPHICS
        if table.is_file():
            with table.open(newline="", encoding="utf-8-sig") as handle:
                return {
                    row["ActorID"].strip(): row["Sex"].strip().lower()
                    for row in csv.DictReader(handle)
                    if row.get("ActorID") and row.get("Sex")
                }
    log.info("CREMA-D: no %s found, the gender column is left empty", DEMOGRAPHICS)
    return {}


def load(root: str | Path) -> pd.DataFrame:
    """One row per clip: path, speaker ('1001'..'1091'), label, gender, intensity, sentence,
    text."""
    root = require_root(
        root,
        "CREMA-D",
        "CREMAD_ROOT",
        "AudioWAV (and VideoDemographics.csv)",
        "github.com/CheyneyComputerScience/CREMA-D, or "
        "`python scripts/download_data.py cremad --to DIR`",
    )
    audio = audio_dir(root, "AudioWAV")
    table = scan(audio, parse_name, "CREMA-D", "AAAA_SSS_EEE_II.wav, e.g. 1001_DFA_ANG_XX.wav")
    genders = read_genders(root, audio.parent)
    table.insert(3, "gender", [genders.get(s) for s in table["speaker"]])
    return table
