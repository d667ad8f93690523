"""Label maps put every corpus onto a common label set: merges, then filtering."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from ser.data.manifest import build_folds, build_manifest
from ser.project import CONFIG_DIR


@pytest.mark.parametrize(
    "option", sorted(p.stem for p in (Path(CONFIG_DIR) / "label_map").glob("*.yaml"))
)
def test_label_maps_compose(make_cfg: Callable[..., DictConfig], option: str) -> None:
    cfg = make_cfg([f"label_map={option}"])
    assert "neutral" in cfg.dataset.labels
    if option == "native":
        assert cfg.dataset.get("label_merge") is None


def test_four_classes_merge_excited_and_drop_the_rest(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    table = build_manifest(make_cfg())[["path", "speaker", "label"]]
    happy = table.index[table["label"] == "happy"]
    table.loc[happy[::2], "label"] = "excited"
    table.loc[table.index[table["label"] == "sad"][:3], "label"] = "calm"
    table.to_csv(tmp_path / "mine.csv", index=False)
    cfg = make_cfg(
        ["dataset=csv", f"dataset.loader.path={tmp_path / 'mine.csv'}", "label_map=four"]
    )
    (manifest,) = build_folds(cfg)
    assert set(manifest["label"]) == {"neutral", "happy", "sad", "angry"}
    assert (manifest["label"] == "happy").sum() == len(happy)  # excited counted as happy
    assert len(manifest) == len(table) - 3  # calm is outside the set
