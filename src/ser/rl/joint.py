"""rl=joint, Emo-RL's second design: the streaming classifier and its stopping policy trained
together (`ser.models.halting`), one model per cost of waiting λ, each scored on the test
speakers against the same baselines as the DQN design (`ser.rl.evaluate`), on its own streams.

    python -m ser.rl.train rl=joint rl.wait_costs=[0.01,0.02,0.05]

Per λ: a causal classifier with a halting head is trained on the training speakers (its
checkpoint chosen by the validation speakers' episode return), streamed over the validation
and test speakers, and its own stops are scored next to the full utterance, fixed fractions,
confidence thresholds, the falling threshold fitted on its validation streams and the settled
oracle. The operating point is chosen on the validation speakers: the largest λ whose stops
keep validation UAR within 2 points of the full utterance (else the smallest λ).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, open_dict

from ser.atomic import atomic_write
from ser.config import to_dict
from ser.inference.early import halting_decisions
from ser.inference.recognizer import Recognizer
from ser.inference.streaming import UtteranceStream
from ser.rl.classifier import split_streams, train_classifier
from ser.rl.evaluate import (
    FITTED_BUDGETS,
    baseline_table,
    fractions_heard,
    full_decisions,
    plot_tradeoff,
    score,
    uar_at,
)

# Validation UAR points the chosen operating point may lose against the full utterance.
OPERATING_MARGIN = 0.02
MONITOR = "val/halt_return"


def joint_config(cfg: DictConfig, wait_cost: float) -> DictConfig:
    """The run config of one joint model: the classifier of `model` (causal) with a halting
    head for this λ, its checkpoint and early stopping on the validation episode return."""
    out = copy.deepcopy(cfg)
    halting = to_dict(cfg.rl.halting)
    with open_dict(out):
        out.model.causal = True
        out.model.halting = {
            "_target_": "ser.models.halting.HaltingPolicy",
            "chunk_s": float(cfg.rl.chunk_s),
            "wait_cost": float(wait_cost),
            "correct": float(cfg.rl.reward.correct),
            "wrong": float(cfg.rl.reward.wrong),
            **halting,
        }
        for name in ("model_checkpoint", "early_stopping"):
            if (out.get("callbacks") or {}).get(name):
                out.callbacks[name].monitor = MONITOR
                out.callbacks[name].mode = "max"
        if (out.get("callbacks") or {}).get("model_checkpoint"):
            out.callbacks.model_checkpoint.filename = "epoch{epoch:03d}-return{val/halt_return:.4f}"
        out.optimized_metric = MONITOR
    return out


def joint_decisions(
    recognizer: Recognizer,
    wait_cost: float,
    val: list[UtteranceStream],
    test: list[UtteranceStream],
) -> tuple[pd.DataFrame, dict[str, float], np.ndarray]:
    """One joint model's table on the test speakers (its stops, `joint`, and the baselines on
    its own streams, the falling threshold fitted on its validation streams), its validation
    scores, and the share of each test utterance heard at its stop."""
    halting = recognizer.module.halting
    assert halting is not None  # trained by joint_config
    val_stops = score(val, halting_decisions(halting, val))
    val_full = score(val, full_decisions(val))
    heard = halting_decisions(halting, test)
    joint = {"strategy": "joint", "setting": float(wait_cost)} | score(test, heard)
    # One more budget: the joint model's own share heard, for a rival at the same audio.
    budgets = sorted({*FITTED_BUDGETS, round(val_stops["fraction_mean"], 3)})
    table = baseline_table(test, fit_on=val, budgets=budgets)
    table = pd.concat([table, pd.DataFrame([joint])], ignore_index=True)
    table.insert(0, "wait_cost", float(wait_cost))
    fractions = fractions_heard(test, heard)
    validation = {
        "val_uar": val_stops["uar"],
        "val_fraction": val_stops["fraction_mean"],
        "val_full_uar": val_full["uar"],
    }
    return table, validation, fractions


def joint_metrics(tables: dict[float, pd.DataFrame], validation: dict[float, dict]) -> dict:
    """Per λ the joint model's test UAR, share heard, its own full-utterance UAR and the fitted
    falling threshold's UAR at the same audio; and the operating point the validation
    speakers choose (`test/joint_*` without a λ, `test/joint_wait_cost`)."""
    metrics: dict[str, float] = {}
    for lam, table in tables.items():
        tag = f"lambda{lam:g}"
        joint = table[table.strategy == "joint"].iloc[0]
        full = table[table.strategy == "full"].iloc[0]
        fitted = uar_at(table, "fitted", float(joint.fraction_mean))
        metrics |= {
            f"test/joint_uar_{tag}": float(joint.uar),
            f"test/joint_wa_{tag}": float(joint.wa),
            f"test/joint_fraction_{tag}": float(joint.fraction_mean),
            f"test/joint_seconds_{tag}": float(joint.seconds_mean),
            f"test/joint_full_uar_{tag}": float(full.uar),
            f"test/joint_vs_full_uar_{tag}": float(joint.uar - full.uar),
            f"test/joint_vs_fitted_uar_{tag}": float(joint.uar) - fitted,
            f"val/joint_uar_{tag}": validation[lam]["val_uar"],
            f"val/joint_fraction_{tag}": validation[lam]["val_fraction"],
        }
    chosen = operating_point(validation)
    tag = f"lambda{chosen:g}"
    metrics |= {
        "test/joint_wait_cost": chosen,
        "test/joint_uar": metrics[f"test/joint_uar_{tag}"],
        "test/joint_fraction": metrics[f"test/joint_fraction_{tag}"],
        "test/joint_full_uar": metrics[f"test/joint_full_uar_{tag}"],
    }
    return metrics


def operating_point(validation: dict[float, dict]) -> float:
    """The largest λ whose stops keep validation UAR within OPERATING_MARGIN of the model's
    full-utterance UAR on the validation speakers; else the smallest λ."""
    kept = [
        lam
        for lam, v in validation.items()
        if v["val_full_uar"] - v["val_uar"] <= OPERATING_MARGIN + 1e-9
    ]
    return max(kept) if kept else min(validation)


def write_joint_outputs(
    tables: dict[float, pd.DataFrame], fractions: dict[float, np.ndarray], artifacts: Path
) -> pd.DataFrame:
    """decisions.csv (every λ's table) and one trade-off plot per λ."""
    table = pd.concat(tables.values(), ignore_index=True)
    with atomic_write(artifacts / "decisions.csv") as tmp:
        table.to_csv(tmp, index=False)
    for lam, one in tables.items():
        plotted = one.replace({"strategy": {"joint": "agent"}})
        plot_tradeoff(
            plotted,
            artifacts / f"accuracy_vs_audio_lambda{lam:g}.png",
            fractions[lam],
            title=f"Joint classifier + stopping policy, λ = {lam:g} (held-out speakers)",
            agent_label="joint model's stop",
        )
    return table


def describe(metrics: dict[str, Any], lams: list[float]) -> str:
    lines = []
    for lam in lams:
        tag = f"lambda{lam:g}"
        lines.append(
            f"λ = {lam:g}: UAR {metrics[f'test/joint_uar_{tag}']:.3f} at "
            f"{100 * metrics[f'test/joint_fraction_{tag}']:.0f} % heard; the same model's full "
            f"utterance {metrics[f'test/joint_full_uar_{tag}']:.3f}; "
            f"{100 * metrics[f'test/joint_vs_fitted_uar_{tag}']:+.1f} points against the "
            "fitted falling threshold at the same audio"
        )
    chosen = metrics["test/joint_wait_cost"]
    lines.append(f"operating point chosen on the validation speakers: λ = {chosen:g}")
    return "\n".join(lines)


def run_joint(cfg: DictConfig, manifest: pd.DataFrame, artifacts: Path) -> dict[str, float]:
    """Train, stream and score one joint model per λ; write the table and plots to
    `artifacts`; returns the metrics."""
    chunk_s = float(cfg.rl.chunk_s)
    tables, validation, fractions = {}, {}, {}
    for wait_cost in cfg.rl.wait_costs:
        lam = float(wait_cost)
        recognizer = train_classifier(joint_config(cfg, lam), manifest, f"joint_lambda{lam:g}")
        val = split_streams(recognizer, manifest, "val", chunk_s)
        test = split_streams(recognizer, manifest, "test", chunk_s)
        tables[lam], validation[lam], fractions[lam] = joint_decisions(recognizer, lam, val, test)
    table = write_joint_outputs(tables, fractions, artifacts)
    metrics = joint_metrics(tables, validation)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(describe(metrics, list(tables)))
    return metrics
