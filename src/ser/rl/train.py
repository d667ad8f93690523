"""Emo-RL training and evaluation: `python -m ser.rl.train rl=emorl` (or rl=joint, rl=label_dqn).

Steps: a causal classifier (given, or trained first on the same speakers) -> its posteriors
after every chunk of every utterance, computed once -> SB3 agents trained on the streams of
`rl.agent_split` speakers -> decisions on the test speakers against the baselines -> one MLflow
run with SB3's curves, the metrics, the trade-off plot and the saved policies.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from sklearn.metrics import balanced_accuracy_score
from stable_baselines3.common.env_util import make_vec_env

from ser.atomic import atomic_write
from ser.config import to_dict
from ser.data.manifest import load_folds
from ser.data.splits import crossfit_splits
from ser.errors import SerError, exit_on_user_error
from ser.inference.early import ObservationSpec, policy_decisions
from ser.inference.recognizer import Recognizer
from ser.inference.streaming import UtteranceStream, check_chunk_s
from ser.project import CONFIG_DIR
from ser.rl.classifier import classifier, split_streams, train_classifier
from ser.rl.env import LabelEnv, Reward, StreamingEmotionEnv
from ser.rl.evaluate import (
    baseline_table,
    confidence_uar_at,
    fractions_heard,
    plot_tradeoff,
    score,
)
from ser.rl.joint import run_joint
from ser.tracking import git_commit, mlflow_logger, run_status, run_summary
from ser.tracking.sb3 import sb3_logger

log = logging.getLogger(__name__)


AGENT_SPLITS = ("val", "train", "crossfit")
REWARD_TARGETS = ("label", "full_prediction")


def reward_targets(streams: list[UtteranceStream], target: str) -> list[UtteranceStream]:
    """The agent's training episodes with the answer TERMINATE is rewarded against: the true
    label, or (`full_prediction`) what the classifier says after the whole utterance, so the
    agent learns when the prediction has settled rather than when it happens to be right."""
    if target == "label":
        return streams
    return [dataclasses.replace(s, label=int(np.argmax(s.posteriors[-1]))) for s in streams]


def agent_streams(
    cfg: DictConfig, recognizer: Recognizer, manifest: pd.DataFrame, chunk_s: float
) -> list[UtteranceStream]:
    """The episodes the agent learns from (`rl.agent_split`).

    `crossfit`: the validation speakers through `recognizer`, plus every training speaker
    through one of `rl.crossfit_folds` extra classifiers trained without that speaker, so all
    episodes carry outputs as unsure as the test speakers' (`train` gives overconfident ones).
    """
    split = cfg.rl.agent_split
    if split != "crossfit":
        return split_streams(recognizer, manifest, split, chunk_s)
    streams = split_streams(recognizer, manifest, "val", chunk_s)
    parts = crossfit_splits(manifest, int(cfg.rl.crossfit_folds), int(cfg.seed))
    for i, part in enumerate(parts):
        held_out = train_classifier(cfg, part, f"crossfit{i}")
        streams += split_streams(held_out, part, "test", chunk_s)
    return streams


def _agent(cfg: DictConfig, env: Any, client: Any, run_id: str, prefix: str) -> Any:
    model = instantiate(cfg.rl.algorithm)(env=env, seed=cfg.seed, verbose=0)
    logger = sb3_logger(client, run_id, prefix, verbose=cfg.rl.verbose)
    model.set_logger(logger)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small MLP per step: extra threads only contend
    try:
        model.learn(
            total_timesteps=int(cfg.rl.total_timesteps),
            log_interval=int(cfg.rl.log_interval),
            progress_bar=True,
        )
    finally:
        torch.set_num_threads(threads)
        logger.close()  # flushes the buffered metrics to MLflow
    return model


def save_policy(model: Any, path: Path, cfg: DictConfig, spec: ObservationSpec) -> None:
    """The SB3 policy, and beside it (.json) what replaying it needs: chunk, observation."""
    model.save(path)
    meta = {
        "algorithm": cfg.rl.algorithm._target_,
        "chunk_s": float(cfg.rl.chunk_s),
        "observation": dataclasses.asdict(spec),
    }
    with atomic_write(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))


def run_emorl(
    cfg: DictConfig,
    train_streams: list[UtteranceStream],
    test_streams: list[UtteranceStream],
    client: Any,
    run_id: str,
    artifacts: Path,
) -> dict[str, float]:
    spec = ObservationSpec(**cfg.rl.observation)
    longest = max(s.duration_s for s in train_streams + test_streams)
    train_streams = reward_targets(train_streams, str(cfg.rl.reward.target))
    # the falling threshold is fitted on the agent's episodes and targets: equal data
    table = baseline_table(test_streams, fit_on=train_streams)
    agent_rows: list[dict[str, Any]] = []
    agent_fractions = None
    for wait_cost in cfg.rl.wait_costs:
        reward = Reward(cfg.rl.reward.correct, cfg.rl.reward.wrong, float(wait_cost))
        env = make_vec_env(
            StreamingEmotionEnv,
            n_envs=int(cfg.rl.n_envs),
            seed=int(cfg.seed),
            env_kwargs={
                "streams": train_streams,
                "reward": reward,
                "observation": spec,
                "max_seconds": longest,
            },
        )
        model = _agent(cfg, env, client, run_id, f"lambda{wait_cost:g}/")
        save_policy(model, artifacts / f"policy_lambda{wait_cost:g}.zip", cfg, spec)

        def policy(obs: np.ndarray, m: Any = model) -> np.ndarray:
            return m.predict(obs, deterministic=True)[0]

        heard = policy_decisions(policy, test_streams, spec)
        agent_rows.append(
            {"strategy": "agent", "setting": float(wait_cost)} | score(test_streams, heard)
        )
        if agent_fractions is None:
            agent_fractions = fractions_heard(test_streams, heard)
    table = pd.concat([table, pd.DataFrame(agent_rows)], ignore_index=True)
    with atomic_write(artifacts / "decisions.csv") as tmp:
        table.to_csv(tmp, index=False)
    plot_tradeoff(table, artifacts / "accuracy_vs_audio.png", agent_fractions)
    full = table[table.strategy == "full"].iloc[0]
    settled = table[table.strategy == "settled"].iloc[0]
    metrics = {
        "test/full_uar": full.uar,
        "test/full_wa": full.wa,
        "test/settled_fraction": settled.fraction_mean,  # the oracle: where the answer settles
    }
    for row in table[table.strategy == "fitted"].itertuples():
        metrics |= {
            f"test/fitted_uar_budget{row.setting:g}": row.uar,
            f"test/fitted_fraction_budget{row.setting:g}": row.fraction_mean,
        }
    for row in agent_rows:
        tag = f"lambda{row['setting']:g}"
        metrics |= {
            f"test/agent_uar_{tag}": row["uar"],
            f"test/agent_wa_{tag}": row["wa"],
            f"test/agent_fraction_{tag}": row["fraction_mean"],
            f"test/agent_seconds_{tag}": row["seconds_mean"],
            f"test/agent_vs_confidence_uar_{tag}": row["uar"]
            - confidence_uar_at(table, row["fraction_mean"]),
        }
    first = agent_rows[0]
    metrics |= {
        "test/agent_uar": first["uar"],
        "test/agent_wa": first["wa"],
        "test/agent_fraction": first["fraction_mean"],
        "test/agent_seconds": first["seconds_mean"],
    }
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return metrics


def final_observations(streams: list[UtteranceStream]) -> np.ndarray:
    """The classifier's full-utterance posterior and hidden summary."""
    return np.stack([np.concatenate([s.posteriors[-1], s.hidden[-1]]) for s in streams])


def run_label_dqn(
    cfg: DictConfig,
    train_streams: list[UtteranceStream],
    test_streams: list[UtteranceStream],
    client: Any,
    run_id: str,
    artifacts: Path,
) -> dict[str, float]:
    classes = train_streams[0].posteriors.shape[1]
    env = make_vec_env(
        LabelEnv,
        n_envs=int(cfg.rl.n_envs),
        seed=int(cfg.seed),
        env_kwargs={
            "observations": final_observations(train_streams),
            "labels": [s.label for s in train_streams],
            "num_classes": classes,
            "correct": cfg.rl.reward.correct,
            "wrong": cfg.rl.reward.wrong,
        },
    )
    model = _agent(cfg, env, client, run_id, "")
    model.save(artifacts / "policy_label_dqn.zip")
    labels = np.array([s.label for s in test_streams])
    agent = model.predict(final_observations(test_streams), deterministic=True)[0]
    supervised = np.array([int(np.argmax(s.posteriors[-1])) for s in test_streams])
    metrics = {
        "test/agent_uar": float(balanced_accuracy_score(labels, agent)),
        "test/agent_wa": float(np.mean(agent == labels)),
        "test/full_uar": float(balanced_accuracy_score(labels, supervised)),
        "test/full_wa": float(np.mean(supervised == labels)),
    }
    print(
        f"label DQN UAR {metrics['test/agent_uar']:.3f} vs the supervised classifier "
        f"{metrics['test/full_uar']:.3f} on the same test speakers"
    )
    return metrics


RL_SETUPS = ("emorl", "label_dqn", "joint")


def check_agent_settings(cfg: DictConfig) -> None:
    """The SB3 set-ups' settings (rl=emorl, rl=label_dqn), checked before any work."""
    if cfg.rl.agent_split not in AGENT_SPLITS:
        raise SerError(
            f"rl.agent_split={cfg.rl.agent_split} is unknown; use one of {', '.join(AGENT_SPLITS)}"
        )
    if cfg.rl.name == "emorl" and cfg.rl.reward.target not in REWARD_TARGETS:
        raise SerError(
            f"rl.reward.target={cfg.rl.reward.target} is unknown; use one of "
            f"{', '.join(REWARD_TARGETS)}"
        )
    if not int(cfg.rl.total_timesteps) > 0:
        raise SerError(
            f"rl.total_timesteps={cfg.rl.total_timesteps} must be > 0, e.g. "
            "rl.total_timesteps=40000"
        )
    if cfg.rl.agent_split == "crossfit" and cfg.rl.classifier:
        raise SerError(
            "rl.agent_split=crossfit trains the classifier and its cross-fitted copies with one "
            "config; leave rl.classifier unset, or use rl.agent_split=val"
        )


def run(cfg: DictConfig) -> dict[str, float]:
    """Train and evaluate the configured RL set-up; returns the test metrics."""
    pl.seed_everything(cfg.seed, workers=True)
    if cfg.rl.name not in RL_SETUPS:
        raise SerError(f"rl={cfg.rl.name} is unknown; use rl=emorl, rl=joint or rl=label_dqn")
    check_chunk_s(cfg.rl.chunk_s)
    if cfg.rl.name in ("emorl", "joint") and not cfg.rl.wait_costs:
        raise SerError(
            "rl.wait_costs is empty; give at least one cost of a WAIT, e.g. rl.wait_costs=[0.02]"
        )
    joint = cfg.rl.name == "joint"
    if not joint:
        check_agent_settings(cfg)
    folds = load_folds(cfg)
    fold = int(cfg.rl.fold)
    if not 0 <= fold < len(folds):
        raise SerError(
            f"rl.fold={fold} is out of range: protocol={cfg.protocol.name} gives {len(folds)} "
            f"fold(s); use rl.fold=0..{len(folds) - 1}"
        )
    manifest = folds[fold]
    output_dir = Path(cfg.paths.output_dir)
    artifacts = output_dir / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    recognizer = None if joint else classifier(cfg, manifest)

    settings = to_dict(cfg.logger.mlflow)
    settings["experiment_name"] = f"{settings['experiment_name']}-rl"
    method = "reinforce" if joint else cfg.rl.algorithm._target_.rsplit(".", 1)[-1]
    settings["run_name"] = f"{cfg.rl.name}-{method}"
    tags = {
        "git_commit": git_commit(Path(__file__).parent),
        "dataset": cfg.dataset.name,
        "rl": cfg.rl.name,
    }
    if recognizer is not None:
        tags |= {"classifier": recognizer.source, "agent_split": cfg.rl.agent_split}
    logger = mlflow_logger(settings, cfg.paths.mlruns_dir, tags, local_dir=output_dir)
    client, run_id = logger.experiment, logger.run_id
    assert run_id is not None  # set once `experiment` has started the run
    with run_status(logger):
        logger.log_hyperparams(to_dict(cfg))
        if recognizer is None:
            metrics = run_joint(cfg, manifest, artifacts)
        else:
            chunk_s = float(cfg.rl.chunk_s)
            train_streams = agent_streams(cfg, recognizer, manifest, chunk_s)
            test_streams = split_streams(recognizer, manifest, "test", chunk_s)
            runner = run_emorl if cfg.rl.name == "emorl" else run_label_dqn
            metrics = runner(cfg, train_streams, test_streams, client, run_id, artifacts)
            metrics |= {"episodes/agent": len(train_streams), "episodes/test": len(test_streams)}
        with atomic_write(artifacts / "metrics.json") as tmp:
            tmp.write_text(json.dumps(metrics, indent=2))
        for key, value in metrics.items():
            client.log_metric(run_id, key, float(value))
        client.log_artifacts(run_id, str(artifacts))
    print(f"\n{run_summary(logger)}\nOutputs: {output_dir}")
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="rl_train")
@exit_on_user_error
def main(cfg: DictConfig) -> float:
    """Hydra entry point; returns the test UAR of the agent's (or the joint model's) stops."""
    metrics = run(cfg)
    return metrics["test/joint_uar" if cfg.rl.name == "joint" else "test/agent_uar"]


if __name__ == "__main__":
    main()
