"""scripts/bench_accuracy.py's table in docs/results.md: rows merge by (model, features,
overrides), the whole benchmark's time survives partial runs, and the page holds the markers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_accuracy.py"
spec = importlib.util.spec_from_file_location("bench_accuracy", SCRIPT)
assert spec is not None and spec.loader is not None
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def row(model: str, overrides: str, uar: str, minutes: str) -> str:
    return f"| {model} | pyaa | {overrides} | **{uar}** | 0.5 | 0.5 | - | {minutes} |"


def test_rows_merge_by_model_features_and_overrides_and_the_total_is_kept() -> None:
    old = bench.table_block(
        "",
        {
            ("svm", "pyaa", "-"): row("svm", "-", "0.40", "1.0"),
            ("knn", "pyaa", "-"): row("knn", "-", "0.30", "2.0"),
        },
        f"{bench.WHOLE} took 50 minutes.",
    )
    new = bench.table_block(
        old,
        {
            ("svm", "pyaa", "-"): row("svm", "-", "0.45", "1.5"),
            ("svm", "pyaa", "x=1"): row("svm", "x=1", "0.41", "1.2"),
        },
    )
    lines = new.splitlines()
    assert lines[0] == bench.BEGIN and lines[1].startswith("| model |")
    body = [line for line in lines if line.startswith("| ") and "---" not in line][1:]
    assert body == [  # replaced in place, kept, then appended
        row("svm", "-", "0.45", "1.5"),
        row("knn", "-", "0.30", "2.0"),
        row("svm", "x=1", "0.41", "1.2"),
    ]
    assert f"{bench.WHOLE} took 50 minutes." in lines  # a partial run keeps the total
    assert (
        f"{bench.WHOLE} took 40 minutes."
        in bench.table_block(new, {}, f"{bench.WHOLE} took 40 minutes.").splitlines()
    )


def test_the_default_page_holds_the_markers_once_each() -> None:
    text = bench.PAGE.read_text()
    assert text.count(bench.BEGIN) == 1 and text.count(bench.END) == 1
    assert text.index(bench.BEGIN) < text.index(bench.END)
