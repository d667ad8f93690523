"""Speaker-independent splits: a speaker's utterances all land in one of train/val/test."""

from __future__ import annotations

from collections.abc import Sequence

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
) -> pd.DataFrame:
    """Return a copy of `manifest` with a `split` column, assigning whole speakers.

    Explicit speaker lists win; otherwise speakers are shuffled with `seed` and the fractions
    (rounded, at least one speaker each) go to val and test.
    """
    speakers = sorted(manifest["speaker"].astype(str).unique())
    if len(speakers) < 3:
        raise SerError(
            f"a speaker-independent split needs at least 3 speakers, the corpus has "
            f"{len(speakers)}; add speakers or use a corpus with more"
        )
    unknown = {str(s) for s in (val_speakers or []) + list(test_speakers or [])} - set(speakers)
    if unknown:
        raise SerError(f"protocol names unknown speakers {sorted(unknown)}; known: {speakers}")
    order = [speakers[i] for i in np.random.default_rng(seed).permutation(len(speakers))]
    test = [str(s) for s in test_speakers] if test_speakers else None
    val = [str(s) for s in val_speakers] if val_speakers else None
    if test is None:
        rest = [s for s in order if s not in (val or [])]
        test = rest[: max(1, round(test_fraction * len(speakers)))]
    if val is None:
        rest = [s for s in order if s not in test]
        val = rest[: max(1, round(val_fraction * len(speakers)))]
    split_of = {s: "train" for s in speakers} | {s: "val" for s in val} | {s: "test" for s in test}
    out = manifest.copy()
    out["split"] = out["speaker"].astype(str).map(split_of)
    check_speaker_independent(out)
    return out


def check_speaker_independent(manifest: pd.DataFrame) -> None:
    """Raise SerError if any speaker appears in more than one split, or a split is empty."""
    bad_values = set(manifest["split"].unique()) - set(SPLITS)
    if bad_values:
        raise SerError(
            f"manifest has unknown split values {sorted(map(str, bad_values))}; use {SPLITS}"
        )
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
    missing = [s for s in SPLITS if not (manifest["split"] == s).any()]
    if missing:
        raise SerError(
            f"split(s) {missing} have no utterances; give each split at least one speaker"
        )
