"""A user's own corpus: the commands of the README and the docs run as written on a generated
corpus, and the label mistakes a newcomer makes, each one error line from the training entry
point."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from mlflow.tracking import MlflowClient

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEAKERS = ["ann", "bob", "cid", "dee"]
LABELS = ["calm", "tense"]


def readme_commands(containing: str) -> list[list[str]]:
    """The bash-block commands of the README and the docs (docs/*.md) that contain
    `containing`, split as a shell would (continuation lines joined, comments dropped), each
    command once however many pages show it."""
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    blocks = [b for p in pages for b in re.findall(r"```bash\n(.*?)```", p.read_text(), re.S)]
    commands: list[list[str]] = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and containing in line and words not in commands:
                commands.append(words)
    return commands


@pytest.fixture
def own_corpus(tmp_path: Path) -> Path:
    """my_audio/<label>/<speaker>_<n>.wav (4 speakers x 2 labels x 3 files) and my_table.csv
    listing the same files, as the README's examples expect them."""
    rng = np.random.default_rng(0)
    rows = []
    for label, base in zip(LABELS, (150.0, 260.0), strict=True):
        for s, speaker in enumerate(SPEAKERS):
            for n in range(3):
                t = np.arange(16000) / 16000
                f0 = base * (1 + 0.05 * s) * (1 + 0.02 * n)
                wave = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.normal(size=t.size)
                path = tmp_path / "my_audio" / label / f"{speaker}_{n}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, wave, 16000)
                rows.append(
                    {"path": str(path.relative_to(tmp_path)), "label": label, "speaker": speaker}
                )
    pd.DataFrame(rows).to_csv(tmp_path / "my_table.csv", index=False)
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["dataset=folder", "dataset=csv"])
def test_readme_own_corpus_commands_run_as_written(dataset: str, own_corpus: Path, cli) -> None:
    commands = readme_commands(f"python train.py {dataset}")
    assert commands, f"neither the README nor the docs show a `python train.py {dataset}` command"
    for words in commands:
        assert words[:2] == ["python", "train.py"]
        args = [sys.executable, str(REPO_ROOT / "train.py"), *words[2:]]
        # As written, plus what keeps the test short and its outputs in the temporary folder.
        args += [
            "trainer.max_epochs=1",
            "callbacks.progress_bar=null",
            f"paths.root_dir={own_corpus}",
        ]
        result = cli(args, cwd=own_corpus, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{own_corpus / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(f"ser-{dataset.split('=')[1]}")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["data/train_utterances"] > 0


# The docs' folder corpus (docs/data.md), its root relative to the working directory.
FOLDER = [
    "dataset=folder",
    "dataset.loader.root=my_audio",
    'dataset.loader.speaker_pattern="^(\\w+?)_"',
]


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ([], "dataset.labels is not set; dataset 'folder' has the labels [calm,tense]"),
        (
            ["dataset.labels=[Calm,tense]"],
            "dataset.labels names ['Calm'], which are not in the corpus; dataset 'folder' has "
            "the labels [calm,tense] (its label folders' names, lower-cased)",
        ),
    ],
)
def test_folder_labels_mistakes_are_one_line_naming_the_corpus_labels(
    own_corpus: Path,
    make_cfg,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    overrides: list[str],
    named: str,
) -> None:
    from ser.train import main

    monkeypatch.chdir(own_corpus)
    with pytest.raises(SystemExit) as exit_info:
        main(make_cfg([*FOLDER, *overrides]))
    assert exit_info.value.code == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert line.startswith("error: ") and named in line


def test_label_folders_left_out_are_counted(
    own_corpus: Path, make_cfg, caplog: pytest.LogCaptureFixture
) -> None:
    from ser.data.manifest import build_manifest

    cfg = make_cfg(
        [
            "dataset=folder",
            f"dataset.loader.root={own_corpus / 'my_audio'}",
            'dataset.loader.speaker_pattern="^(\\w+?)_"',
            "dataset.labels=[calm]",
        ]
    )
    manifest = build_manifest(cfg)
    assert set(manifest["label"]) == {"calm"}
    assert "left out 12 utterances of labels not in dataset.labels (tense: 12)" in caplog.text


@pytest.mark.slow
def test_readme_tess_command_runs_as_written_on_a_generated_tess(tmp_path: Path, cli) -> None:
    # TESS's layout and shape (two actresses, seven emotions), generated: each actress is
    # tested once by a model that never heard her.
    emotions = ["neutral", "happy", "sad", "angry", "fear", "disgust", "ps"]
    rng = np.random.default_rng(1)
    for s, speaker in enumerate(["OAF", "YAF"]):
        for e, emotion in enumerate(emotions):
            for word in ("back", "bar", "base", "bath"):
                t = np.arange(12000) / 16000
                f0 = 140.0 * (1 + 0.3 * s) * (1 + 0.08 * e)
                wave = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.normal(size=t.size)
                path = (
                    tmp_path / "tess" / f"{speaker}_{emotion}" / f"{speaker}_{word}_{emotion}.wav"
                )
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, wave, 16000)
    (words,) = readme_commands("python train.py dataset=tess")
    args = [sys.executable, str(REPO_ROOT / "train.py"), *words[2:]]
    args += ["trainer.max_epochs=1", "callbacks.progress_bar=null", f"paths.root_dir={tmp_path}"]
    result = cli(args, cwd=tmp_path, env={"TESS_ROOT": str(tmp_path / "tess")}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ser-tess").experiment_id])
    assert len(runs) == 3  # the parent and one fold per actress
    assert {r.data.tags["model_selection"] for r in runs} == {"speaker_dependent"}
    assert sorted(r.data.tags.get("fold", "") for r in runs) == ["", "0", "1"]
