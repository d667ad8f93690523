"""Distributed data parallel for real: two CPU processes (gloo) through the real CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import free_port
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


def one_run_scored_every_test_utterance_once(tmp_path: Path) -> pd.DataFrame:
    """Assert that the MLflow store in tmp_path holds one FINISHED run whose odd test split was
    scored once per utterance (test/uar recomputed from predictions.csv) and which has one
    checkpoint artifact; return its predictions."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]
    (run,) = client.search_runs([experiment.experiment_id])  # one run for all processes
    assert run.info.status == "FINISHED"
    test_size = int(run.data.metrics["data/test_utterances"])
    assert test_size % 2 == 1

    artifacts = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "dl")))
    predictions = pd.read_csv(artifacts / "predictions.csv")
    assert len(predictions) == test_size  # every test utterance once, no padded repeat
    recomputed = balanced_accuracy_score(predictions["actual"], predictions["predicted"])
    assert run.data.metrics["test/uar"] == pytest.approx(recomputed, abs=1e-6)
    assert len(client.list_artifacts(run.info.run_id, "checkpoints")) == 1
    return predictions


@pytest.mark.slow
def test_two_process_cpu_ddp_run_scores_every_test_utterance_once(
    tmp_path: Path, cli, train_args, make_cfg
) -> None:
    # Lightning starts the second process; torchrun's launch is the two-node test's below.
    checkpoint = tmp_path / "ddp.ckpt"
    args = train_args(
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=2",
        f"save_checkpoint={checkpoint}",
        *ODD_TEST_SPLIT,
    )
    result = cli(args, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "SyncBatchNorm" not in result.stderr  # ignored on CPU, not a crash
    assert "Traceback" not in result.stderr

    predictions = one_run_scored_every_test_utterance_once(tmp_path)

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


@pytest.mark.slow
def test_two_torchrun_nodes_train_one_model_in_one_run(tmp_path: Path, train_args) -> None:
    """Two `torchrun` launchers started apart, as on two nodes of a cluster (one process each,
    c10d rendezvous on 127.0.0.1), in one working directory, as a shared file system gives."""
    port, rdzv_id = free_port(), f"ser-{uuid.uuid4().hex[:8]}"
    torchrun = [
        str(Path(sys.executable).with_name("torchrun")),
        "--nnodes=2",
        "--nproc-per-node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        f"--rdzv-id={rdzv_id}",
        "--local-addr=127.0.0.1",  # else rank 0's node is published by its host name
        "--max-restarts=0",
    ]
    args = train_args(
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "trainer.num_nodes=2",
        "trainer.max_epochs=2",
        f"hydra.run.dir={tmp_path / 'logs' / 'two-nodes'}",  # one job folder, as on SLURM
        *ODD_TEST_SPLIT,
    )
    # LOGLEVEL: torchrun prints its rendezvous (checked below). Gloo's sockets on the loopback
    # interface, not on whatever address the host name resolves to.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LOGLEVEL": "INFO", "GLOO_SOCKET_IFNAME": "lo"}
    env.pop("MLFLOW_TRACKING_URI", None)
    # Variables srun sets for a task of `--nodes=2 --ntasks-per-node=1`, as under the batch
    # script of docs/scaling.md: Lightning takes torchrun's environment before SLURM's.
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "ser-ddp", "SLURM_NNODES": "2",
             "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_LOCALID": "0"}  # fmt: skip
    nodes, logs = [], [tmp_path / f"node{n}.log" for n in range(2)]
    try:
        for n, log in enumerate(logs):
            with log.open("w") as out:  # the child keeps its own handle
                nodes.append(
                    subprocess.Popen(
                        [*torchrun, *args[1:]],
                        cwd=tmp_path,
                        env={**env, **slurm, "SLURM_PROCID": str(n), "SLURM_NODEID": str(n)},
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # a process group: torchrun and its worker
                    )
                )
        deadline = time.monotonic() + 300
        for node in nodes:
            node.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for node in nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait(timeout=30)
    outputs = [log.read_text() for log in logs]
    for node, output in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, output[-6000:]
        assert "Traceback" not in output
    both = "\n".join(outputs)
    # Both nodes joined one rendezvous of 2 processes, and the process group's address is
    # 127.0.0.1, not this machine's host name.
    assert both.count("group_world_size=2") == 2, both[-6000:]
    assert both.count("master_addr=127.0.0.1") == 2, both[-6000:]
    for name in {socket.gethostname(), socket.getfqdn()} - {"localhost"}:
        assert f"master_addr={name}" not in both
    assert sorted(o.count("GLOBAL_RANK: ") for o in outputs) == [1, 1]

    one_run_scored_every_test_utterance_once(tmp_path)
    assert len(list((tmp_path / "logs" / "two-nodes" / "checkpoints").glob("*.ckpt"))) == 1


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
