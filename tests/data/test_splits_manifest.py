"""Speaker-independent splits and manifests: the overlap check fires, bad input is explained."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ser.data.manifest import read_manifest, write_manifest
from ser.data.splits import check_speaker_independent, crossfit_splits, holdout_split
from ser.errors import SerError


def corpus(n_speakers: int = 8, per_speaker: int = 6) -> pd.DataFrame:
    rows = [
        (f"/a/{s}_{i}.wav", f"spk{s:02d}", ["neutral", "happy", "sad"][i % 3])
        for s in range(n_speakers)
        for i in range(per_speaker)
    ]
    return pd.DataFrame(rows, columns=["path", "speaker", "label"])


@pytest.mark.parametrize("seed", range(5))
def test_every_speaker_is_in_exactly_one_split(seed: int) -> None:
    out = holdout_split(corpus(), seed=seed)
    assert (out.groupby("speaker")["split"].nunique() == 1).all()
    speakers = out.groupby("split")["speaker"].nunique()
    assert speakers.to_dict() == {"train": 5, "val": 1, "test": 2}


def test_seed_changes_which_speakers_are_held_out() -> None:
    tests = {
        tuple(sorted(set(holdout_split(corpus(), seed=s).query("split == 'test'").speaker)))
        for s in range(6)
    }
    assert len(tests) > 1


def test_explicit_speaker_lists_win() -> None:
    out = holdout_split(corpus(), val_speakers=["spk01"], test_speakers=["spk02", "spk03"])
    assert set(out.query("split == 'test'").speaker) == {"spk02", "spk03"}
    assert set(out.query("split == 'val'").speaker) == {"spk01"}


def test_unknown_speaker_in_protocol_is_named() -> None:
    with pytest.raises(SerError, match="spk99"):
        holdout_split(corpus(), test_speakers=["spk99"])


def test_too_few_speakers_is_explained() -> None:
    with pytest.raises(SerError, match="at least 3 speakers"):
        holdout_split(corpus(n_speakers=2))


def test_overlap_assertion_fires_on_a_bad_split() -> None:
    bad = holdout_split(corpus(), seed=0)
    leaked = bad.query("split == 'test'").speaker.iloc[0]
    bad.loc[bad.index[(bad.speaker == leaked)][0], "split"] = "train"
    with pytest.raises(SerError, match=f"speaker overlap.*{leaked}"):
        check_speaker_independent(bad)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_crossfit_gives_each_training_speaker_one_model_that_never_saw_it(k: int) -> None:
    manifest = holdout_split(corpus(10), seed=1)
    train_speakers = set(manifest.query("split == 'train'").speaker)
    parts = crossfit_splits(manifest, k, seed=0)
    assert len(parts) == k
    held_out = [set(p.query("split == 'test'").speaker) for p in parts]
    # every training speaker is held out exactly once, never trained on in its own part
    assert sorted(s for h in held_out for s in h) == sorted(train_speakers)
    for part, held in zip(parts, held_out, strict=True):
        assert not held & set(part.query("split == 'train'").speaker)
        assert set(part.query("split == 'val'").speaker) == set(
            manifest.query("split == 'val'").speaker
        )
        assert not set(part.speaker) & set(manifest.query("split == 'test'").speaker)
    assert {len(h) for h in held_out} <= {len(train_speakers) // k, -(-len(train_speakers) // k)}


def test_crossfit_needs_two_to_n_training_speakers() -> None:
    manifest = holdout_split(corpus(), seed=0)
    for k in (1, 6):
        with pytest.raises(SerError, match=r"rl\.crossfit_folds"):
            crossfit_splits(manifest, k)


def test_manifest_round_trip_and_validation(tmp_path: Path) -> None:
    good = holdout_split(corpus(), seed=1)
    path = write_manifest(good, tmp_path / "m.csv")
    pd.testing.assert_frame_equal(read_manifest(path), good)
    with pytest.raises(SerError, match=r"outside dataset\.labels"):
        read_manifest(path, labels=["neutral", "happy"])
    with pytest.raises(SerError, match=r"python -m ser\.prepare"):
        read_manifest(tmp_path / "missing.csv")
    good.drop(columns="split").to_csv(tmp_path / "nosplit.csv", index=False)
    with pytest.raises(SerError, match="lacks columns"):
        read_manifest(tmp_path / "nosplit.csv")


def test_interrupted_manifest_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = write_manifest(corpus().assign(split="train"), tmp_path / "m.csv")
    before = path.read_bytes()

    class Boom(pd.DataFrame):
        def to_csv(self, *args: object, **kwargs: object) -> None:
            Path(str(args[0])).write_text("partial")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_manifest(Boom(corpus()), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.csv"]


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    import os

    umask = os.umask(0)
    os.umask(umask)
    path = write_manifest(corpus().assign(split="train"), tmp_path / "m.csv")
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
