"""End to end: every net trains, a default run lands in MLflow with its metrics and artifacts,
crashes end FAILED, the entry point reports bad input in one line, sweeps group their runs.

The real `python train.py` runs where the launcher itself is under test (its output, Hydra
multirun sweeps, SIGTERM); everything else calls the entry point in process."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import soundfile as sf
import torch
import yaml
from hydra.utils import instantiate
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from ser.data.manifest import build_manifest, load_folds, write_manifest
from ser.errors import SerError, find_user_error
from ser.models import load_checkpoint
from ser.train import build_datamodule, build_model, train, train_folds
from ser.train import main as train_main

ComposeFn = Callable[..., DictConfig]

NETS = ["mlp", "cnn", "lstm", "cnn_lstm"]


def store(root: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{root.resolve()}/mlruns/mlflow.db")


def runs(client: MlflowClient, experiment: str = "ser-synthetic") -> list:
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


@pytest.mark.parametrize("net", NETS)
def test_fast_dev_run(make_cfg: ComposeFn, net: str) -> None:
    metrics = train(make_cfg([f"model={net}", "debug=fdr", "logger=csv"]))
    assert np.isfinite(metrics["train/loss"])
    # the validation loop ran too: its loss and every score were logged
    assert np.isfinite(metrics["val/loss"])
    assert {"val/uar", "val/wa", "val/f1", "val/uar_best"} <= set(metrics)


@pytest.mark.parametrize("net", NETS)
def test_a_training_split_one_more_than_a_batch_trains(make_cfg: ComposeFn, net: str) -> None:
    # A last batch of one utterance is what batch norm cannot train on (the MLP's BatchNorm1d
    # raised "Expected more than 1 value per channel"); any split of size 1 mod batch size.
    cfg = make_cfg([f"model={net}", "logger=csv", "trainer.max_epochs=1", "test=false"])
    size = build_datamodule(cfg).split_size("train")
    cfg.data.batch_size = size - 1
    datamodule = build_datamodule(cfg)
    assert len(datamodule.train_dataloader()) == 1  # the lone utterance sits this epoch out
    metrics = train(cfg)
    assert np.isfinite(metrics["train/loss"])


def test_prefix_loss_trains_a_streaming_classifier_through_the_entry_point(
    make_cfg: ComposeFn,
) -> None:
    streaming = ["model=cnn_lstm", "model.causal=true", "model.prefix_loss_weight=0.5"]
    cfg = make_cfg(streaming)
    assert build_model(cfg, build_datamodule(cfg)).prefix_loss_weight == 0.5
    metrics = train(make_cfg([*streaming, "debug=fdr", "logger=csv"]))
    assert np.isfinite(metrics["train/loss"])
    with pytest.raises(Exception) as raised:  # Hydra wraps it; the CLI prints the SerError
        train(make_cfg(["model=cnn_lstm", "model.prefix_loss_weight=0.5", "debug=fdr"]))
    assert "model.causal=true" in str(find_user_error(raised.value))


@pytest.mark.parametrize("net", NETS)
def test_overfits_a_tiny_batch(make_cfg: ComposeFn, net: str) -> None:
    torch.manual_seed(0)
    cfg = make_cfg([f"model={net}", "data.batch_size=8", "model.net.dropout=0.0"])
    datamodule = build_datamodule(cfg)
    model = build_model(cfg, datamodule)
    x, lengths, y = next(iter(datamodule.train_dataloader()))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss() -> torch.Tensor:
        return torch.nn.functional.cross_entropy(model(x, lengths), y)

    model.train()
    start = loss().item()
    for _ in range(60):
        optimizer.zero_grad()
        step_loss = loss()
        step_loss.backward()
        optimizer.step()
    assert step_loss.item() < 0.2 * start, (start, step_loss.item())


def test_default_run_is_tracked_in_mlflow(make_cfg: ComposeFn, tmp_path: Path) -> None:
    cfg = make_cfg(["trainer.max_epochs=3"])
    metrics = train(cfg)
    (run,) = runs(store(tmp_path))
    client = store(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "cnn_lstm-logmel-synthetic-holdout"

    # every resolved config value is a param
    assert run.data.params["model/net/_target_"] == "ser.models.nets.cnn_lstm_net"
    assert run.data.params["features/extractor/n_mels"] == str(cfg.features.extractor.n_mels)
    assert len(run.data.params) >= 60

    # per-epoch curves and the test scores
    for key in ("train/loss", "train/uar", "val/loss", "val/uar"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 3, key
    assert metrics["val/uar_best"] == max(
        m.value for m in client.get_metric_history(run.info.run_id, "val/uar")
    )

    # artifacts, read back from the store
    local = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "dl")))
    assert (local / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert (local / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    report = (local / "classification_report.txt").read_text()
    assert all(label in report for label in cfg.dataset.labels)
    assert OmegaConf.load(local / "config.yaml").model.name == "cnn_lstm"
    predictions = pd.read_csv(local / "predictions.csv", dtype={"speaker": str})
    recomputed = balanced_accuracy_score(predictions.actual, predictions.predicted)
    assert run.data.metrics["test/uar"] == pytest.approx(recomputed, abs=1e-6)
    assert json.loads((local / "metrics.json").read_text())["test/uar"] == pytest.approx(recomputed)
    # WA and macro-F1, logged by the module's metrics, are those of the predictions too
    accuracy = accuracy_score(predictions.actual, predictions.predicted)
    assert run.data.metrics["test/wa"] == pytest.approx(accuracy, abs=1e-6)
    macro_f1 = f1_score(
        predictions.actual,
        predictions.predicted,
        labels=list(cfg.dataset.labels),
        average="macro",
        zero_division=0,
    )
    assert run.data.metrics["test/f1"] == pytest.approx(macro_f1, abs=1e-6)
    # each row traces to its file and speaker, with the posteriors behind the prediction
    test_rows = build_datamodule(cfg).split_utterances("test")
    assert predictions.path.tolist() == test_rows.path.tolist()
    assert predictions.speaker.tolist() == test_rows.speaker.astype(str).tolist()
    assert predictions.actual.tolist() == test_rows.label.tolist()
    posteriors = predictions[[f"p_{label}" for label in cfg.dataset.labels]].to_numpy()
    np.testing.assert_allclose(posteriors.sum(axis=1), 1.0, atol=1e-4)
    labels = np.array(cfg.dataset.labels)
    assert (labels[posteriors.argmax(axis=1)] == predictions.predicted.to_numpy()).all()

    # the best checkpoint rebuilds itself
    (ckpt,) = list((local / "checkpoints").glob("*.ckpt"))
    model, stored = load_checkpoint(ckpt)
    assert model.class_names == list(cfg.dataset.labels)
    assert stored["features"]["name"] == "logmel"

    # provenance tags
    assert len(run.data.tags["dataset_fingerprint"]) == 16
    assert run.data.tags["git_commit"]
    assert run.data.metrics["data/test_utterances"] == len(predictions) > 0


def test_crash_marks_the_run_failed(make_cfg: ComposeFn, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="learning rate"):
        train(make_cfg(["model.optimizer.lr=-1", "trainer.max_epochs=1"]))
    (run,) = runs(store(tmp_path))
    assert run.info.status == "FAILED"


def test_cli_unknown_option_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Hydra's own launcher, in process: main() parses sys.argv as `python train.py ...` does.
    monkeypatch.setattr(sys, "argv", ["train.py", "model=transformer"])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        train_main()
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert "Could not find 'model/transformer'" in err
    assert "cnn_lstm" in err  # lists the valid choices
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("data.batch_size=-4", "data.batch_size=-4 is not valid: it takes a whole number >= 1"),
        ("data.batch_size=0", "data.batch_size=0 is not valid"),
        ("data.batch_size=abc", "data.batch_size='abc' is not valid"),
        ("model.optimizer.lr=-1", "model.optimizer.lr=-1 is not valid: it takes a number > 0"),
        ("trainer.max_epochs=0", "would test an untrained model"),
    ],
)
def test_cli_invalid_number_is_one_line_before_any_work(
    make_cfg: ComposeFn,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    override: str,
    named: str,
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train_main(make_cfg([override]))
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    (line,) = [x for x in err.splitlines() if x.strip()]
    assert line.startswith("error: ") and named in line
    assert not (tmp_path / "mlruns").exists()  # no run was started, none left FAILED


@pytest.mark.parametrize(
    ("overrides", "key", "where"),
    [
        (["features=ssl"], "features.extractor.model", "conf/features/ssl.yaml"),
        (
            ["model=ssl_finetune", "features=waveform"],
            "model.net.model",
            "conf/model/ssl_finetune.yaml",
        ),
    ],
)
def test_a_required_key_left_unset_is_one_line_before_any_work(
    make_cfg: ComposeFn,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    overrides: list[str],
    key: str,
    where: str,
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train_main(make_cfg(overrides))
    assert exit_info.value.code == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert line == f"error: {key} has no default; add {key}=<value> to the command (see {where})"
    assert not (tmp_path / "mlruns").exists()


def test_a_missing_optimized_metric_suggests_validation_metrics_only() -> None:
    from ser.train import metric_to_optimise

    metrics = {"val/uar": 0.5, "val/uar_best": 0.6, "test/uar": 0.4, "train/loss": 1.0}
    assert metric_to_optimise("val/uar_best", metrics) == 0.6
    assert metric_to_optimise(None, metrics) is None
    with pytest.raises(SerError, match=r"choose one of \['val/uar', 'val/uar_best'\]$"):
        metric_to_optimise("val/acc", metrics)


@pytest.mark.slow
def test_cli_output_is_quiet_and_its_bar_fits_80_columns(
    tmp_path: Path, data_dir: Path, small_corpus: list[str], cli
) -> None:
    args = [
        sys.executable,
        str(Path(__file__).resolve().parents[1] / "train.py"),
        "debug=fast",
        "trainer.max_epochs=2",
        f"paths.root_dir={tmp_path}",
        f"paths.data_dir={data_dir}",
        *small_corpus,
    ]
    result = cli(args, cwd=tmp_path, env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    for noise in ("💡 Tip", "Total FLOPs", "LeafSpec", "v_num"):
        assert noise not in output, noise
    assert "trainable parameters" in result.stdout
    bar = [line for line in result.stdout.splitlines() if "Epoch" in line or "val/uar:" in line]
    assert bar and all(len(line.rstrip()) <= 80 for line in bar), bar
    # every metric on the bar is whole on its line, its value beside it, never folded
    for name in ("val/uar", "val/uar_best", "train/loss"):
        assert re.search(rf"(^|\s){re.escape(name)}: \d\.\d{{3}}", result.stdout), name


def test_cli_overlapping_manifest_is_refused_before_any_run(
    make_cfg: ComposeFn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [(f"/x/{i}.wav", f"s{i % 4}", "happy", "train") for i in range(8)]
    rows.append(("/x/leak.wav", "s1", "happy", "test"))
    manifest = tmp_path / "bad.csv"
    pd.DataFrame(rows, columns=["path", "speaker", "label", "split"]).to_csv(manifest, index=False)
    with pytest.raises(SystemExit) as exit_info:
        train_main(make_cfg([f"data.manifest={manifest}"]))
    assert exit_info.value.code == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert line.startswith("error:") and "speaker overlap" in line and "s1" in line
    assert not (tmp_path / "mlruns" / "mlflow.db").exists() or not runs(store(tmp_path))


@pytest.mark.slow
def test_sweep_puts_its_runs_in_one_experiment(tmp_path: Path, cli, train_args) -> None:
    # Through submitit's local executor: each job in its own process, as on SLURM.
    args = train_args("-m", "hydra/launcher=submitit_local", "model=mlp,cnn", "debug=fast")
    result = cli(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "all 2 jobs completed" in result.stdout
    found = runs(store(tmp_path))
    assert len(found) == 2
    assert {r.data.tags["model"] for r in found} == {"mlp", "cnn"}
    assert len({r.data.tags["sweep_id"] for r in found}) == 1
    assert all(r.info.status == "FINISHED" for r in found)
    # Each job's output is in its own submitit log (a process of its own).
    job_logs = list(tmp_path.glob("logs/*/multiruns/*/.submitit/*/*_log.out"))
    assert len(job_logs) == 2
    assert all("mlflow ui --backend-store-uri sqlite:///" in p.read_text() for p in job_logs)


@pytest.mark.slow
def test_sigterm_during_training_ends_the_run_killed(tmp_path: Path, train_args) -> None:
    args = train_args("trainer.max_epochs=500", "callbacks.early_stopping=null")
    (tmp_path / "mlruns").mkdir()
    client = store(tmp_path)
    client.search_experiments()  # create the schema now: two processes migrating at once clash
    log_file = tmp_path / "train.log"
    with open(log_file, "w") as log:
        process = subprocess.Popen(args, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(1)
            found = runs(client)
            if found and "val/uar" in found[0].data.metrics:
                break
        else:
            pytest.fail(
                f"training never logged a validation epoch:\n{log_file.read_text()[-3000:]}"
            )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) != 0
    finally:
        process.kill()
    (run,) = runs(store(tmp_path))
    assert run.info.status == "KILLED", log_file.read_text()[-3000:]


def test_cli_missing_dataset_root_is_one_clear_error(
    make_cfg: ComposeFn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train_main(make_cfg(["dataset=ravdess", f"dataset.loader.root={tmp_path / 'no_such_dir'}"]))
    assert exit_info.value.code == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert line.startswith("error:") and "no_such_dir" in line and "dataset.loader.root" in line
    assert not (tmp_path / "mlruns").exists()


def test_unusable_files_are_skipped_reported_and_logged(
    make_cfg: ComposeFn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = build_manifest(make_cfg())
    speaker = manifest.query("split == 'train'").speaker.iloc[0]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    extra = pd.DataFrame(
        [(str(p), speaker, "happy", "train") for p in (broken, silent)],
        columns=["path", "speaker", "label", "split"],
    )
    path = write_manifest(pd.concat([manifest, extra], ignore_index=True), tmp_path / "m.csv")
    train(make_cfg([f"data.manifest={path}", "trainer.max_epochs=1"]))

    (run,) = runs(store(tmp_path))
    assert run.info.status == "FINISHED"
    assert run.data.metrics["data/skipped_files"] == 2
    local = Path(store(tmp_path).download_artifacts(run.info.run_id, "", str(tmp_path / "dl")))
    skipped = (local / "skipped_files.tsv").read_text()
    assert "broken.wav\tcannot decode" in skipped
    assert "silent.wav\taudio is silent" in skipped
    assert "Skipped 2 unusable audio files" in capsys.readouterr().out


def test_window_training_cuts_train_utterances_only(make_cfg: ComposeFn) -> None:
    cfg = make_cfg(["data.window_s=0.5", "data.window_hop_s=0.25"])
    datamodule = build_datamodule(cfg)
    whole = build_datamodule(make_cfg())
    windows = datamodule.dataset("train")
    assert len(windows) > 2 * whole.split_size("train")  # 1.5-4 s utterances, 0.25 s hop
    frames_per_window = round(0.5 * 16000 / datamodule.extractor.hop_length)
    assert max(len(windows[i][0]) for i in range(len(windows))) == frames_per_window
    assert len(datamodule.dataset("test")) == whole.split_size("test")
    run_cfg = make_cfg(["data.window_s=0.5", "data.window_hop_s=0.25", "trainer.max_epochs=1"])
    metrics = train(run_cfg)
    # the test scores whole utterances, each once
    predictions = pd.read_csv(Path(run_cfg.paths.output_dir) / "artifacts" / "predictions.csv")
    assert sorted(predictions.path) == sorted(whole.split_utterances("test").path)
    recomputed = balanced_accuracy_score(predictions.actual, predictions.predicted)
    assert metrics["test/uar"] == pytest.approx(recomputed, abs=1e-6)


def test_random_crop_cuts_random_pieces_of_train_utterances_only(make_cfg: ComposeFn) -> None:
    datamodule = build_datamodule(make_cfg(["data.random_crop_s=0.3"]))
    crops, whole = datamodule.dataset("train"), datamodule.split_features("train")
    min_frames = round(0.3 * 16000 / datamodule.extractor.hop_length)
    torch.manual_seed(0)
    cut = 0
    for i in range(len(crops)):
        piece, source = crops[i][0].numpy(), whole[i]
        assert min_frames <= len(piece) <= len(source)
        cut += len(piece) < len(source)
        # a contiguous piece of its own utterance
        starts = [s for s in range(len(source) - len(piece) + 1) if (source[s] == piece[0]).all()]
        assert any(np.array_equal(source[s : s + len(piece)], piece) for s in starts)
    assert cut > 0.8 * len(crops)
    second = [len(crops[i][0]) for i in range(len(crops))]  # fresh pieces on every draw
    assert second != [len(crops[i][0]) for i in range(len(crops))]
    test = datamodule.dataset("test")
    assert [len(test[i][0]) for i in range(len(test))] == [
        len(f) for f in datamodule.split_features("test")
    ]
    with pytest.raises(SerError, match="augmentation=none"):
        build_datamodule(make_cfg(["data.random_crop_s=0.3", "augmentation=light"]))


def test_speed_copies_add_cached_faster_and_slower_train_utterances(
    make_cfg: ComposeFn, tmp_path: Path
) -> None:
    # A cache of this test's own: the session's shared one holds other tests' features too.
    cache = f"paths.feature_cache_dir={tmp_path / 'cache'}"
    cfg = make_cfg(["augmentation=speed_copies", "augmentation.speed_copies=[0.8,1.25]", cache])
    datamodule = build_datamodule(cfg)
    plain = build_datamodule(make_cfg([cache]))
    originals, n = plain.split_features("train"), plain.split_size("train")
    train = datamodule.split_features("train")
    assert len(train) == 3 * n and datamodule.targets("train") == plain.targets("train") * 3
    for i in range(n):
        assert np.array_equal(train[i], originals[i])
        # 0.8x speed lasts 1.25x as long, 1.25x speed 0.8x: frame counts follow within a hop
        assert abs(len(train[n + i]) - 1.25 * len(originals[i])) <= 2
        assert abs(len(train[2 * n + i]) - 0.8 * len(originals[i])) <= 2
        assert not np.allclose(train[n + i][: len(originals[i])], originals[i])
    for split in ("val", "test"):  # never copied
        assert datamodule.split_size(split) == plain.split_size(split)
    cached = sorted(Path(cfg.paths.feature_cache_dir).rglob("*.npy"))
    assert len(cached) == len(plain.manifest) + 2 * n  # the copies are cached too
    again = build_datamodule(cfg).split_features("train")
    assert all(np.array_equal(a, b) for a, b in zip(again, train, strict=True))
    assert sorted(Path(cfg.paths.feature_cache_dir).rglob("*.npy")) == cached
    with pytest.raises(SerError, match="waveform=null"):
        build_datamodule(make_cfg(["augmentation=light", "+augmentation.speed_copies=[0.9]"]))
    with pytest.raises(SerError, match=r"speed_copies=\[1.0\]"):
        build_datamodule(make_cfg(["augmentation=speed_copies", "augmentation.speed_copies=[1]"]))


def test_cross_validation_logs_a_parent_with_a_child_per_fold(
    make_cfg: ComposeFn, tmp_path: Path
) -> None:
    cfg = make_cfg(
        ["protocol=kfold_speaker", "protocol.n_folds=3", "model=mlp", "trainer.max_epochs=2"]
    )
    output_dir = cfg.paths.output_dir
    summary = train_folds(cfg)
    assert cfg.paths.output_dir == output_dir  # folds write below it, never change it
    client = store(tmp_path)
    found = runs(client)
    (parent,) = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 3 and len(found) == 4
    assert sorted(r.data.tags["fold"] for r in children) == ["0", "1", "2"]
    assert all(r.info.status == "FINISHED" for r in found)
    fold_uars = [r.data.metrics["test/uar"] for r in children]
    assert parent.data.metrics["test/uar_mean"] == pytest.approx(np.mean(fold_uars))
    assert parent.data.metrics["test/uar_std"] == pytest.approx(np.std(fold_uars))
    assert summary["test/uar"] == pytest.approx(np.mean(fold_uars))
    local = Path(client.download_artifacts(parent.info.run_id, "", str(tmp_path / "dl")))
    assert (local / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    pooled = pd.read_csv(local / "predictions.csv")
    assert len(pooled) == 8 * 4 * 4  # every utterance of the corpus is tested exactly once
    assert len(pd.read_csv(local / "folds.csv")) == 3


def test_speaker_dependent_runs_say_so(make_cfg: ComposeFn, tmp_path: Path) -> None:
    train_folds(make_cfg(["protocol=speaker_dependent", "model=mlp", "trainer.max_epochs=1"]))
    (run,) = runs(store(tmp_path))
    assert run.info.run_name.endswith("speaker_dependent")
    assert run.data.tags["speaker_independent"] == "false"
    assert run.data.tags["model_selection"] == "speaker_dependent"


def test_a_two_speaker_corpus_is_cross_validated_on_unseen_test_speakers(
    make_cfg: ComposeFn, tmp_path: Path
) -> None:
    # TESS's shape: two speakers. Each fold tests one; the other trains and validates on
    # held-out utterances of its own, and the runs say that model selection saw the speaker.
    cfg = make_cfg(
        [
            "dataset.loader.n_speakers=2",
            "protocol=loso",
            "protocol.val_speakers=0",
            "protocol.val_utterances=0.25",
            "model=mlp",
            "trainer.max_epochs=1",
        ]
    )
    summary = train_folds(cfg)
    assert np.isfinite(summary["test/uar"])
    every = runs(store(tmp_path))
    assert len(every) == 3  # the parent and two folds
    for run in every:
        assert run.data.tags["speaker_independent"] == "true"
        assert run.data.tags["model_selection"] == "speaker_dependent"
    folds = pd.read_csv(tmp_path / "output" / "artifacts" / "folds.csv", dtype=str)
    assert sorted(folds["test_speakers"]) == ["spk00", "spk01"]


def test_speaker_norm_standardises_each_speaker_and_is_labelled(
    make_cfg: ComposeFn, tmp_path: Path
) -> None:
    datamodule = build_datamodule(make_cfg(["features.speaker_norm=true"]))
    datamodule.prepare()
    for speaker in datamodule.manifest["speaker"].unique():
        rows = np.flatnonzero(datamodule.manifest["speaker"] == speaker)
        split = datamodule.manifest["split"].iloc[rows[0]]
        index = np.flatnonzero(datamodule.manifest["split"] == split)
        mine = [list(index).index(r) for r in rows]
        frames = np.concatenate([datamodule.split_features(split)[i] for i in mine])
        np.testing.assert_allclose(frames.mean(axis=0), 0.0, atol=1e-3)
        np.testing.assert_allclose(frames.std(axis=0), 1.0, atol=1e-3)
    train(make_cfg(["features.speaker_norm=true", "model=mlp", "trainer.max_epochs=1"]))
    (run,) = runs(store(tmp_path))
    assert run.info.run_name.endswith("-speaker_norm")
    assert run.data.tags["speaker_norm"] == "true"


def test_cross_corpus_tests_on_the_other_corpus_only(make_cfg: ComposeFn, tmp_path: Path) -> None:
    other = [
        "protocol=cross_corpus",
        "dataset@protocol.test_dataset=synthetic",
        "protocol.test_dataset.loader.seed=1",  # a different corpus: other voices
        "protocol.test_dataset.loader.utterances_per_emotion=2",
    ]
    (manifest,) = load_folds(make_cfg(other))
    test = manifest[manifest["split"] == "test"]
    assert len(test) == 8 * 4 * 2 and test["path"].str.contains("seed1").all()
    assert not manifest.loc[manifest["split"] != "test", "path"].str.contains("seed1").any()
    run_cfg = make_cfg([*other, "model=mlp", "trainer.max_epochs=2"])
    metrics = train(run_cfg)
    predictions = pd.read_csv(Path(run_cfg.paths.output_dir) / "artifacts" / "predictions.csv")
    assert sorted(predictions.path) == sorted(test.path)  # the other corpus, all of it
    recomputed = balanced_accuracy_score(predictions.actual, predictions.predicted)
    assert metrics["test/uar"] == pytest.approx(recomputed, abs=1e-6)
    (run,) = runs(store(tmp_path))
    assert run.data.tags["protocol"] == "cross_corpus"
    with pytest.raises(SerError, match=r"set dataset\.labels=\[neutral,happy\]"):
        load_folds(make_cfg([*other, "protocol.test_dataset.labels=[neutral,happy]"]))


def test_onecycle_schedule_spans_the_whole_run(make_cfg: ComposeFn) -> None:
    cfg = make_cfg(["model=mlp", "model/scheduler=onecycle", "trainer.max_epochs=4"])
    datamodule = build_datamodule(cfg)
    model = build_model(cfg, datamodule)
    rates: list[float] = []

    class RecordRate(pl.Callback):
        def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
            rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = instantiate(
        cfg.trainer, logger=False, enable_checkpointing=False, callbacks=[RecordRate()]
    )
    trainer.fit(model, datamodule=datamodule)
    (config,) = trainer.lr_scheduler_configs
    assert isinstance(config.scheduler, torch.optim.lr_scheduler.OneCycleLR)
    # the run length comes from the trainer: one step per batch over all epochs
    assert config.scheduler.total_steps == 4 * len(datamodule.train_dataloader()) == len(rates)
    peak = cfg.model.optimizer.lr  # max_lr interpolates the optimizer's lr
    assert max(rates) == pytest.approx(peak, rel=0.05)
    assert rates[0] == pytest.approx(peak / 25)  # warm-up start
    assert rates[-1] < peak / 25  # annealed below the start by the end of the run


def test_onecycle_length_set_in_the_config_is_kept_and_stepped_per_batch(
    make_cfg: ComposeFn,
) -> None:
    cfg = make_cfg(["model=mlp", "model/scheduler=onecycle", "+model.scheduler.total_steps=1000"])
    datamodule = build_datamodule(cfg)
    trainer = instantiate(cfg.trainer, max_epochs=1, logger=False, enable_checkpointing=False)
    trainer.fit(build_model(cfg, datamodule), datamodule=datamodule)
    (config,) = trainer.lr_scheduler_configs
    assert config.scheduler.total_steps == 1000
    assert config.interval == "step"
    assert config.scheduler.last_epoch == len(datamodule.train_dataloader())


def test_fixed_schedule_tests_the_last_epoch(make_cfg: ComposeFn) -> None:
    cfg = make_cfg(
        [
            "model/scheduler=onecycle",
            "trainer.max_epochs=3",
            "callbacks.early_stopping=null",
            "callbacks.model_checkpoint.monitor=null",
        ]
    )
    train(cfg)
    (checkpoint,) = (Path(cfg.paths.output_dir) / "checkpoints").glob("*.ckpt")
    assert checkpoint.name.startswith("epoch002-")


@pytest.mark.slow
def test_a_failed_job_of_a_submitit_sweep_is_its_failed_run_and_the_sweep_goes_on(
    tmp_path: Path, cli, train_args
) -> None:
    # Two jobs in separate processes (submitit's local executor, SLURM's path without the
    # scheduler); the second crashes in training (AdamW refuses a negative epsilon).
    result = cli(
        train_args(
            "-m", "hydra/launcher=submitit_local", "model=mlp", "debug=fast",
            "+model.optimizer.eps=1e-8,-1.0",
        ),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    found = sorted(runs(store(tmp_path)), key=lambda r: int(r.data.tags["sweep_job"]))
    assert [r.info.status for r in found] == ["FINISHED", "FAILED"]
    assert len({r.data.tags["sweep_id"] for r in found}) == 1
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("Sweep "))
    assert lines[header].endswith("1 of 2 jobs failed")
    assert "job 1 (" in lines[header + 1] and "Invalid epsilon" in lines[header + 1]
    (summary,) = tmp_path.glob("logs/*/multiruns/*/sweep_summary.yaml")
    assert yaml.safe_load(summary.read_text())["failed"] == 1
    assert list(summary.parent.glob(".submitit/*"))  # the jobs ran through submitit
