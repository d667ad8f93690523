"""`dvc repro` runs the real pipeline end to end on a copy of the project, and a second
`dvc repro` with nothing changed runs no stage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from ser.data.splits import check_speaker_independent


@pytest.mark.slow
def test_dvc_repro_end_to_end_and_idempotent(
    tmp_path: Path, data_dir: Path, python: str, repo_root: Path, cli
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for item in ("dvc.yaml", "conf", "src"):
        src = repo_root / item
        copy = shutil.copytree if src.is_dir() else shutil.copy
        copy(src, project / item)
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params.update(model="mlp", max_epochs=2)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    # Reuse the session's generated corpus instead of synthesising it again.
    (data_dir / "synthetic").mkdir(exist_ok=True)
    (project / "data").mkdir()
    (project / "data" / "synthetic").symlink_to(data_dir / "synthetic")
    dvc = str(Path(python).with_name("dvc"))
    env = {"DVC_NO_ANALYTICS": "1", "PATH": f"{Path(python).parent}:/usr/bin:/bin"}
    assert cli([dvc, "init", "--no-scm", "-q"], cwd=project, env=env).returncode == 0

    first = cli([dvc, "repro"], cwd=project, env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for stage in ("prepare", "features", "train", "evaluate"):
        assert f"Running stage '{stage}'" in first.stdout

    manifest = pd.read_csv(project / "data/prepared/manifest.csv", dtype={"speaker": str})
    check_speaker_independent(manifest)
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert set(metrics) == {"test/uar", "test/wa", "test/f1"}
    predictions = pd.read_csv(project / "reports/predictions.csv")
    assert len(predictions) == (manifest["split"] == "test").sum()
    # the evaluate stage's scores are those of its predictions
    actual, predicted = predictions["actual"], predictions["predicted"]
    assert metrics["test/uar"] == pytest.approx(balanced_accuracy_score(actual, predicted))
    assert metrics["test/wa"] == pytest.approx(accuracy_score(actual, predicted))
    assert (project / "models/model.ckpt").is_file()
    shown = cli([dvc, "metrics", "show", "--json"], cwd=project, env=env)
    assert "test/uar" in shown.stdout

    second = cli([dvc, "repro"], cwd=project, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Running stage" not in second.stdout
    assert "up to date" in second.stdout
