"""`ser` as a user installs it into another project: a wheel (not an editable install) in a
fresh virtual environment, run from a folder that is not this repository. Its configs come from
the package, its runs go to that folder's mlruns/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

REPO_ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SER_ROOT")}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the built wheel of ser. Its dependencies are this environment's
    (a .pth line adds their folder: no download), but not this environment's editable ser,
    whose own .pth files are not read from a folder added that way."""
    root = tmp_path_factory.mktemp("wheel")
    # Built from a copy of what the sdist holds, so that the build leaves the clone untouched.
    source = root / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO_ROOT / "src", source / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    dist = root / "dist"
    run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(dist), str(source)],
        cwd=root,
    )  # fmt: skip
    (wheel,) = dist.glob("ser-*.whl")
    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root)
    python = venv / "bin" / "python"
    run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--no-deps", "--no-index", str(wheel)],
        cwd=root,
    )  # fmt: skip
    site = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], root)
    (Path(site.stdout.strip()) / "ser_test_deps.pth").write_text(
        sysconfig.get_path("purelib") + "\n"
    )
    return venv


def test_an_installed_wheel_trains_and_predicts_outside_the_repository(
    wheel_env: Path, tmp_path: Path
) -> None:
    project = tmp_path / "my_project"
    project.mkdir()
    bin_dir = wheel_env / "bin"
    # The sweeper plugins (ser_basic, the default; ser_optuna for hparams_search=...) travel
    # in the wheel too.
    where = run(
        [str(bin_dir / "python"), "-c",
         "import ser, ser.project; print(ser.__file__); print(ser.project.CONFIG_DIR); "
         "import hydra_plugins.ser_optuna_sweeper.sweeper as s; print(s.__file__); "
         "import hydra_plugins.ser_basic_sweeper.sweeper as b; print(b.__file__)"],
        cwd=project,
    ).stdout.split()  # fmt: skip
    assert all(Path(p).is_relative_to(wheel_env) for p in where), where  # not the clone's src/
    assert (Path(where[1]) / "train.yaml").is_file()

    train = run(
        [str(bin_dir / "ser-train"), "debug=fast", "callbacks.progress_bar=null",
         "dataset.loader.utterances_per_emotion=4"],
        cwd=project,
    )  # fmt: skip
    assert "FINISHED" in train.stdout
    client = MlflowClient(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]
    (finished,) = client.search_runs([experiment.experiment_id])
    assert finished.info.status == "FINISHED"
    assert not (REPO_ROOT / "src" / "ser" / "mlruns").exists()

    audio = sorted((project / "data").rglob("*.wav"))[0]
    clip = tmp_path / "elsewhere" / "clip.wav"
    clip.parent.mkdir()
    shutil.copy(audio, clip)
    # No --model: the newest finished run of this project's store.
    predict = run([str(bin_dir / "ser-predict"), "--format", "csv", str(clip)], cwd=project)
    assert finished.info.run_id in predict.stderr
    header, row = predict.stdout.strip().splitlines()
    assert header.startswith("source,label")
    assert row.split(",")[1] in {"neutral", "happy", "sad", "angry"}
