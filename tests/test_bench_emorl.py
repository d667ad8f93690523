"""scripts/bench_emorl.py's summary over folds and seeds: every strategy row is averaged
over the runs, in the order the runs list them."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_emorl.py"
spec = importlib.util.spec_from_file_location("bench_emorl", SCRIPT)
assert spec is not None and spec.loader is not None
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def decisions(full: float, agent: float, heard: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "strategy": ["full", "fixed", "agent"],
            "setting": [1.0, 0.5, 0.1],
            "uar": [full, full - 0.1, agent],
            "fraction_mean": [1.0, 0.55, heard],
        }
    )


def test_mean_table_averages_each_strategy_row_over_the_runs() -> None:
    table = bench.mean_table([decisions(0.4, 0.3, 0.2), decisions(0.6, 0.5, 0.6)])
    assert list(table.strategy) == ["full", "fixed", "agent"]
    assert table.uar.tolist() == pytest.approx([0.5, 0.4, 0.4])
    assert table.fraction_mean.tolist() == pytest.approx([1.0, 0.55, 0.4])


def test_goal_check_needs_both_the_accuracy_and_the_audio() -> None:
    assert "goal met" in bench.goal_check(0.1, 0.48, 0.60, 0.50, "")
    assert "goal NOT met" in bench.goal_check(0.1, 0.47, 0.50, 0.50, "")
    assert "goal NOT met" in bench.goal_check(0.1, 0.50, 0.61, 0.50, "")


def test_table_names_the_budget_of_a_fitted_rule_and_the_lambda_of_an_agent() -> None:
    table = decisions(0.5, 0.4, 0.6).assign(
        strategy=["full", "fitted", "agent"], wa=0.4, seconds_mean=1.0
    )
    lines = bench.table_lines(table)
    assert lines[-2].startswith("| fitted | ≤ 0.5 | 0.400 |")
    assert lines[-1].startswith("| agent | λ = 0.1 | 0.400 |")


def test_one_classifier_per_fold_is_checked_before_anything_runs(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--folds", "2", "--classifiers", "a.ckpt"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "--classifiers needs 2 checkpoint(s), one per fold" in result.stderr


def test_the_default_page_holds_the_markers_once_each() -> None:
    text = bench.PAGE.read_text()
    assert text.count(bench.BEGIN) == 1 and text.count(bench.END) == 1
    assert text.index(bench.BEGIN) < text.index(bench.END)


def joint_run(
    uar: float, heard: float, full: float, vs_fitted: float, lam: float = 0.1, name: str = "0-seed1"
) -> tuple:
    """One rl=joint run as the benchmark reads it: its decisions table, metrics and the
    folder its artifacts were downloaded to (named after its fold and seed)."""
    table = decisions(full, uar, heard).assign(
        strategy=["full", "fitted", "joint"], wa=0.4, seconds_mean=1.0, wait_cost=lam
    )
    metrics = {
        f"test/joint_uar_lambda{lam:g}": uar,
        f"test/joint_fraction_lambda{lam:g}": heard,
        f"test/joint_full_uar_lambda{lam:g}": full,
        f"test/joint_vs_fitted_uar_lambda{lam:g}": vs_fitted,
        "test/joint_wait_cost": lam,
    }
    return table, metrics, Path(name) / "dl"


@pytest.mark.parametrize(
    ("runs", "goal", "above"),
    [
        ([joint_run(0.49, 0.5, 0.5, 0.01), joint_run(0.47, 0.6, 0.48, 0.03)], "met", "above"),
        ([joint_run(0.45, 0.5, 0.5, 0.01), joint_run(0.47, 0.6, 0.5, -0.03)], "NOT met", "NOT"),
    ],
)
def test_the_joint_report_checks_the_goal_on_the_means_over_runs(
    tmp_path, runs, goal: str, above: str
) -> None:
    lines, (check,) = bench.joint_report(runs, tmp_path / "plot.png")
    row = next(line for line in lines if line.startswith("| 0.1 |"))
    uar = sum(r[1]["test/joint_uar_lambda0.1"] for r in runs) / 2
    assert row.startswith(f"| 0.1 | 2 | {uar:.3f} ± ")
    assert f"goal {goal}" in check
    assert check.split("; ")[-1].startswith(f"{above} above" if above == "NOT" else "above")
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"


def test_the_page_holds_the_joint_markers_once_each() -> None:
    text = bench.PAGE.read_text()
    assert text.count(bench.JOINT_BEGIN) == 1 and text.count(bench.JOINT_END) == 1


def test_a_finished_run_is_reused_and_finished_only_runs_nothing(tmp_path, monkeypatch) -> None:
    out = tmp_path / "0-seed42"
    (out / "dl").mkdir(parents=True)
    decisions(0.5, 0.4, 0.6).to_csv(out / "dl" / "decisions.csv", index=False)
    (out / "bench_run.json").write_text(json.dumps({"test/uar": 0.5}))
    never = ["false"]  # a command that fails: a run it started would raise
    table, metrics, local = bench.run_agents(str(tmp_path), never, {}, "x", "0-seed42", [])
    assert metrics == {"test/uar": 0.5} and local == out / "dl"
    assert table.uar.tolist() == pytest.approx([0.5, 0.4, 0.4])
    with pytest.raises(subprocess.CalledProcessError):  # not finished: it is run
        bench.run_agents(str(tmp_path), never, {}, "x", "1-seed42", [])
    monkeypatch.setattr(bench, "FINISHED_ONLY", True)
    assert bench.run_agents(str(tmp_path), never, {}, "x", "1-seed42", []) is None


def test_runs_of_other_lambdas_are_reported_per_lambda_over_the_runs_that_trained_it(
    tmp_path,
) -> None:
    runs = [
        joint_run(0.40, 0.5, 0.45, -0.01, lam=0.03, name="1-seed42"),
        joint_run(0.44, 0.7, 0.45, 0.02, lam=0.03, name="0-seed42"),
        joint_run(0.30, 0.3, 0.44, 0.01, lam=0.05, name="0-seed42"),
    ]
    lines, checks = bench.joint_report(runs, tmp_path / "plot.png")
    assert next(x for x in lines if x.startswith("| 0.03 |")).startswith("| 0.03 | 2 | 0.420 ± ")
    assert next(x for x in lines if x.startswith("| 0.05 |")).startswith("| 0.05 | 1 | 0.300 ± ")
    # one line per run and λ, in fold order within each λ
    per_run = [x.split(" | ")[1] for x in lines if "-seed42 |" in x]
    assert per_run == ["0-seed42", "1-seed42", "0-seed42"]
    assert "λ = 0.03 in 2 run(s), λ = 0.05 in 1 run(s)" in "\n".join(lines)
    assert [c.split(":")[0] for c in checks] == ["λ = 0.03", "λ = 0.05"]


def test_several_work_dirs_are_only_reported_together(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--work-dir", "a", "b"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "several are reported with --finished-only" in result.stderr
    reported = [sys.executable, str(SCRIPT), "--work-dir", "a", "b", "--finished-only"]
    result = subprocess.run(reported, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert "reported together with --design joint" in result.stderr
    assert not (tmp_path / "a").exists()
