"""The RAVDESS loader on fixtures in the corpus's real naming layout, and on the real corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser.data import ravdess
from ser.errors import SerError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "ravdess"


def make_fixture(root: Path) -> None:
    tone = 0.1 * np.sin(np.arange(1600) / 5.0)
    for actor in (1, 2):
        folder = root / f"Actor_{actor:02d}"
        folder.mkdir(parents=True)
        for emotion in ("01", "05"):
            sf.write(folder / f"03-01-{emotion}-01-01-01-{actor:02d}.flac", tone, 16000)
        sf.write(folder / f"03-02-03-01-01-01-{actor:02d}.wav", tone, 16000)  # song: not speech
    (root / "README.txt").write_text("not audio")


def test_fixture_layout_is_parsed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_fixture(tmp_path)
    table = ravdess.load(tmp_path)
    assert len(table) == 4
    assert sorted(table.speaker.unique()) == ["01", "02"]
    assert set(table.label) == {"neutral", "angry"}
    assert dict(zip(table.speaker, table.gender, strict=True)) == {"01": "male", "02": "female"}
    assert "skipped 3 files" in caplog.text


def test_missing_root_names_the_path_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SerError, match=r"RAVDESS not found at .*nope; set dataset\.loader\.root"):
        ravdess.load(tmp_path / "nope")


def test_root_without_speech_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "x.wav").write_bytes(b"")
    with pytest.raises(SerError, match="no RAVDESS speech files"):
        ravdess.load(tmp_path)


@pytest.mark.ravdess
@pytest.mark.skipif(not SHARED.is_dir(), reason=f"RAVDESS not available at {SHARED}")
def test_real_corpus_has_24_actors_and_8_emotions() -> None:
    table = ravdess.load(SHARED)
    assert len(table) == 1440
    assert table.speaker.nunique() == 24
    counts = table.label.value_counts()
    assert counts["neutral"] == 96
    assert (counts.drop("neutral") == 192).all()
