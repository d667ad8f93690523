"""Speaker-independent splits: a speaker's utterances all land in one of train/val/test."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ser.errors import SerError

SPLITS = ("train", "val", "test")


def holdout_split(
    manifest: pd.DataFrame,
    val_fraction: float = 0.125,
    test_fraction: float = 0.25,
    val_speakers: Sequence[str] | None = None,
    test_speakers: Sequence[str] | None = None,
    seed: int = 0,
    val_utterances: float | None = None,
) -> pd.DataFrame:
    """Return a copy of `manifest` with a `split` column, assigning whole speakers.

    Explicit speaker lists win; otherwise speakers are shuffled with `seed` and the fractions
    (rounded, at least one speaker each) go to val and test. With `val_utterances`, no speaker
    validates: that fraction of the training speakers' utterances does (see
    `hold_out_utterances`), so two speakers are enough.
    """
    speakers = sorted(manifest["speaker"].astype(str).unique())
    by_utterances = val_utterances is not None
    if by_utterances and val_speakers:
        raise SerError(
            "protocol.val_utterances replaces validation speakers; set protocol.val_speakers=null"
        )
    needed = 2 if by_utterances else 3
    if len(speakers) < needed:
        raise SerError(
            f"a speaker-independent split needs at least {needed} speakers, the corpus has "
            f"{len(speakers)}; add speakers"
            + ("" if by_utterances else ", or validate on held-out utterances of the training "
               "speakers: protocol.val_utterances=0.15")
        )  # fmt: skip
    unknown = {str(s) for s in list(val_speakers or []) + list(test_speakers or [])} - set(speakers)
    if unknown:
        raise SerError(f"protocol names unknown speakers {sorted(unknown)}; known: {speakers}")
    order = [speakers[i] for i in np.random.default_rng(seed).permutation(len(speakers))]
    test = [str(s) for s in test_speakers] if test_speakers else None
    val = [str(s) for s in val_speakers] if val_speakers else None
    if test is None:
        rest = [s for s in order if s not in (val or [])]
        count = max(1, round(test_fraction * len(speakers)))
        # Validating on utterances, at least one speaker must be left to train on.
        test = rest[: min(len(rest) - 1, count) if by_utterances else count]
    if val_utterances is not None:  # by_utterances
        return hold_out_utterances(manifest, test, val_utterances, seed)
    if val is None:
        rest = [s for s in order if s not in test]
        val = rest[: max(1, round(val_fraction * len(speakers)))]
    split_of = {s: "train" for s in speakers} | {s: "val" for s in val} | {s: "test" for s in test}
    out = manifest.copy()
    out["split"] = out["speaker"].astype(str).map(split_of)
    check_speaker_independent(out)
    return out


def hold_out_utterances(
    manifest: pd.DataFrame,
    test_speakers: Sequence[str],
    fraction: float,
    seed: int | Sequence[int] = 0,
) -> pd.DataFrame:
    """A copy of `manifest` where `test_speakers` test and the others train, but for
    `fraction` of every training speaker's utterances of each label (drawn with `seed`), which
    validate. Test speakers stay unseen, but model selection is then speaker-dependent: for
    corpora with too few speakers to spare one (TESS has two)."""
    if not 0 < fraction < 1:
        raise SerError(
            f"protocol.val_utterances={fraction} must be a fraction in (0, 1), e.g. 0.15"
        )
    out = manifest.copy()
    tested = set(map(str, test_speakers))
    out["split"] = ["test" if s in tested else "train" for s in out["speaker"].astype(str)]
    rng = np.random.default_rng(seed)
    train = out[out["split"] == "train"]
    for _, rows in train.groupby([train["speaker"].astype(str), train["label"]], sort=True):
        order = rng.permutation(rows.index.to_numpy())
        out.loc[order[: round(fraction * len(order))], "split"] = "val"
    if not (out["split"] == "val").any():
        raise SerError(
            f"protocol.val_utterances={fraction} holds out no utterance of the training "
            "speakers; raise it"
        )
    check_speaker_independent(out, val_from_train=True)
    return out


def check_speaker_independent(manifest: pd.DataFrame, val_from_train: bool = False) -> None:
    """Raise SerError if any speaker appears in more than one split, or a split is empty.

    With `val_from_train` (validation on held-out utterances of the training speakers) only
    the test speakers must be apart from the others.
    """
    bad_values = set(manifest["split"].unique()) - set(SPLITS)
    if bad_values:
        raise SerError(
            f"manifest has unknown split values {sorted(map(str, bad_values))}; use {SPLITS}"
        )
    if val_from_train:
        manifest = manifest.assign(split=manifest["split"].replace("val", "train"))
    per_speaker = manifest.groupby(manifest["speaker"].astype(str))["split"].nunique()
    leaking = sorted(per_speaker[per_speaker > 1].index)
    if leaking:
        where = {
            s: sorted(manifest.loc[manifest["speaker"].astype(str) == s, "split"].unique())
            for s in leaking[:3]
        }
        raise SerError(
            f"speaker overlap between splits: {where} (speakers {leaking}); put every speaker "
            "in exactly one of train/val/test, e.g. regenerate the manifest with `python -m "
            "ser.prepare`"
        )
    needed = [s for s in SPLITS if not (val_from_train and s == "val")]
    missing = [s for s in needed if not (manifest["split"] == s).any()]
    if missing:
        raise SerError(
            f"split(s) {missing} have no utterances; give each split at least one speaker"
        )


# The way out for corpora with too few speakers, named by every error that meets one.
FEW_SPEAKERS_HINT = (
    "or validate on held-out utterances of the training speakers with protocol.val_speakers=0 "
    "protocol.val_utterances=0.15 (model selection is then speaker-dependent; the test "
    "speakers stay unseen)"
)


def _assign_folds(
    manifest: pd.DataFrame,
    test_groups: list[list[str]],
    val_speakers: int,
    seed: int,
    val_utterances: float | None = None,
) -> list[pd.DataFrame]:
    """One manifest per fold: the fold's group tests, `val_speakers` of the others (drawn with
    `seed`, per fold) validate, the remaining speakers train. With `val_utterances` (and
    val_speakers=0) a fraction of the training speakers' utterances validates instead."""
    if val_utterances is not None and val_speakers:
        raise SerError(
            "protocol.val_utterances replaces validation speakers; set protocol.val_speakers=0"
        )
    if val_utterances is None and val_speakers < 1:
        raise SerError(
            f"protocol.val_speakers={val_speakers} leaves no validation split; give it at least "
            f"one speaker, {FEW_SPEAKERS_HINT}"
        )
    speakers = sorted(manifest["speaker"].astype(str).unique())
    folds = []
    for k, test in enumerate(test_groups):
        rest = [s for s in speakers if s not in test]
        if len(rest) <= val_speakers:
            raise SerError(
                f"fold {k} leaves {len(rest)} speakers for train and val; use fewer folds "
                f"or fewer protocol.val_speakers, {FEW_SPEAKERS_HINT}"
            )
        if val_utterances is not None:
            folds.append(hold_out_utterances(manifest, test, val_utterances, [seed, k]))
            continue
        rng = np.random.default_rng([seed, k])
        val = [rest[i] for i in rng.choice(len(rest), size=val_speakers, replace=False)]
        split_of = {s: "train" for s in rest} | {s: "val" for s in val} | {s: "test" for s in test}
        fold = manifest.copy()
        fold["split"] = fold["speaker"].astype(str).map(split_of)
        check_speaker_independent(fold)
        folds.append(fold)
    return folds


def kfold_speaker(
    manifest: pd.DataFrame,
    n_folds: int = 6,
    groups: Sequence[Sequence[str]] | None = None,
    val_speakers: int = 1,
    seed: int = 0,
    val_utterances: float | None = None,
) -> list[pd.DataFrame]:
    """k folds grouped by speaker. Without explicit `groups`, the sorted speakers are cut into
    `n_folds` contiguous groups (RAVDESS: actors 1-4, 5-8, ..., 21-24)."""
    speakers = sorted(manifest["speaker"].astype(str).unique())
    if groups:
        test_groups = [[str(s) for s in g] for g in groups]
        named = [s for g in test_groups for s in g]
        if len(set(named)) != len(named) or set(named) != set(speakers):
            raise SerError(
                f"protocol.groups must name every speaker exactly once; speakers: {speakers}"
            )
    else:
        if not 2 <= n_folds <= len(speakers):
            raise SerError(f"protocol.n_folds={n_folds} must be in 2..{len(speakers)} (speakers)")
        test_groups = [list(g) for g in np.array_split(np.array(speakers, dtype=object), n_folds)]
    return _assign_folds(manifest, test_groups, val_speakers, seed, val_utterances)


def leave_one_speaker_out(
    manifest: pd.DataFrame,
    val_speakers: int = 1,
    seed: int = 0,
    val_utterances: float | None = None,
) -> list[pd.DataFrame]:
    """One fold per speaker, which is the fold's only test speaker."""
    speakers = sorted(manifest["speaker"].astype(str).unique())
    return _assign_folds(manifest, [[s] for s in speakers], val_speakers, seed, val_utterances)


def predefined(
    manifest: pd.DataFrame,
    column: str = "session",
    val_speakers: int = 1,
    seed: int = 0,
    val_utterances: float | None = None,
) -> list[pd.DataFrame]:
    """The corpus's own partition: one fold per value of `column` (IEMOCAP: leave one session
    out). A speaker found under two values would leak, and is refused."""
    if column not in manifest.columns:
        raise SerError(
            f"protocol.column={column!r} is not a column of this corpus; it has "
            f"{sorted(manifest.columns)}"
        )
    per_speaker = manifest.groupby(manifest["speaker"].astype(str))[column].nunique()
    if (per_speaker > 1).any():
        raise SerError(
            f"speakers {sorted(per_speaker[per_speaker > 1].index)} span several "
            f"{column} values; predefined folds must keep each speaker in one"
        )
    test_groups = [
        sorted(manifest.loc[manifest[column] == value, "speaker"].astype(str).unique())
        for value in sorted(manifest[column].unique())
    ]
    return _assign_folds(manifest, test_groups, val_speakers, seed, val_utterances)


def speaker_dependent(
    manifest: pd.DataFrame, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0
) -> pd.DataFrame:
    """Random utterance-level split, stratified by label: speakers appear on both sides. For
    comparison with the literature only; its runs are named and tagged speaker_dependent."""
    rng = np.random.default_rng(seed)
    out = manifest.copy()
    out["split"] = "train"
    for _, rows in out.groupby("label"):
        order = rng.permutation(rows.index.to_numpy())
        n_test = max(1, round(test_fraction * len(order)))
        n_val = max(1, round(val_fraction * len(order)))
        out.loc[order[:n_test], "split"] = "test"
        out.loc[order[n_test : n_test + n_val], "split"] = "val"
    return out


def cross_corpus(
    manifest: pd.DataFrame, test_corpus: pd.DataFrame, val_fraction: float = 0.15, seed: int = 0
) -> pd.DataFrame:
    """Train and validate on `manifest`'s speakers, test on all of `test_corpus`. Test speakers
    are prefixed with "test:" so that equal ids in two corpora never merge."""
    speakers = sorted(manifest["speaker"].astype(str).unique())
    if len(speakers) < 2:
        raise SerError("cross_corpus needs at least 2 training speakers (train and val)")
    order = [speakers[i] for i in np.random.default_rng(seed).permutation(len(speakers))]
    val = set(order[: max(1, round(val_fraction * len(speakers)))])
    train = manifest.assign(
        speaker=manifest["speaker"].astype(str),
        split=[("val" if s in val else "train") for s in manifest["speaker"].astype(str)],
    )
    test = test_corpus.assign(speaker="test:" + test_corpus["speaker"].astype(str), split="test")
    out = pd.concat([train, test], ignore_index=True)
    check_speaker_independent(out)
    return out


def validates_on_training_speakers(protocol: Mapping[str, Any]) -> bool:
    """Whether a protocol config validates on held-out utterances of the training speakers."""
    return protocol.get("val_utterances") is not None


def speakers_in(manifest: pd.DataFrame, split: str) -> list[str]:
    """The speakers (as strings, sorted) with utterances in `split`."""
    return sorted(manifest.loc[manifest["split"] == split, "speaker"].astype(str).unique())


def crossfit_splits(manifest: pd.DataFrame, k: int, seed: int = 0) -> list[pd.DataFrame]:
    """Split the training speakers of a train/val/test manifest into `k` groups; manifest i
    tests on group i, trains on the other training speakers and keeps the validation speakers.
    The original test speakers are left out. A model per manifest then gives every training
    utterance an output from a model that never saw its speaker (out-of-fold outputs)."""
    speakers = speakers_in(manifest, "train")
    if not 2 <= k <= len(speakers):
        raise SerError(
            f"cross-fitting needs 2 <= k <= the {len(speakers)} training speakers, got k={k}; "
            "change rl.crossfit_folds"
        )
    order = [speakers[i] for i in np.random.default_rng(seed).permutation(len(speakers))]
    parts = []
    for group in np.array_split(np.array(order, dtype=object), k):
        out = manifest[manifest["split"] != "test"].copy()
        out.loc[out["speaker"].astype(str).isin(set(group)), "split"] = "test"
        check_speaker_independent(out)
        parts.append(out)
    return parts
