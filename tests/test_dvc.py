"""`dvc repro` runs the real pipeline end to end in a Git copy of the project, a second
`dvc repro` with nothing changed runs no stage, `dvc exp run` records an experiment whose
metrics `dvc exp show` reads, and a clone that pulls from a DVC remote has nothing to run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from ser.data.splits import check_speaker_independent

# The files of the project that a clone has and the pipeline reads.
PROJECT_FILES = (
    "dvc.yaml",
    "conf",
    "src",
    ".gitignore",
    ".dvcignore",
    ".dvc/config",
    ".dvc/.gitignore",
)
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


def experiments(shown: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every experiment's data in `dvc exp show --json` output, over all baselines."""
    found = []
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            found += [rev["data"] for rev in exp["revs"] if rev.get("data")]
    return found


@pytest.mark.slow
def test_dvc_repro_experiments_and_a_remote(
    tmp_path: Path, data_dir: Path, python: str, repo_root: Path, cli, small_corpus: list[str]
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for item in PROJECT_FILES:
        src = repo_root / item
        (project / item).parent.mkdir(parents=True, exist_ok=True)
        copy = shutil.copytree if src.is_dir() else shutil.copy
        copy(src, project / item)
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    # The small corpus (the stages take `dataset=${dataset}` as it is) and a short training.
    params.update(dataset=" ".join(["synthetic", *small_corpus]), model="cnn", max_epochs=2)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    # Reuse the session's generated corpus instead of synthesising it again.
    (data_dir / "synthetic").mkdir(exist_ok=True)
    (project / "data").mkdir()
    (project / "data" / "synthetic").symlink_to(data_dir / "synthetic")
    dvc = str(Path(python).with_name("dvc"))
    env = {"DVC_NO_ANALYTICS": "1", "PATH": f"{Path(python).parent}:/usr/bin:/bin", **GIT_IDENTITY}

    def run(*args: str, cwd: Path = project) -> str:
        result = cli(list(args), cwd=cwd, env=env)
        assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        return result.stdout

    run("git", "init", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "project")

    first = run(dvc, "repro")
    for stage in ("prepare", "features", "train", "evaluate"):
        assert f"Running stage '{stage}'" in first
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
    assert "test/uar" in run(dvc, "metrics", "show", "--json")
    # Git sees the lock file, the metrics and the plots (DVC's cache has the rest).
    changed = {line[3:] for line in run("git", "status", "--porcelain", "-uall").splitlines()}
    assert {"dvc.lock", "reports/metrics.json", "reports/predictions.csv"} <= changed
    assert not any(path.startswith(("data/", "models/")) for path in changed), changed

    second = run(dvc, "repro")
    assert "Running stage" not in second and "up to date" in second

    # A DVC remote (a local folder here, S3 or SSH on a cluster); a clone pulls, runs nothing.
    run(dvc, "remote", "add", "-d", "store", str(tmp_path / "remote"))
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "dvc repro")
    run(dvc, "push")
    clone = tmp_path / "clone"
    run("git", "clone", "-q", str(project), str(clone), cwd=tmp_path)
    run(dvc, "pull", cwd=clone)
    assert (clone / "models/model.ckpt").read_bytes() == (
        project / "models/model.ckpt"
    ).read_bytes()
    pulled = run(dvc, "repro", cwd=clone)
    assert "Running stage" not in pulled and "up to date" in pulled

    # An experiment: `dvc exp run` retrains and re-evaluates, and commits its metrics.
    exp = run(dvc, "exp", "run", "-S", "model=mlp")
    assert "Running stage 'train'" in exp and "Running stage 'features'" not in exp
    shown = json.loads(run(dvc, "exp", "show", "--json"))
    baseline = next(b["data"] for b in shown if b["rev"] not in ("workspace",))
    baseline_metrics = baseline["metrics"]["reports/metrics.json"]["data"]
    assert baseline_metrics["test/uar"] == pytest.approx(metrics["test/uar"])
    (mlp,) = experiments(shown)
    assert mlp["params"]["params.yaml"]["data"]["model"] == "mlp"
    uar = mlp["metrics"]["reports/metrics.json"]["data"]["test/uar"]
    assert uar == pytest.approx(
        json.loads((project / "reports/metrics.json").read_text())["test/uar"]
    )
