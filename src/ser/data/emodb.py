"""EmoDB, the Berlin database of emotional speech (Burkhardt et al., 2005, Interspeech):
wav/SSTTTEV.wav, e.g. 03a01Fa.wav.

Ten actors (SS: 03, 08-16) say ten German sentences (TTT: a01 ... b10) in seven emotions (E, the
German initial: W Ärger/Wut, L Langeweile, E Ekel, A Angst, F Freude, T Trauer, N neutral); V is
the version letter.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ser.data.corpus import audio_dir, require_root, scan

EMOTIONS = {
    "W": "angry",
    "L": "boredom",
    "E": "disgust",
    "A": "fearful",
    "F": "happy",
    "T": "sad",
    "N": "neutral",
}
GENDERS = {
    "03": "male",
    "10": "male",
    "11": "male",
    "12": "male",
    "15": "male",
    "08": "female",
    "09": "female",
    "13": "female",
    "14": "female",
    "16": "female",
}
SENTENCES = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
NAME = re.compile(r"^(\d{2})([ab]\d{2})([A-Z])([a-z])$")


def parse_name(path: Path) -> dict[str, str | None] | None:
    """Fields of an EmoDB file name, or None if the name is not one."""
    match = NAME.match(path.stem)
    if match is None:
        return None
    speaker, text_id, emotion, version = match.groups()
    if speaker not in GENDERS or emotion not in EMOTIONS:
        return None
    return {
        "speaker": speaker,
        "label": EMOTIONS[emotion],
        "gender": GENDERS[speaker],
        "text_id": text_id,
        "text": SENTENCES.get(text_id),
        "version": version,
    }


def load(root: str | Path) -> pd.DataFrame:
    """One row per file: path, speaker ('03'..'16'), label, gender, text_id, text, version."""
    root = require_root(
        root,
        "EmoDB",
        "EMODB_ROOT",
        "wav/03a01Fa.wav ...",
        "emodb.bilderbar.info, or `python scripts/download_data.py emodb --to DIR`",
    )
    return scan(audio_dir(root, "wav"), parse_name, "EmoDB", "SSTTTEV.wav, e.g. 03a01Fa.wav")
