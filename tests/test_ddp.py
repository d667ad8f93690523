"""Distributed data parallel for real: two CPU processes (gloo) through the real CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from sklearn.metrics import balanced_accuracy_score

from ser.data.datamodule import leaves_one_behind
from ser.data.datasets import ShardSampler
from ser.models.module import load_checkpoint
from ser.train import build_datamodule

# One test speaker with 3 labels x 3 utterances: an odd test split of 9, which PyTorch's
# DistributedSampler would pad with a repeat to share it between two processes.
ODD_TEST_SPLIT = [
    "dataset.labels=[neutral,happy,sad]",
    "data.max_per_speaker_label=3",
    "protocol.test_speakers=[spk00]",
    "protocol.val_speakers=[spk01]",
]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["lightning", "torchrun"])
def test_two_process_cpu_ddp_run_scores_every_test_utterance_once(
    launcher: str, tmp_path: Path, cli, train_args, make_cfg
) -> None:
    checkpoint = tmp_path / "ddp.ckpt"
    args = train_args(
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=2",
        f"save_checkpoint={checkpoint}",
        *ODD_TEST_SPLIT,
    )
    if launcher == "torchrun":  # two processes started by torchrun, not by Lightning
        torchrun = str(Path(sys.executable).with_name("torchrun"))
        args = [torchrun, "--standalone", "--nproc-per-node=2", *args[1:]]
    result = cli(args, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "SyncBatchNorm" not in result.stderr  # ignored on CPU, not a crash
    assert "Traceback" not in result.stderr

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]
    (run,) = client.search_runs([experiment.experiment_id])  # one run for two processes
    assert run.info.status == "FINISHED"
    test_size = int(run.data.metrics["data/test_utterances"])
    assert test_size % 2 == 1

    artifacts = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "dl")))
    predictions = pd.read_csv(artifacts / "predictions.csv")
    assert len(predictions) == test_size  # every test utterance once, no padded repeat
    recomputed = balanced_accuracy_score(predictions["actual"], predictions["predicted"])
    assert run.data.metrics["test/uar"] == pytest.approx(recomputed, abs=1e-6)
    assert len(client.list_artifacts(run.info.run_id, "checkpoints")) == 1

    # The same checkpoint scored in one process gives the same predictions, in the same order.
    model, _ = load_checkpoint(checkpoint)
    cfg = make_cfg(ODD_TEST_SPLIT)
    datamodule = build_datamodule(cfg)
    preds = []
    with torch.no_grad():
        for x, lengths, _ in datamodule.test_dataloader():
            preds += model(x, lengths).argmax(-1).tolist()
    assert [model.class_names[p] for p in preds] == predictions["predicted"].tolist()
    actual = [datamodule.labels[t] for t in datamodule.targets("test")]
    assert actual == predictions["actual"].tolist()


@pytest.mark.parametrize(("size", "processes"), [(9, 2), (10, 3), (1, 1), (4, 4)])
def test_shards_cover_the_dataset_once_in_order(size: int, processes: int) -> None:
    dataset = list(range(size))
    shards = [list(ShardSampler(dataset, processes, rank)) for rank in range(processes)]
    assert [i for shard in shards for i in shard] == dataset
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.parametrize(
    ("size", "batch_size", "processes", "expected"),
    [
        (33, 32, 1, True),
        (32, 32, 1, False),
        (34, 32, 1, False),
        (65, 32, 2, True),
        (1, 32, 1, False),
    ],
)
def test_a_last_batch_of_one_utterance_is_dropped(
    size: int, batch_size: int, processes: int, expected: bool
) -> None:
    assert leaves_one_behind(size, batch_size, processes) is expected
