"""IEMOCAP (Busso et al., 2008, Language Resources and Evaluation 42(4); licence required):
SessionN/dialog/EmoEvaluation/<dialog>.txt labels SessionN/sentences/wav/<dialog>/<utt>.wav.

Five sessions, each a male and a female actor in improvised and scripted dialogs. The utterance
id (Ses01F_impro01_M000) ends with who speaks (M000 -> the male actor of session 1); the F/M after
the session number only says who wore the motion-capture markers.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from ser.data.corpus import AUDIO_SUFFIXES, frame, require_root, warn_skipped

log = logging.getLogger(__name__)

EMOTIONS = {
    "neu": "neutral",
    "hap": "happy",
    "exc": "excited",
    "sad": "sad",
    "ang": "angry",
    "fru": "frustrated",
    "sur": "surprised",
    "fea": "fearful",
    "dis": "disgust",
}  # oth (other) and xxx (no majority) are dropped.
# [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]
EVALUATION = re.compile(
    r"^\[(?P<start>[\d.]+) - (?P<end>[\d.]+)\]\s+(?P<utt>Ses\d{2}[FM]_\S+_[FM]\d+)\s+"
    r"(?P<emo>\w+)\s+\[(?P<val>[\d.]+), (?P<act>[\d.]+), (?P<dom>[\d.]+)\]"
)
# Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.
TRANSCRIPT = re.compile(r"^(?P<utt>Ses\d{2}[FM]_\S+_[FM]\d+) \[[\d.]+-[\d.]+\]:\s*(?P<text>.*)$")


def parse_evaluations(path: Path) -> list[dict[str, object]]:
    """The utterance lines of one EmoEvaluation file (raw emotion codes, all of them)."""
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = EVALUATION.match(line)
        if match is None:
            continue
        utt = match["utt"]
        dialog, who = utt.rsplit("_", 1)
        rows.append(
            {
                "utterance": utt,
                "dialog": dialog,
                "code": match["emo"],
                "speaker": f"{utt[:5]}_{who[0]}",
                "gender": "female" if who[0] == "F" else "male",
                "session": utt[:5],
                "improvised": "_impro" in dialog,
                "start": float(match["start"]),
                "end": float(match["end"]),
                "valence": float(match["val"]),
                "activation": float(match["act"]),
                "dominance": float(match["dom"]),
            }
        )
    return rows


def read_transcripts(session: Path) -> dict[str, str]:
    """Utterance id -> transcript from dialog/transcriptions/*.txt (empty if absent)."""
    texts: dict[str, str] = {}
    for path in sorted((session / "dialog" / "transcriptions").glob("*.txt")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            match = TRANSCRIPT.match(line.strip())
            if match:
                texts[match["utt"]] = match["text"].strip()
    return texts


def load(
    root: str | Path, merge_excited: bool = False, improvised: bool | None = None
) -> pd.DataFrame:
    """One row per labelled utterance: path, speaker ('Ses01_F'), label, utterance, dialog,
    gender, session, improvised, start, end, valence, activation, dominance, text.

    merge_excited: label excited as happy (the usual 4-class set-up).
    improvised: True keeps improvised dialogs only, False scripted only, None both.
    """
    root = require_root(
        root,
        "IEMOCAP",
        "IEMOCAP_ROOT",
        "Session1 ... Session5",
        "licence from sail.usc.edu/iemocap/iemocap_release.htm",
    )
    rows, dropped, missing, strays = [], 0, [], []
    for session in sorted(p for p in root.glob("Session*") if p.is_dir()):
        texts = read_transcripts(session)
        wav_dir = session / "sentences" / "wav"
        labelled = set()
        for path in sorted((session / "dialog" / "EmoEvaluation").glob("*.txt")):
            if path.name.startswith("."):  # macOS resource forks (._Ses01F...) in some copies
                continue
            for row in parse_evaluations(path):
                labelled.add(row["utterance"])
                label = EMOTIONS.get(str(row.pop("code")))
                if label is None:
                    dropped += 1
                    continue
                if improvised is not None and row["improvised"] != improvised:
                    continue
                if merge_excited and label == "excited":
                    label = "happy"
                audio = wav_dir / str(row["dialog"]) / f"{row['utterance']}.wav"
                if not audio.is_file():
                    missing.append(audio)
                    continue
                rows.append(
                    {
                        "path": str(audio.resolve()),
                        "speaker": row.pop("speaker"),
                        "label": label,
                        **row,
                        "text": texts.get(str(row["utterance"])),
                    }
                )
        if wav_dir.is_dir():
            strays += [
                p
                for p in sorted(wav_dir.rglob("*"))
                if p.is_file()
                and (p.suffix.lower() not in AUDIO_SUFFIXES or p.stem not in labelled)
            ]
    if dropped:
        log.info("IEMOCAP: dropped %d utterances labelled oth/xxx (no usable emotion)", dropped)
    warn_skipped("IEMOCAP", root, missing, "labelled but missing")
    warn_skipped("IEMOCAP", root, strays, "not labelled IEMOCAP utterances")
    return frame(
        rows, "IEMOCAP", "SessionN/dialog/EmoEvaluation/*.txt with sentences/wav audio", root
    )
