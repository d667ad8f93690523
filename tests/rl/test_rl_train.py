"""`python -m ser.rl.train`: Emo-RL and the label DQN, logged to MLflow; and the clear errors
for unusable classifiers and audio. The real command runs once (Emo-RL end to end); the other
set-ups and the errors run in process, through the entry point's main(cfg)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from mlflow.tracking import MlflowClient

from ser.data.manifest import load_folds
from ser.errors import AudioError, SerError
from ser.inference.recognizer import load_recognizer
from ser.inference.streaming import check_streaming, stream_wave
from ser.rl.classifier import check_unseen_speakers
from ser.rl.train import main as rl_main
from ser.serve import stream

pytestmark = pytest.mark.slow


def rl_args(tmp_path: Path, data_dir: Path, small_corpus: list[str], *overrides: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ser.rl.train",
        f"paths.root_dir={tmp_path}",
        f"paths.data_dir={data_dir}",
        *small_corpus,
        "callbacks.progress_bar=null",
        *overrides,
    ]


def rl_run(tmp_path: Path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ser-synthetic-rl")
    (run,) = client.search_runs([experiment.experiment_id])
    return client, run


def test_emorl_cli_trains_evaluates_and_logs(
    cli, repo_root, tmp_path, data_dir, small_corpus, causal_run, trained_run, capsys
) -> None:
    result = cli(
        rl_args(
            tmp_path,
            data_dir,
            small_corpus,
            f"rl.classifier={causal_run.checkpoint}",
            "rl.total_timesteps=1500",
            "rl.n_envs=2",
            "rl.algorithm.learning_starts=200",
            "rl.wait_costs=[0.01,0.1]",
        ),
        cwd=repo_root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client, run = rl_run(tmp_path)
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    for key in ("test/agent_uar", "test/full_uar", "test/agent_fraction", "test/agent_seconds"):
        assert key in metrics
    # SB3's own metrics reach the same run, per lambda
    assert client.get_metric_history(run.info.run_id, "lambda0.01/train/loss")
    assert client.get_metric_history(run.info.run_id, "lambda0.1/rollout/exploration_rate")
    local = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "dl")))
    assert (local / "policy_lambda0.01.zip").is_file()
    assert (local / "accuracy_vs_audio.png").read_bytes()[:4] == b"\x89PNG"
    table = pd.read_csv(local / "decisions.csv")
    assert {"full", "fixed", "confidence", "fitted", "settled", "agent"} <= set(table.strategy)
    rows = {(r.strategy, r.setting): r for r in table.itertuples()}
    # the whole utterance hears all of it; the logged metrics are the table's rows
    full = rows["full", 1.0]
    assert full.fraction_mean == 1.0 and metrics["test/full_uar"] == pytest.approx(full.uar)
    agent = rows["agent", 0.01]
    assert metrics["test/agent_uar"] == pytest.approx(agent.uar)
    assert metrics["test/agent_fraction"] == pytest.approx(agent.fraction_mean)
    assert 0.0 < agent.fraction_mean <= 1.0
    # the settled oracle stops once the prediction is the final one: the full UAR, earlier
    settled = rows["settled", 1.0]
    assert settled.uar == pytest.approx(full.uar)
    assert metrics["test/settled_fraction"] == pytest.approx(settled.fraction_mean)
    assert 0.0 < settled.fraction_mean <= 1.0
    # fitted to hear <= 80 % of the agent's episodes; on the test speakers it may hear more
    fitted = rows["fitted", 0.8]
    assert metrics["test/fitted_fraction_budget0.8"] == pytest.approx(fitted.fraction_mean)
    assert 0.0 < fitted.fraction_mean <= 1.0
    assert json.loads((local / "metrics.json").read_text())["test/agent_uar"] == pytest.approx(
        metrics["test/agent_uar"]
    )

    # the saved policy makes an early decision on a file through ser-stream (in process: its
    # real command runs in tests/serve/test_stream.py)
    wav = next((data_dir / "synthetic").rglob("*.wav"))
    model, policy = str(causal_run.checkpoint), str(local / "policy_lambda0.1.zip")
    capsys.readouterr()
    stream.main([str(wav), "--model", model, "--policy", policy, "--out", str(tmp_path / "s")])
    (line,) = [
        x for x in capsys.readouterr().out.splitlines() if x.startswith("early decision (Emo-RL)")
    ]
    assert "s of speech" in line
    # ser-serve with the same policy adds the same decision to its answer
    from fastapi.testclient import TestClient

    from ser.inference.early import EarlyPolicy
    from ser.serve.http import create_app

    with TestClient(create_app(load_recognizer(model), policy=EarlyPolicy(policy))) as http:
        body = http.post("/predict", files={"file": ("a.wav", wav.read_bytes(), "audio/wav")})
    early = body.json()["early_decision"]
    assert f"{early['label']} after {early['seconds']:.2f} s of speech" in line

    # a non-causal model or a missing policy: one line, before any timeline is computed
    for model, policy, named in [
        (trained_run.checkpoint, local / "policy_lambda0.1.zip", "is not a causal model"),
        (causal_run.checkpoint, tmp_path / "nope.zip", "policy"),
    ]:
        out = tmp_path / f"refused_{named[:6]}"
        with pytest.raises(SystemExit) as refused:
            stream.main(
                [str(wav), "--model", str(model), "--policy", str(policy), "--out", str(out)]
            )
        assert refused.value.code == 2
        stdout, stderr = capsys.readouterr()
        (line,) = [x for x in stderr.splitlines() if x.strip()]
        assert line.startswith("error: ") and named in line
        assert "overall:" not in stdout and not out.exists()


def test_crossfit_agent_learns_from_every_non_test_speaker(
    make_cfg, tmp_path, data_dir, small_corpus, compose
) -> None:
    overrides = [
        "rl.agent_split=crossfit",
        "rl.crossfit_folds=2",
        "trainer.max_epochs=1",
        "rl.total_timesteps=500",
        "rl.n_envs=2",
        "rl.algorithm.learning_starts=100",
        "rl.wait_costs=[0.1]",
    ]
    rl_main(make_cfg(overrides, config_name="rl_train"))
    _, run = rl_run(tmp_path)
    cfg = compose([f"paths.data_dir={data_dir}", *small_corpus], config_name="rl_train")
    manifest = load_folds(cfg)[0]
    # episodes: the validation speakers and, out of fold, every training speaker
    assert run.data.metrics["episodes/agent"] == (manifest["split"] != "test").sum()
    assert run.data.metrics["episodes/test"] == (manifest["split"] == "test").sum()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ser-synthetic")
    names = [r.info.run_name for r in client.search_runs([experiment.experiment_id])]
    assert sorted(n.rsplit("-", 1)[-1] for n in names) == ["crossfit0", "crossfit1", "holdout"]


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["rl.agent_split=everyone"], "rl.agent_split=everyone is unknown; use one of val"),
        (["rl.agent_split=crossfit", "rl.classifier=model.ckpt"], "leave rl.classifier unset"),
        (["rl.reward.target=oracle"], "rl.reward.target=oracle is unknown; use one of label"),
        (
            ["protocol=kfold_speaker", "protocol.n_folds=2", "rl.fold=2"],
            "rl.fold=2 is out of range: protocol=kfold_speaker gives 2 fold(s); use rl.fold=0..1",
        ),
        (["rl.chunk_s=0"], "rl.chunk_s=0 must be > 0 seconds"),
        (["rl.chunk_s=-0.5"], "rl.chunk_s=-0.5 must be > 0 seconds"),
        (["rl.total_timesteps=0"], "rl.total_timesteps=0 must be > 0"),
        (["rl.wait_costs=[]"], "rl.wait_costs is empty"),
    ],
)
def test_bad_agent_split_fold_or_target_is_one_clear_error(
    make_cfg, tmp_path, capsys, overrides, named
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        rl_main(make_cfg(overrides, config_name="rl_train"))
    assert exit_info.value.code == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert line.startswith("error: ") and named in line
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


def test_label_dqn_reports_against_the_supervised_model(
    make_cfg, tmp_path, causal_run, capsys
) -> None:
    overrides = [
        "rl=label_dqn",
        f"rl.classifier={causal_run.checkpoint}",
        "rl.total_timesteps=1000",
        "rl.algorithm.learning_starts=100",
    ]
    agent_uar = rl_main(make_cfg(overrides, config_name="rl_train"))
    (line,) = [x for x in capsys.readouterr().out.splitlines() if "vs the supervised" in x]
    _, run = rl_run(tmp_path)
    metrics = run.data.metrics
    assert agent_uar == pytest.approx(metrics["test/agent_uar"])
    assert line == (
        f"label DQN UAR {metrics['test/agent_uar']:.3f} vs the supervised classifier "
        f"{metrics['test/full_uar']:.3f} on the same test speakers"
    )


def test_non_causal_classifier_is_refused(trained_run) -> None:
    with pytest.raises(SerError, match=r"not a causal model.*model\.causal=true"):
        check_streaming(load_recognizer(trained_run.checkpoint))


def test_classifier_with_other_features_is_refused(make_cfg, tmp_path, causal_run, capsys) -> None:
    overrides = [f"rl.classifier={causal_run.checkpoint}", "features=mfcc"]
    with pytest.raises(SystemExit) as exit_info:
        rl_main(make_cfg(overrides, config_name="rl_train"))
    assert exit_info.value.code == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert line.startswith("error: ")
    assert "trained with features LogMel" in line and "MFCC" in line
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


def test_classifier_trained_on_this_runs_test_or_agent_speakers_is_refused(causal_run) -> None:
    recognizer = load_recognizer(causal_run.checkpoint)
    manifest = load_folds(causal_run.config)[0]
    train = manifest.loc[manifest["split"] == "train", "speaker"].astype(str)
    assert recognizer.module.train_speakers == sorted(set(train))
    check_unseen_speakers(recognizer, manifest, "val")  # the split it was trained with
    speaker = recognizer.module.train_speakers[0]
    for split in ("test", "val"):
        # Another split seed: one of its training speakers lands in `split` here.
        moved = manifest.copy()
        moved.loc[moved["speaker"].astype(str) == speaker, "split"] = split
        with pytest.raises(SerError, match=rf"\['{speaker}'\], which are {split} speakers here"):
            check_unseen_speakers(recognizer, moved, "val")
    check_unseen_speakers(recognizer, moved, "train")  # agent_split=train streams its own


def test_utterance_shorter_than_a_chunk_is_an_error(causal_run) -> None:
    recognizer = load_recognizer(causal_run.checkpoint)
    wave = np.random.default_rng(0).normal(0, 0.1, 3000).astype(np.float32)  # 0.19 s
    with pytest.raises(AudioError, match="shorter than one chunk"):
        stream_wave(recognizer, wave, chunk_s=0.25)
    stream = stream_wave(recognizer, wave, chunk_s=0.1)
    assert stream.chunks == 2
    np.testing.assert_allclose(stream.posteriors.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(stream.posteriors[-1], recognizer.posteriors(wave), atol=1e-5)


@pytest.mark.parametrize("chunk_s", [0.015, 0.25, 0.033])
def test_time_heard_counts_the_real_chunk_of_whole_frames(causal_run, chunk_s: float) -> None:
    # A chunk is a whole number of 10 ms feature frames: 0.015 s is 2 frames (0.02 s), and
    # the whole utterance is 100 % heard, not 75 % (chunks x the configured 0.015 s).
    recognizer = load_recognizer(causal_run.checkpoint)
    wave = np.random.default_rng(1).normal(0, 0.1, 16000).astype(np.float32)  # 1 s
    stream = stream_wave(recognizer, wave, chunk_s=chunk_s)
    hop_s = recognizer.extractor.hop_length / recognizer.sample_rate
    assert stream.chunk_s == pytest.approx(max(1, round(chunk_s / hop_s)) * hop_s)
    assert stream.fraction_heard(stream.chunks) == pytest.approx(1.0)
    assert stream.fraction_heard(1) == pytest.approx(stream.chunk_s / 1.0)
    with pytest.raises(SerError, match=r"rl\.chunk_s=0 must be > 0"):
        stream_wave(recognizer, wave, chunk_s=0)


def test_joint_design_trains_a_model_per_lambda_and_scores_its_own_stops(
    make_cfg, tmp_path, data_dir, capsys
) -> None:
    """rl=joint: classifier and stopping policy trained together, one model per λ, scored
    against the same baselines; the checkpoint carries its policy to ser-stream and ser-serve."""
    from fastapi.testclient import TestClient

    from ser.inference.early import HaltingDecider
    from ser.serve.http import create_app

    overrides = [
        "rl=joint",
        "trainer.max_epochs=3",
        "rl.halting.warmup_epochs=1",
        "rl.wait_costs=[0.02,0.2]",
    ]
    uar = rl_main(make_cfg(overrides, config_name="rl_train"))
    client, run = rl_run(tmp_path)
    assert run.info.status == "FINISHED" and run.info.run_name == "joint-reinforce"
    metrics = run.data.metrics
    assert uar == pytest.approx(metrics["test/joint_uar"])
    assert metrics["test/joint_wait_cost"] in (0.02, 0.2)
    local = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "dl")))
    table = pd.read_csv(local / "decisions.csv")
    for lam in (0.02, 0.2):
        rows = table[table.wait_cost == lam]
        assert {"full", "fixed", "confidence", "fitted", "settled", "joint"} <= set(rows.strategy)
        joint = rows[rows.strategy == "joint"].iloc[0]
        full = rows[rows.strategy == "full"].iloc[0]
        assert metrics[f"test/joint_uar_lambda{lam:g}"] == pytest.approx(joint.uar)
        assert metrics[f"test/joint_full_uar_lambda{lam:g}"] == pytest.approx(full.uar)
        assert 0.0 < joint.fraction_mean <= 1.0
        png = local / f"accuracy_vs_audio_lambda{lam:g}.png"
        assert png.read_bytes()[:4] == b"\x89PNG"
    # each λ's model is a training run of its own, its checkpoint chosen on the episode return
    experiment = client.get_experiment_by_name("ser-synthetic")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name.rsplit("-", 1)[-1] for r in runs) == [
        "joint_lambda0.02",
        "joint_lambda0.2",
    ]
    assert all("val/halt_return" in r.data.metrics for r in runs)

    # The checkpoint carries its stopping policy: ser-stream prints its decision unasked,
    # ser-serve adds it to each answer, and both equal the policy's own decision.
    checkpoint = next(Path(tmp_path).rglob("joint_lambda0.2.ckpt"))
    recognizer = load_recognizer(checkpoint)
    wav = next((data_dir / "synthetic").rglob("*.wav"))
    data, rate = sf.read(wav, dtype="float32")
    decision = HaltingDecider(recognizer).decide(
        recognizer, recognizer.preprocessor.process(data, rate, str(wav))
    )
    capsys.readouterr()
    stream.main([str(wav), "--model", str(checkpoint), "--out", str(tmp_path / "s")])
    (line,) = [
        x for x in capsys.readouterr().out.splitlines() if x.startswith("early decision (Emo-RL)")
    ]
    assert f"{decision.label} after {decision.seconds:.2f} s" in line
    with TestClient(create_app(recognizer)) as http:
        body = http.post("/predict", files={"file": ("a.wav", wav.read_bytes(), "audio/wav")})
    early = body.json()["early_decision"]
    assert early["label"] == decision.label
    assert early["seconds"] == pytest.approx(decision.seconds)
    # shorter than one of the policy's chunks: one clear reason, no decision
    with pytest.raises(AudioError, match="shorter than one chunk"):
        HaltingDecider(recognizer).decide(recognizer, np.zeros(1000, dtype=np.float32))
