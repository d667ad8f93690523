"""A user's corpus laid out as one sub-folder per label: <root>/<label>/**/<file>.{wav,flac,...}.

Speaker-independent splits need a speaker per file: from `speaker_pattern` (a regex searched in
the file name; its first group, or the whole match, is the speaker), else from the sub-folder
below the label folder (<root>/<label>/<speaker>/...).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ser.data.corpus import AUDIO_SUFFIXES, frame, warn_skipped
from ser.errors import SerError

# As typed in a shell: Hydra's override parser needs the regex quoted inside the override.
SPEAKER_PATTERN_EXAMPLE = """'dataset.loader.speaker_pattern="^(\\w+?)_"'"""


def load(root: str | Path, speaker_pattern: str | None = None) -> pd.DataFrame:
    """One row per audio file: path, speaker, label (the label folder's name, lowercased)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise SerError(
            f"folder dataset not found at {root}; set dataset.loader.root to a folder holding "
            "one sub-folder per label (<root>/<label>/<file>.wav)"
        )
    try:
        pattern = re.compile(speaker_pattern) if speaker_pattern else None
    except re.error as err:
        raise SerError(f"dataset.loader.speaker_pattern {speaker_pattern!r}: {err}") from None
    rows, skipped, no_speaker = [], [], []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        parts = path.relative_to(root).parts
        if len(parts) < 2 or path.suffix.lower() not in AUDIO_SUFFIXES or path.name[0] == ".":
            skipped.append(path)  # files at the top level have no label folder
            continue
        if pattern is not None:
            match = pattern.search(path.name)
            if match is None:
                skipped.append(path)
                continue
            speaker = match.group(1) if pattern.groups else match.group(0)
        elif len(parts) >= 3:
            speaker = parts[1]
        else:
            no_speaker.append(path)
            continue
        rows.append({"path": str(path.resolve()), "speaker": speaker, "label": parts[0].lower()})
    if no_speaker:
        raise SerError(
            f"folder dataset: no speaker for {len(no_speaker)} files such as "
            f"{no_speaker[0].relative_to(root)}; speaker-independent splits need speakers: set "
            "dataset.loader.speaker_pattern to a regex on the file name (in a shell: "
            f"{SPEAKER_PATTERN_EXAMPLE}), put files in <label>/<speaker>/, or list them with "
            "dataset=csv and a speaker column"
        )
    what = "not audio in a label folder"
    if pattern is not None:
        what += f" or do not match speaker_pattern {pattern.pattern!r}"
    warn_skipped("folder dataset", root, skipped, what)
    return frame(rows, "folder dataset", "<label>/<file>.wav|flac|ogg|aiff|mp3", root)
