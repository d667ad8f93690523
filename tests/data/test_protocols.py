"""Cross-validation protocols: every fold is speaker-independent and every utterance is
tested exactly once; the speaker-dependent protocol is the one exception, and says so."""

from __future__ import annotations

import pandas as pd
import pytest

from ser.data.splits import (
    check_speaker_independent,
    holdout_split,
    kfold_speaker,
    leave_one_speaker_out,
    predefined,
    speaker_dependent,
)
from ser.errors import SerError


def corpus(n_speakers: int = 24, per_speaker: int = 4) -> pd.DataFrame:
    rows = [
        (f"/a/{s}_{i}.wav", f"{s + 1:02d}", ["happy", "sad"][i % 2], f"Ses{s // 4 + 1}")
        for s in range(n_speakers)
        for i in range(per_speaker)
    ]
    return pd.DataFrame(rows, columns=["path", "speaker", "label", "session"])


def each_tested_once(folds: list[pd.DataFrame]) -> bool:
    tested = pd.concat(f.loc[f["split"] == "test", "path"] for f in folds)
    return tested.is_unique and set(tested) == set(folds[0]["path"])


def test_kfold_speaker_cuts_ravdess_into_contiguous_groups_of_four() -> None:
    folds = kfold_speaker(corpus(), n_folds=6)
    assert len(folds) == 6
    groups = [sorted(f.loc[f["split"] == "test", "speaker"].unique()) for f in folds]
    assert groups[0] == ["01", "02", "03", "04"] and groups[5] == ["21", "22", "23", "24"]
    assert each_tested_once(folds)
    for fold in folds:
        assert (fold.groupby("speaker")["split"].nunique() == 1).all()
        assert fold.loc[fold["split"] == "val", "speaker"].nunique() == 1


def test_explicit_groups_must_cover_every_speaker_once() -> None:
    speakers = [f"{s:02d}" for s in range(1, 25)]
    folds = kfold_speaker(corpus(), groups=[speakers[::2], speakers[1::2]])
    assert len(folds) == 2 and each_tested_once(folds)
    with pytest.raises(SerError, match="every speaker exactly once"):
        kfold_speaker(corpus(), groups=[speakers[:10], speakers[5:]])


def test_loso_has_one_fold_per_speaker() -> None:
    folds = leave_one_speaker_out(corpus(n_speakers=5))
    assert len(folds) == 5 and each_tested_once(folds)
    assert all(f.loc[f["split"] == "test", "speaker"].nunique() == 1 for f in folds)


def test_predefined_leaves_one_session_out() -> None:
    folds = predefined(corpus(), column="session")
    assert len(folds) == 6 and each_tested_once(folds)
    sessions = [f.loc[f["split"] == "test", "session"].unique().tolist() for f in folds]
    assert sessions == [[f"Ses{i}"] for i in range(1, 7)]
    leaky = corpus()
    leaky.loc[0, "session"] = "Ses6"  # speaker 01 now spans two sessions
    with pytest.raises(SerError, match="span several session"):
        predefined(leaky, column="session")
    with pytest.raises(SerError, match="not a column"):
        predefined(corpus(), column="dialog")


def test_speaker_dependent_puts_speakers_on_both_sides() -> None:
    out = speaker_dependent(corpus(n_speakers=4, per_speaker=20), seed=0)
    assert (out.groupby("speaker")["split"].nunique() > 1).any()
    assert set(out["split"]) == {"train", "val", "test"}


def test_two_speakers_cross_validate_with_held_out_utterances_for_validation() -> None:
    two = corpus(n_speakers=2, per_speaker=20)
    with pytest.raises(SerError, match=r"protocol.val_speakers=0 protocol.val_utterances=0.15"):
        leave_one_speaker_out(two)
    with pytest.raises(SerError, match="val_utterances"):
        leave_one_speaker_out(two, val_speakers=0)
    folds = leave_one_speaker_out(two, val_speakers=0, val_utterances=0.2)
    assert len(folds) == 2 and each_tested_once(folds)
    for fold in folds:
        (test_speaker,) = fold.loc[fold["split"] == "test", "speaker"].unique()
        seen = fold.loc[fold["split"] != "test", "speaker"].unique()
        assert test_speaker not in seen  # the test speaker stays unseen
        val = fold[fold["split"] == "val"]
        assert set(val["speaker"]) == set(seen)  # validation: utterances of training speakers
        # 20 % of each (speaker, label) group of 10: 2 per label
        assert val.groupby("label").size().to_dict() == {"happy": 2, "sad": 2}
        assert not set(val["path"]) & set(fold.loc[fold["split"] == "train", "path"])


def test_held_out_utterances_refuse_validation_speakers_and_bad_fractions() -> None:
    with pytest.raises(SerError, match="val_speakers=0"):
        leave_one_speaker_out(corpus(n_speakers=4), val_speakers=1, val_utterances=0.2)
    with pytest.raises(SerError, match=r"fraction in \(0, 1\)"):
        leave_one_speaker_out(corpus(n_speakers=2), val_speakers=0, val_utterances=1.5)
    with pytest.raises(SerError, match="holds out no utterance"):
        leave_one_speaker_out(corpus(n_speakers=2), val_speakers=0, val_utterances=0.01)


def test_holdout_of_two_speakers_tests_one_and_validates_on_the_other() -> None:
    two = corpus(n_speakers=2, per_speaker=20)
    with pytest.raises(SerError, match=r"protocol\.val_utterances=0\.15"):
        holdout_split(two)
    with pytest.raises(SerError, match="unknown speakers"):
        holdout_split(two, val_utterances=0.2, test_speakers=["nobody"])
    out = holdout_split(two, val_utterances=0.2, seed=3)
    assert out.loc[out["split"] == "test", "speaker"].nunique() == 1
    assert set(out.loc[out["split"] == "val", "speaker"]) == set(
        out.loc[out["split"] == "train", "speaker"]
    )
    with pytest.raises(SerError, match="speaker overlap"):
        check_speaker_independent(out)  # only allowed where the protocol asks for it
    check_speaker_independent(out, val_from_train=True)
    leaked = out.copy()
    leaked.loc[leaked.index[0], "split"] = "test" if out.loc[0, "split"] != "test" else "train"
    with pytest.raises(SerError, match="speaker overlap"):
        check_speaker_independent(leaked, val_from_train=True)  # never into test
