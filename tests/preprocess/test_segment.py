"""Fixed windows with overlap for long recordings: count, overlap, lengths, the last window."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ser.preprocess import segment, segment_bounds

RATE = 16000


def test_windows_overlap_by_window_minus_hop() -> None:
    wave = np.arange(10 * RATE, dtype=np.float32)
    windows = segment(wave, RATE, window_s=3.0, hop_s=1.0, min_last_s=1.0)
    # Full windows start at 0..7 s; they reach the end exactly, so no tail window.
    assert len(windows) == 8
    assert all(len(w) == 3 * RATE for w in windows)
    for a, b in itertools.pairwise(windows):
        np.testing.assert_array_equal(a[RATE:], b[: 2 * RATE])  # 2 s shared
    assert windows[0][0] == 0 and windows[-1][-1] == len(wave) - 1


@pytest.mark.parametrize(
    ("seconds", "min_last_s", "expected"),
    [
        # 10.5 s, 4 s windows every 2 s: full at 0, 2, 4, 6 (ends 10 s); tail from 8 s is 2.5 s.
        (10.5, 2.0, [(0, 4), (2, 6), (4, 8), (6, 10), (8, 10.5)]),
        (10.5, 3.0, [(0, 4), (2, 6), (4, 8), (6, 10)]),  # the 2.5 s tail is too short
        (4.0, 1.0, [(0, 4)]),  # exactly one window
        (1.5, 2.0, [(0, 1.5)]),  # shorter than a window: one short window, never nothing
    ],
)
def test_last_partial_window_rule(seconds: float, min_last_s: float, expected: list) -> None:
    bounds = segment_bounds(int(seconds * RATE), RATE, 4.0, 2.0, min_last_s)
    assert bounds.tolist() == [[int(s * RATE), int(e * RATE)] for s, e in expected]
    windows = segment(np.zeros(int(seconds * RATE)), RATE, 4.0, 2.0, min_last_s)
    assert [len(w) for w in windows] == [int((e - s) * RATE) for s, e in expected]


def test_defaults_no_overlap_and_half_window_tail() -> None:
    assert segment_bounds(7 * RATE, RATE, 2.0).tolist() == [
        [0, 2 * RATE],
        [2 * RATE, 4 * RATE],
        [4 * RATE, 6 * RATE],
        [6 * RATE, 7 * RATE],  # 1 s tail = half a window: kept
    ]
    assert len(segment_bounds(int(6.9 * RATE), RATE, 2.0)) == 3  # 0.9 s tail: dropped


def test_start_times_and_empty_input() -> None:
    bounds = segment_bounds(5 * RATE, RATE, window_s=2.0, hop_s=0.5)
    np.testing.assert_allclose(bounds[:, 0] / RATE, [0, 0.5, 1, 1.5, 2, 2.5, 3])
    assert segment(np.zeros(0), RATE, 1.0) == []


def test_windows_are_views_not_copies() -> None:
    wave = np.zeros(5 * RATE, dtype=np.float32)
    assert all(np.shares_memory(w, wave) for w in segment(wave, RATE, 2.0, 1.0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window_s": 0.0}, "at least one sample"),
        ({"window_s": 1.0, "hop_s": 0.0}, "at least one sample"),
        ({"window_s": 1.0, "min_last_s": -1.0}, "min_last_s"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        segment(np.zeros(RATE), RATE, **kwargs)


def test_stereo_is_refused() -> None:
    with pytest.raises(ValueError, match="mono"):
        segment(np.zeros((RATE, 2)), RATE, 1.0)
