"""`ser.features.pyaa.PyAAFeatures` against pyAudioAnalysis 0.3.14's
`ShortTermFeatures.feature_extraction` (the reference), plus batching and config checks.

Relative error, per feature row (one feature over all frames of one signal):

    rel_err(row) = max_t |ours[t] - ref[t]| / (max_t |ref[t]| + TINY),   TINY = 1e-10

so a row that is ~0 everywhere (e.g. MFCC 2..13 of digital silence, which are DCT roundoff of
~1e-14) does not divide by zero; every row must have rel_err <= 1e-3. Pointwise, every value
must also satisfy |ours - ref| <= 1e-3 |ref| + 1e-6 (max_t |ref| + TINY) + 1e-12 (the last term:
rows the reference computes as exactly 0, such as the deltas of identical frames, come out as
~1e-15 matmul roundoff here), and the two counted features (zero-crossing rate, roll-off) must
equal the reference rounded to float32.

One documented exception: in a tone whose period divides the 50 ms frame (440 Hz = 22 cycles),
some mel filters hold no energy at all, and the reference's log10(filter energy + eps) then
depends on FFT roundoff (~1e-19 next to eps = 2.2e-16). Swapping the reference's own FFT
(scipy.fftpack) for numpy's moves its MFCCs by as much (up to ~1e-3 in log10 units), so for that
case the MFCC and delta-MFCC rows get an absolute floor of MFCC_ROUNDOFF_FLOOR.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ser.features.pyaa import BASE_NAMES, FEATURE_NAMES, PyAAFeatures

RAVDESS = Path(__file__).resolve().parents[3] / "shared/data/ravdess"
PYAA_CONFIG = Path(__file__).resolve().parents[2] / "conf/features/pyaa.yaml"
# Six utterances across actors, sexes, emotions and intensities.
RAVDESS_FILES = [
    "Actor_01/03-01-01-01-01-01-01.flac",  # neutral
    "Actor_05/03-01-03-02-01-01-05.flac",  # happy, strong
    "Actor_10/03-01-05-02-02-02-10.flac",  # angry, strong
    "Actor_14/03-01-04-01-01-02-14.flac",  # sad
    "Actor_19/03-01-06-02-02-01-19.flac",  # fearful, strong
    "Actor_24/03-01-08-02-01-01-24.flac",  # surprised, strong
]
SR = 16000
WIN, STEP = 800, 400  # 50 ms / 25 ms at 16 kHz
TINY = 1e-10
MAX_REL = 1e-3
MFCC_ROUNDOFF_FLOOR = 2e-3
COUNTED = ("zcr", "spectral_rolloff")

Reference = Callable[..., np.ndarray]


@pytest.fixture(scope="module")
def reference() -> Reference:
    """pyAudioAnalysis features of int16 samples as (frames, dim), like ours."""
    stf = pytest.importorskip(
        "pyAudioAnalysis.ShortTermFeatures",
        reason="pyAudioAnalysis (test-only reference) is not installed",
    )

    def run(samples: np.ndarray, sr: int = SR, win: int = WIN, step: int = STEP, deltas=True):
        feats, names = stf.feature_extraction(samples, sr, win, step, deltas=deltas)
        assert tuple(names) == (FEATURE_NAMES if deltas else BASE_NAMES)
        return feats.T

    return run


def ours(samples: np.ndarray, extractor: PyAAFeatures | None = None) -> np.ndarray:
    """Our features of int16 samples (fed as float32 in [-1, 1], i.e. int16 / 2**15)."""
    extractor = extractor or PyAAFeatures()
    with torch.no_grad():
        return extractor(torch.from_numpy(samples.astype(np.float32) / 2**15)).numpy()


def rel_errors(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-feature relative error (see the module docstring): (frames, dim) -> (dim,)."""
    return np.abs(got - ref).max(axis=0) / (np.abs(ref).max(axis=0) + TINY)


def assert_parity(got: np.ndarray, ref: np.ndarray, mfcc_floor: float = 0.0) -> None:
    names = FEATURE_NAMES if got.shape[1] == len(FEATURE_NAMES) else BASE_NAMES
    assert got.shape == ref.shape
    assert got.dtype == np.float32
    diff = np.abs(got - ref)
    scale = np.abs(ref).max(axis=0) + TINY
    allowed = np.full(len(names), MAX_REL)
    if mfcc_floor:
        mfcc_rows = np.array(["mfcc" in n for n in names])
        allowed[mfcc_rows] = np.maximum(MAX_REL, mfcc_floor / scale[mfcc_rows])
    errors = rel_errors(got, ref)
    bad = {n: f"{e:.2e}" for n, e, a in zip(names, errors, allowed, strict=True) if e > a}
    assert not bad, f"relative error above the limit: {bad}"
    atol = np.maximum(1e-6, allowed - MAX_REL) * scale + 1e-12
    pointwise = diff <= MAX_REL * np.abs(ref) + atol
    mismatched = sorted({names[j] for j in np.where(~pointwise)[1]})
    assert not mismatched, f"pointwise mismatch in {mismatched}"
    for name in COUNTED:
        j = names.index(name)
        np.testing.assert_array_equal(got[:, j], ref[:, j].astype(np.float32), err_msg=name)


def quantise(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)


def tone(freq: float, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    return quantise(amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * SR)) / SR))


def edge_cases() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    return {
        "digital_silence": np.zeros(SR, np.int16),
        "dc_only": np.full(SR, 1000, np.int16),  # all zero after DC removal
        "low_level_noise": np.round(rng.normal(0.0, 3.0, SR)).astype(np.int16),  # ~3 LSB
        "hard_clipping": quantise(np.clip(4 * np.sin(2 * np.pi * 220 * t), -1, 1)),
        "clipped_noisy_speechlike": quantise(np.clip(rng.laplace(0, 0.4, SR), -1, 1)),
        "tone_c5_523hz": tone(523.25),  # chroma C, not periodic in the frame
        "tone_a4_441hz_loud": tone(441.0, amp=0.99),
        # Longer than one CPU chunk (cpu_chunk_frames): the flux crosses chunk borders.
        "chirp_and_noise_15s": quantise(
            0.5
            * np.sin(2 * np.pi * (100 + 200 * np.arange(15 * SR) / SR) * np.arange(15 * SR) / SR)
            + 0.01 * rng.normal(size=15 * SR)
        ),
        "short_1.5_windows": quantise(0.3 * rng.normal(size=WIN + WIN // 2)),
        "exactly_one_window": quantise(0.3 * rng.normal(size=WIN)),
    }


@pytest.mark.ravdess
@pytest.mark.skipif(not RAVDESS.is_dir(), reason=f"RAVDESS not found at {RAVDESS}")
@pytest.mark.parametrize("name", RAVDESS_FILES)
def test_parity_on_real_speech(name: str, reference: Reference) -> None:
    samples, sr = sf.read(RAVDESS / name, dtype="int16")
    assert sr == SR
    assert_parity(ours(samples), reference(samples))


@pytest.mark.parametrize("case", list(edge_cases()))
def test_parity_on_edge_cases(case: str, reference: Reference) -> None:
    samples = edge_cases()[case]
    assert_parity(ours(samples), reference(samples))


def test_parity_on_a_frame_periodic_tone(reference: Reference) -> None:
    """440 Hz (A4): exactly 22 cycles per frame, so some mel filters are empty (see top)."""
    samples = tone(440.0)
    assert_parity(ours(samples), reference(samples), mfcc_floor=MFCC_ROUNDOFF_FLOOR)


def test_parity_without_deltas_and_at_another_rate(reference: Reference) -> None:
    rng = np.random.default_rng(1)
    t = np.arange(12000) / 8000
    samples = quantise(0.4 * np.sin(2 * np.pi * 300 * t * (1 + t)) + 0.05 * rng.normal(size=t.size))
    extractor = PyAAFeatures(sample_rate=8000, win_ms=30.0, step_ms=10.0, deltas=False)
    assert extractor.dim == len(BASE_NAMES) == 34
    assert_parity(ours(samples, extractor), reference(samples, 8000, 240, 80, deltas=False))


def test_shorter_than_one_window_gives_no_frames(reference: Reference) -> None:
    samples = quantise(0.3 * np.random.default_rng(2).normal(size=WIN - 1))
    with pytest.raises(ValueError):  # pyAudioAnalysis concatenates an empty frame list
        reference(samples)
    assert ours(samples).shape == (0, 68)


def test_batched_equals_one_by_one() -> None:
    """Right-padded batch + lengths: per-utterance normalisation, frames as if unbatched."""
    rng = np.random.default_rng(3)
    lengths = [12345, 20000, 801, 500]
    waves = [
        (0.02 * k + rng.uniform(0.1, 0.9) * rng.normal(size=n)).clip(-1, 1).astype(np.float32)
        for k, n in enumerate(lengths)
    ]
    extractor = PyAAFeatures()
    batch = torch.zeros(len(waves), max(lengths))
    for i, w in enumerate(waves):
        batch[i, : len(w)] = torch.from_numpy(w)
    with torch.no_grad():
        batched = extractor(batch, torch.tensor(lengths))
        singles = [extractor(torch.from_numpy(w)) for w in waves]
    assert batched.shape == (len(waves), extractor.num_frames(max(lengths)), 68)
    valid = extractor.num_frames(torch.tensor(lengths))
    assert (
        valid.tolist()
        == [extractor.num_frames(n) for n in lengths]
        == [s.shape[0] for s in singles]
    )
    for i, single in enumerate(singles):
        n = int(valid[i])
        torch.testing.assert_close(batched[i, :n], single, rtol=1e-5, atol=1e-7)
        assert not batched[i, n:].any()  # frames past the end are zero


@pytest.mark.parametrize("chunk", [1, 50])
def test_cpu_chunking_does_not_change_results(chunk: int) -> None:
    rng = np.random.default_rng(4)
    lengths = torch.tensor([16000, 9000, 12000, 800, 0])
    wave = torch.from_numpy(rng.uniform(-1, 1, (5, 16000)).astype(np.float32))
    whole, chunked = PyAAFeatures(), PyAAFeatures()
    whole.cpu_chunk_frames, chunked.cpu_chunk_frames = None, chunk
    with torch.no_grad():
        torch.testing.assert_close(chunked(wave, lengths), whole(wave, lengths), rtol=1e-6, atol=0)


def test_input_is_not_modified() -> None:
    wave = torch.rand(2, 4000, dtype=torch.float64) * 2 - 1
    before = wave.clone()
    PyAAFeatures()(wave, torch.tensor([4000, 3000]))
    assert torch.equal(wave, before)


def test_leading_dims_and_dtype() -> None:
    extractor = PyAAFeatures()
    wave = torch.rand(2, 3, 4000) * 2 - 1
    with torch.no_grad():
        out = extractor(wave)
        flat = extractor(wave.reshape(6, 4000))
    assert out.shape == (2, 3, extractor.num_frames(4000), extractor.dim)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.reshape(6, -1, extractor.dim), flat, rtol=0, atol=0)


def test_dim_and_names() -> None:
    with_deltas, without = PyAAFeatures(), PyAAFeatures(deltas=False)
    assert with_deltas.dim == len(FEATURE_NAMES) == len(with_deltas.feature_names) == 68
    assert without.dim == len(BASE_NAMES) == len(without.feature_names) == 34
    assert FEATURE_NAMES[:34] == BASE_NAMES
    assert FEATURE_NAMES[34:] == tuple(f"delta {n}" for n in BASE_NAMES)
    assert (with_deltas.hop_length, with_deltas.win_length, with_deltas.sample_rate) == (
        400,
        800,
        16000,
    )


def test_hydra_config_instantiates() -> None:
    cfg = OmegaConf.merge(
        OmegaConf.create({"preprocess": {"sample_rate": 16000}}),
        OmegaConf.create({"features": OmegaConf.load(PYAA_CONFIG)}),
    )
    extractor = instantiate(cfg.features.extractor)
    assert isinstance(extractor, PyAAFeatures)
    assert cfg.features.name == "pyaa"
    assert extractor.dim == 68 and extractor.hop_length == 400
    assert extractor(torch.zeros(16000)).shape == (39, 68)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gpu_matches_cpu() -> None:
    wave = torch.rand(3, 24000) * 2 - 1
    extractor = PyAAFeatures()
    lengths = torch.tensor([24000, 20000, 9000])
    cpu = extractor(wave, lengths)
    gpu = extractor.cuda()(wave.cuda(), lengths.cuda()).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-5, atol=1e-6)
