"""Early-decision strategies scored on held-out speakers: the agent, the full utterance, fixed
fractions, posterior-confidence thresholds, and a confidence threshold that falls with the share
heard, fitted on the agent's own episodes; accuracy against audio consumed. One oracle
row, `settled`, is a reference rather than a strategy: it stops where the prediction stops
changing, which only the future tells, so it shows how early the whole-utterance answer is
there to be found."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score

from ser.atomic import atomic_write
from ser.inference.streaming import UtteranceStream

FIXED_FRACTIONS = (0.25, 0.5, 0.75)
CONFIDENCE_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
# The falling-threshold rules searched (start - slope * share heard), and the audio budgets
# (mean share of speech heard) one rule is fitted for each.
FALLING_STARTS = tuple(round(0.3 + 0.05 * i, 2) for i in range(15))  # 0.3 .. 1.0
FALLING_SLOPES = tuple(round(0.1 * i, 1) for i in range(9))  # 0 .. 0.8
FITTED_BUDGETS = (0.4, 0.5, 0.6, 0.7, 0.8)


def full_decisions(streams: Sequence[UtteranceStream]) -> np.ndarray:
    return np.array([s.chunks for s in streams])


def fraction_decisions(streams: Sequence[UtteranceStream], fraction: float) -> np.ndarray:
    """Stop after the first chunk that reaches `fraction` of the utterance."""
    return np.array([max(1, math.ceil(fraction * s.chunks)) for s in streams])


def confidence_decisions(streams: Sequence[UtteranceStream], threshold: float) -> np.ndarray:
    """Stop at the first chunk whose top posterior reaches `threshold` (else at the end)."""
    return falling_threshold_decisions(streams, threshold, slope=0.0)


def falling_threshold_decisions(
    streams: Sequence[UtteranceStream], start: float, slope: float
) -> np.ndarray:
    """Stop at the first chunk whose top posterior reaches `start - slope * share heard` (else
    at the end): a confidence threshold that asks for less certainty the more has been heard."""
    heard = []
    for s in streams:
        share = s.fraction_heard(np.arange(1, s.chunks + 1))
        confident = np.flatnonzero(s.posteriors.max(axis=1) >= start - slope * share)
        heard.append(int(confident[0]) + 1 if len(confident) else s.chunks)
    return np.array(heard)


def fit_falling_thresholds(
    streams: Sequence[UtteranceStream], budgets: Sequence[float] = FITTED_BUDGETS
) -> dict[float, tuple[float, float]]:
    """Per audio budget, the (start, slope) with the best UAR on `streams` (the agent's
    episodes: fitting on the test speakers would flatter it) among the rules hearing at most
    that share of the speech on average; budgets no rule meets are left out."""
    scored = []
    for start in FALLING_STARTS:
        for slope in FALLING_SLOPES:
            result = score(streams, falling_threshold_decisions(streams, start, slope))
            scored.append((result["uar"], result["fraction_mean"], start, slope))
    fitted = {}
    for budget in budgets:
        within = [row for row in scored if row[1] <= budget + 1e-9]
        if within:
            # the best UAR; among equals the least audio, then the first in the grid
            best = max(within, key=lambda row: (row[0], -row[1]))
            fitted[float(budget)] = (best[2], best[3])
    return fitted


def settled_decisions(streams: Sequence[UtteranceStream]) -> np.ndarray:
    """(Oracle) the first chunk from which the prediction equals the final one to the end."""
    heard = []
    for s in streams:
        predictions = s.posteriors.argmax(axis=1)
        differs = np.flatnonzero(predictions != predictions[-1])
        heard.append(int(differs[-1]) + 2 if len(differs) else 1)
    return np.array(heard)


def score(streams: Sequence[UtteranceStream], heard: np.ndarray) -> dict[str, float]:
    """UAR and WA of the predictions at the decisions, and how much audio they took."""
    labels = np.array([s.label for s in streams])
    preds = np.array(
        [int(np.argmax(s.posteriors[k - 1])) for s, k in zip(streams, heard, strict=True)]
    )
    fractions = fractions_heard(streams, heard)
    seconds = np.array([float(s.seconds_heard(k)) for s, k in zip(streams, heard, strict=True)])
    return {
        "uar": float(balanced_accuracy_score(labels, preds)),
        "wa": float(np.mean(labels == preds)),
        "fraction_mean": float(fractions.mean()),
        "fraction_median": float(np.median(fractions)),
        "seconds_mean": float(seconds.mean()),
    }


def baseline_table(
    streams: Sequence[UtteranceStream],
    fit_on: Sequence[UtteranceStream] | None = None,
    budgets: Sequence[float] = FITTED_BUDGETS,
) -> pd.DataFrame:
    """One row per baseline strategy (full, fixed fractions, confidence thresholds, the settled
    oracle) on `streams`; with `fit_on`, also a falling threshold fitted there per audio
    budget (strategy `fitted`, setting the budget), the agent's rival on equal data."""
    rows = [{"strategy": "full", "setting": 1.0, **score(streams, full_decisions(streams))}]
    for f in FIXED_FRACTIONS:
        rows.append(
            {"strategy": "fixed", "setting": f, **score(streams, fraction_decisions(streams, f))}
        )
    for t in CONFIDENCE_THRESHOLDS:
        heard = confidence_decisions(streams, t)
        rows.append({"strategy": "confidence", "setting": t, **score(streams, heard)})
    fitted = fit_falling_thresholds(fit_on, budgets) if fit_on else {}
    for budget, (start, slope) in fitted.items():
        heard = falling_threshold_decisions(streams, start, slope)
        rows.append({"strategy": "fitted", "setting": budget, **score(streams, heard)})
    settled = settled_decisions(streams)
    rows.append({"strategy": "settled", "setting": 1.0, **score(streams, settled)})
    return pd.DataFrame(rows)


def confidence_uar_at(table: pd.DataFrame, fraction: float) -> float:
    """The confidence baseline's UAR at `fraction` of audio heard."""
    return uar_at(table, "confidence", fraction)


def uar_at(table: pd.DataFrame, strategy: str, fraction: float) -> float:
    """A baseline's UAR at `fraction` of audio heard (linear interpolation along its
    trade-off curve, capped by its end points)."""
    curve = table[table.strategy == strategy].sort_values("fraction_mean")
    return float(np.interp(fraction, curve.fraction_mean, curve.uar))


def fractions_heard(streams: Sequence[UtteranceStream], heard: np.ndarray) -> np.ndarray:
    return np.array([float(s.fraction_heard(k)) for s, k in zip(streams, heard, strict=True)])


def plot_tradeoff(
    table: pd.DataFrame,
    path: Path,
    agent_fractions: np.ndarray | None = None,
    title: str = "",
    agent_label: str = "Emo-RL agent",
) -> Path:
    """Accuracy (UAR) against the mean fraction of speech heard, every strategy in one plot;
    with the agent's per-utterance fractions as a histogram beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if agent_fractions is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.5), squeeze=False)
    ax = axes[0, 0]
    conf = table[table.strategy == "confidence"].sort_values("fraction_mean")
    ax.plot(conf.fraction_mean, conf.uar, "o-", color="tab:blue", label="confidence threshold")
    fixed = table[table.strategy.isin(["fixed", "full"])].sort_values("fraction_mean")
    ax.plot(fixed.fraction_mean, fixed.uar, "s--", color="tab:gray", label="fixed fraction")
    fitted = table[table.strategy == "fitted"].sort_values("fraction_mean")
    if len(fitted):
        ax.plot(
            fitted.fraction_mean,
            fitted.uar,
            "^-",
            color="tab:green",
            label="falling threshold fitted on the agent's episodes",
        )
    full = table[table.strategy == "full"].iloc[0]
    ax.axhline(full.uar, color="black", lw=0.8, ls=":", label=f"full utterance ({full.uar:.3f})")
    settled = table[table.strategy == "settled"]
    if len(settled):
        ax.plot(
            settled.fraction_mean,
            settled.uar,
            "D",
            ms=8,
            mfc="none",
            color="black",
            label="prediction settled (oracle: needs the future)",
        )
    agents = table[table.strategy == "agent"]
    ax.plot(agents.fraction_mean, agents.uar, "*", ms=14, color="tab:red", label=agent_label)
    for _, row in agents.iterrows():
        ax.annotate(
            f"λ={row.setting:g}",
            (row.fraction_mean, row.uar),
            xytext=(5, -12),
            textcoords="offset points",
            fontsize=8,
        )
    ax.set_xlabel("mean fraction of speech heard")
    ax.set_ylabel("UAR")
    ax.set_xlim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or "Accuracy against audio consumed (held-out speakers)")
    if agent_fractions is not None:
        hist = axes[0, 1]
        hist.hist(agent_fractions, bins=20, range=(0, 1), color="tab:red", alpha=0.8)
        hist.set_xlabel("fraction of speech heard before the decision")
        hist.set_ylabel("utterances")
        hist.set_title(f"{agent_label}: decision points")
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
