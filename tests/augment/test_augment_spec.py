"""SpecAugment masks no more than configured, keeps shape, never edits its input, is seedable."""

from __future__ import annotations

import pytest
import torch

from ser.augment import SpecAugment


def changed_runs(flags: torch.Tensor) -> list[int]:
    """Lengths of the contiguous True runs of a 1-D boolean tensor."""
    runs, length = [], 0
    for flag in [*flags.tolist(), False]:
        if flag:
            length += 1
        elif length:
            runs.append(length)
            length = 0
    return runs


def masked_rows_and_cols(before: torch.Tensor, after: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Which frames / dims were masked whole, asserting no entry changed outside them."""
    changed = before != after
    rows, cols = changed.all(dim=1), changed.all(dim=0)
    assert torch.equal(changed, rows[:, None] | cols[None, :])
    return rows, cols


def test_masks_stay_within_counts_and_widths() -> None:
    spec = SpecAugment(freq_masks=2, freq_width=5, time_masks=3, time_width=10, mask_value=0.0)
    torch.manual_seed(0)
    widest_time = widest_freq = 0
    for _ in range(100):
        x = torch.randn(120, 40)  # randn is never exactly the 0.0 mask value
        y = spec(x)
        assert y.shape == x.shape and y.dtype == x.dtype
        rows, cols = masked_rows_and_cols(x, y)
        assert int(rows.sum()) <= 3 * 10 and int(cols.sum()) <= 2 * 5
        assert len(changed_runs(rows)) <= 3 and len(changed_runs(cols)) <= 2
        assert torch.all(y[rows] == 0) and torch.all(y[:, cols] == 0)
        widest_time = max([widest_time, *changed_runs(rows)])
        widest_freq = max([widest_freq, *changed_runs(cols)])
    # Masks are actually drawn up to (but only overlaps beyond) the configured widths.
    assert 10 <= widest_time <= 30 and 5 <= widest_freq <= 10


def test_single_masks_are_one_run_no_wider_than_configured() -> None:
    spec = SpecAugment(freq_masks=1, freq_width=6, time_masks=1, time_width=12, mask_value=0.0)
    torch.manual_seed(1)
    for _ in range(100):
        x = torch.randn(80, 30)
        rows, cols = masked_rows_and_cols(x, spec(x))
        assert all(run <= 12 for run in changed_runs(rows)) and len(changed_runs(rows)) <= 1
        assert all(run <= 6 for run in changed_runs(cols)) and len(changed_runs(cols)) <= 1


def test_time_masks_respect_max_time_ratio_on_short_inputs() -> None:
    spec = SpecAugment(
        freq_masks=0, time_masks=1, time_width=100, max_time_ratio=0.2, mask_value=0.0
    )
    torch.manual_seed(2)
    for _ in range(50):
        x = torch.randn(30, 8)
        rows, cols = masked_rows_and_cols(x, spec(x))
        assert int(rows.sum()) <= 6 and not cols.any()


def test_widths_larger_than_the_axis_are_capped() -> None:
    spec = SpecAugment(freq_masks=1, freq_width=50, time_masks=1, time_width=50, mask_value=0.0)
    torch.manual_seed(3)
    for _ in range(20):
        x = torch.randn(5, 4)
        assert spec(x).shape == (5, 4)


def test_mean_mask_value_is_the_per_dimension_mean() -> None:
    spec = SpecAugment(freq_masks=0, time_masks=2, time_width=10)
    torch.manual_seed(4)
    x = torch.randn(50, 6) * 3 + torch.arange(6.0) * 10  # very different per-dim levels
    y = spec(x)
    rows = (x != y).all(dim=1)
    assert rows.any()
    torch.testing.assert_close(y[rows], x.mean(dim=0).expand(int(rows.sum()), 6))


def test_input_is_never_modified() -> None:
    torch.manual_seed(5)
    x = torch.randn(100, 20)
    kept = x.clone()
    y = SpecAugment(freq_masks=2, freq_width=8, time_masks=2, time_width=20)(x)
    assert torch.equal(x, kept)
    assert not torch.equal(y, x)


def test_p_zero_and_eval_mode_are_identity() -> None:
    x = torch.randn(100, 20)
    off = SpecAugment(freq_masks=4, freq_width=10, time_masks=4, time_width=30, p=0.0)
    for seed in range(20):
        torch.manual_seed(seed)
        assert torch.equal(off(x), x)
    on = SpecAugment(freq_masks=4, freq_width=10, time_masks=4, time_width=30).eval()
    assert torch.equal(on(x), x)


def test_p_is_the_probability_of_masking() -> None:
    spec = SpecAugment(freq_masks=2, freq_width=8, time_masks=2, time_width=20, p=0.5)
    torch.manual_seed(6)
    x = torch.randn(100, 20)
    masked = sum(not torch.equal(spec(x), x) for _ in range(200))
    assert 70 <= masked <= 130


def test_batched_input_shares_masks() -> None:
    torch.manual_seed(7)
    x = torch.randn(3, 60, 16)
    y = SpecAugment(mask_value=0.0)(x)
    assert y.shape == x.shape
    changed = x != y
    assert torch.equal(changed[0], changed[1]) and torch.equal(changed[1], changed[2])


def test_same_seed_same_masks_different_seed_different() -> None:
    spec = SpecAugment(freq_masks=2, freq_width=8, time_masks=2, time_width=20)
    x = torch.randn(200, 40)

    def run(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return torch.stack([spec(x) for _ in range(5)])

    assert torch.equal(run(10), run(10))
    assert not torch.equal(run(10), run(11))


def test_explicit_generator_is_reproducible_and_leaves_global_state_alone() -> None:
    x = torch.randn(200, 40)
    global_stream = torch.rand(3, generator=torch.Generator().manual_seed(0))
    outs = []
    for _ in range(2):
        spec = SpecAugment(generator=torch.Generator().manual_seed(99))
        torch.manual_seed(0)
        outs.append(torch.stack([spec(x) for _ in range(5)]))
        assert torch.equal(torch.rand(3), global_stream)  # nothing drawn from the global RNG
    assert torch.equal(outs[0], outs[1])


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        SpecAugment(p=1.5)
    with pytest.raises(ValueError):
        SpecAugment(freq_width=-1)
    with pytest.raises(ValueError):
        SpecAugment(mask_value="median")
    with pytest.raises(ValueError):
        SpecAugment()(torch.randn(10))
