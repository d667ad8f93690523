"""A deterministic, procedurally generated emotional-speech corpus (no download needed).

The utterances come from the source-filter voice in `ser.data.voice`; this module writes them
as WAV files under a folder named after every generation parameter, marks a finished corpus
complete, and indexes it. Every utterance is seeded from (seed, speaker, emotion, index), so
the audio does not depend on generation order, and the same seed always gives byte-identical
WAV files.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

import pandas as pd
import soundfile as sf
from tqdm.auto import tqdm

from ser.atomic import atomic_write
from ser.data.voice import EMOTIONS, GENERATOR_VERSION, speaker_gender, synthesize_utterance
from ser.errors import SerError

COMPLETE_MARKER = "COMPLETE"
# A temporary file this old cannot belong to a running generation (one WAV takes milliseconds).
_STALE_TMP_SECONDS = 60.0


def speaker_name(speaker: int) -> str:
    """`spk03` for speaker 3."""
    return f"spk{speaker:02d}"


def corpus_name(
    n_speakers: int,
    utterances_per_emotion: int,
    sample_rate: int,
    seed: int,
    min_duration: float,
    max_duration: float,
) -> str:
    """Folder name that encodes every generation parameter and the generator version."""
    return (
        f"synthetic-v{GENERATOR_VERSION}_seed{seed}_spk{n_speakers}_utt{utterances_per_emotion}"
        f"_sr{sample_rate}_dur{min_duration:g}-{max_duration:g}"
    )


def _wav_path(corpus_dir: Path, speaker: int, emotion: str, index: int) -> Path:
    name = speaker_name(speaker)
    return corpus_dir / name / f"{name}_{emotion}_{index:03d}.wav"


def _wav_files(corpus_dir: Path) -> list[Path]:
    return sorted(corpus_dir.glob("spk*/spk*_*_*.wav"))


def _read_marker(corpus_dir: Path) -> dict | None:
    try:
        marker = json.loads((corpus_dir / COMPLETE_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _speaker_genders(n_speakers: int) -> dict[str, str]:
    return {speaker_name(s): speaker_gender(s) for s in range(n_speakers)}


def ensure_corpus(
    root: str | Path,
    n_speakers: int = 8,
    utterances_per_emotion: int = 20,
    sample_rate: int = 16000,
    seed: int = 0,
    min_duration: float = 1.5,
    max_duration: float = 4.0,
) -> Path:
    """Generate the corpus under `root/<name of the parameters>` unless complete; return that dir.

    Files are `<dir>/spkNN/spkNN_<emotion>_III.wav`. Every WAV and the final `COMPLETE` marker are
    written to a temporary name and renamed, so an interrupted run leaves only whole files, and the
    next call fills in whatever is missing.
    """
    n_speakers, utterances_per_emotion = int(n_speakers), int(utterances_per_emotion)
    sample_rate, seed = int(sample_rate), int(seed)
    min_duration, max_duration = float(min_duration), float(max_duration)
    if n_speakers < 1 or utterances_per_emotion < 1:
        raise ValueError("n_speakers and utterances_per_emotion must be >= 1")
    corpus_dir = Path(root) / corpus_name(
        n_speakers, utterances_per_emotion, sample_rate, seed, min_duration, max_duration
    )
    expected = {
        "generator_version": GENERATOR_VERSION,
        "n_speakers": n_speakers,
        "utterances_per_emotion": utterances_per_emotion,
        "sample_rate": sample_rate,
        "seed": seed,
        "min_duration": min_duration,
        "max_duration": max_duration,
        "n_files": n_speakers * len(EMOTIONS) * utterances_per_emotion,
        "speakers": _speaker_genders(n_speakers),
    }
    # Also count the files (cheap), so a corpus that lost files after completion is repaired.
    if _read_marker(corpus_dir) == expected and len(_wav_files(corpus_dir)) == expected["n_files"]:
        return corpus_dir

    (corpus_dir / COMPLETE_MARKER).unlink(missing_ok=True)
    # Temporary files of a crashed run; fresh ones may belong to a concurrent run, so keep those.
    now = time.time()
    for stray in corpus_dir.glob("**/.tmp-*"):
        with contextlib.suppress(OSError):
            if now - stray.stat().st_mtime > _STALE_TMP_SECONDS:
                stray.unlink()
    jobs = [
        (spk, emo, idx)
        for spk in range(n_speakers)
        for emo in EMOTIONS
        for idx in range(utterances_per_emotion)
    ]
    # Finished WAVs were renamed into place whole, so they can be kept.
    todo = [job for job in jobs if not _wav_path(corpus_dir, *job).is_file()]
    for spk, emo, idx in tqdm(
        todo, desc=f"synthesising {corpus_dir.name}", unit="wav", disable=not sys.stderr.isatty()
    ):
        wave = synthesize_utterance(
            spk, emo, idx, sample_rate, seed, n_speakers, min_duration, max_duration
        )
        with atomic_write(_wav_path(corpus_dir, spk, emo, idx)) as tmp:
            sf.write(tmp, wave, sample_rate, subtype="PCM_16", format="WAV")
    with atomic_write(corpus_dir / COMPLETE_MARKER) as tmp:
        tmp.write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
    return corpus_dir


class CorpusNotReadyError(SerError, FileNotFoundError):
    """The directory is not a complete synthetic corpus."""


def index_corpus(corpus_dir: str | Path) -> pd.DataFrame:
    """One row per utterance: path (absolute), speaker ('spk03'), label, gender; sorted by path."""
    corpus_dir = Path(corpus_dir).resolve()
    marker = _read_marker(corpus_dir)
    if marker is None or not {"n_files", "speakers"} <= marker.keys():
        raise CorpusNotReadyError(
            f"{corpus_dir} is not a complete synthetic corpus (no valid {COMPLETE_MARKER} file); "
            "create or finish it with ser.data.synthetic.ensure_corpus"
        )
    rows = []
    for path in _wav_files(corpus_dir):
        speaker, label, _ = path.stem.split("_")
        rows.append((str(path), speaker, label, marker["speakers"].get(speaker)))
    if len(rows) != marker["n_files"] or any(row[3] is None for row in rows):
        raise CorpusNotReadyError(
            f"{corpus_dir} has {len(rows)} WAV files but {COMPLETE_MARKER} promises "
            f"{marker['n_files']}; delete {COMPLETE_MARKER} and rerun ensure_corpus to repair it"
        )
    return pd.DataFrame(rows, columns=["path", "speaker", "label", "gender"])


def load(
    root: str | Path,
    n_speakers: int = 8,
    utterances_per_emotion: int = 20,
    sample_rate: int = 16000,
    seed: int = 0,
    min_duration: float = 1.5,
    max_duration: float = 4.0,
) -> pd.DataFrame:
    """Dataset loader for the Hydra config: generate if needed, then index."""
    corpus_dir = ensure_corpus(
        root, n_speakers, utterances_per_emotion, sample_rate, seed, min_duration, max_duration
    )
    return index_corpus(corpus_dir)
