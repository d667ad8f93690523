"""pyAudioAnalysis short-term features (34, or 68 with deltas), vectorised in torch.

Reproduces ``pyAudioAnalysis.ShortTermFeatures.feature_extraction(signal, fs, window, step,
deltas)`` (version 0.3.14) numerically, batched over utterances and frames, on CPU or GPU.
pyAudioAnalysis itself is never imported here: it is only the reference in the tests and the
benchmark. The reference's quirks are reproduced on purpose (marked "Quirk:" below), because the
point of this extractor is to give the same numbers as the widely used original:

- the signal is DC-removed and peak-normalised per utterance, ``x / (max|x| + 1e-10)``;
- frames are rectangular (no window function) and the magnitude spectrum keeps bins
  ``0 .. window//2 - 1`` (the Nyquist bin is dropped), divided by ``window//2``;
- the MFCC filterbank treats those ``window//2`` bins as if they spanned 0..fs, so every filter
  sits at twice its nominal frequency (bin k is at ``k * fs / window`` Hz, the filterbank
  assumes ``k * fs / (window//2)``);
- the spectral centroid/spread index and the chroma map use ``(k + 1) * fs / window`` for bin k;
- the chroma map assigns (does not sum) bins to pitch classes, so where several bins share a
  chroma number only the last one counts, and divides by a doubly indexed bin count; bin 0
  gets a negative chroma number that wraps around like a numpy index;
- spectral flux of the first frame compares the frame with itself (0); deltas of the first
  frame are 0; later deltas are ``f[t] - f[t-1]``.

All arithmetic runs in float64, like the reference (so not on MPS): the zero-crossing rate and
the roll-off are counts that float32 rounding would move, and the MFCCs take log10(energy + eps)
of mel filters that can be nearly empty. Waveforms from 16-bit audio give bit-identical
normalised signals (their sums are exact in float64), so what remains is summation-order and
FFT rounding (~1e-15 relative). One limit: a mel filter with no energy at all (a tone periodic
in the frame, a frame of digital silence after DC removal) holds only FFT roundoff (~1e-19,
below eps = 2.2e-16), and there the reference's own value depends on its FFT: swapping its
scipy.fftpack for numpy.fft moves its MFCCs by up to ~1e-3, and torch's FFT differs by as much.
"""

from __future__ import annotations

import sys
from typing import overload

import numpy as np
import torch
from torch import nn

# pyAudioAnalysis adds machine epsilon in many places (log floors, divisions, cumsum).
EPS = sys.float_info.epsilon
# Added to the peak in pyAudioAnalysis's dc_normalize.
PEAK_FLOOR = 1e-10
N_SHORT_BLOCKS = 10
ROLLOFF = 0.90
N_MFCC = 13
N_CHROMA = 12

BASE_NAMES: tuple[str, ...] = (
    "zcr",
    "energy",
    "energy_entropy",
    "spectral_centroid",
    "spectral_spread",
    "spectral_entropy",
    "spectral_flux",
    "spectral_rolloff",
    *(f"mfcc_{i}" for i in range(1, N_MFCC + 1)),
    *(f"chroma_{i}" for i in range(1, N_CHROMA + 1)),
    "chroma_std",
)
# Same names and order as pyAudioAnalysis returns with deltas=True.
FEATURE_NAMES: tuple[str, ...] = (*BASE_NAMES, *(f"delta {n}" for n in BASE_NAMES))


def mfcc_filter_banks(
    sample_rate: int,
    num_fft: int,
    lowfreq: float = 133.33,
    linc: float = 200 / 3,
    logsc: float = 1.0711703,
    num_lin_filt: int = 13,
    num_log_filt: int = 27,
) -> np.ndarray:
    """pyAudioAnalysis's triangular filterbank (num_lin_filt + num_log_filt, num_fft).

    (Its ``if sampling_rate < 8000: nlogfil = 5`` sets a variable it never uses: no-op here too.)

    Quirk: ``nfreqs = k / num_fft * fs`` maps the ``window//2`` spectrum bins onto 0..fs, so the
    filters land at twice their nominal frequencies. Kept as is.
    """
    num_filt = num_lin_filt + num_log_filt
    freqs = np.zeros(num_filt + 2)
    freqs[:num_lin_filt] = lowfreq + np.arange(num_lin_filt) * linc
    freqs[num_lin_filt:] = freqs[num_lin_filt - 1] * logsc ** np.arange(1, num_log_filt + 3)
    heights = 2.0 / (freqs[2:] - freqs[0:-2])
    if np.floor(freqs[-1] * num_fft / sample_rate) >= num_fft:
        # pyAudioAnalysis fails here with an IndexError.
        raise ValueError(
            f"sample_rate={sample_rate} is too low for pyAudioAnalysis's MFCC filterbank "
            f"(its top filter ends at {freqs[-1]:.0f} Hz)"
        )
    fbank = np.zeros((num_filt, num_fft))
    nfreqs = np.arange(num_fft) / (1.0 * num_fft) * sample_rate
    for i in range(num_filt):
        low, cent, high = freqs[i], freqs[i + 1], freqs[i + 2]
        lid = np.arange(
            np.floor(low * num_fft / sample_rate) + 1,
            np.floor(cent * num_fft / sample_rate) + 1,
            dtype=int,
        )
        rid = np.arange(
            np.floor(cent * num_fft / sample_rate) + 1,
            np.floor(high * num_fft / sample_rate) + 1,
            dtype=int,
        )
        fbank[i][lid] = heights[i] / (cent - low) * (nfreqs[lid] - low)
        fbank[i][rid] = heights[i] / (high - cent) * (high - nfreqs[rid])
    return fbank


def chroma_matrix(sample_rate: int, num_fft: int) -> np.ndarray:
    """Linear map (num_fft, 12) from the power spectrum to pyAudioAnalysis's unnormalised chroma.

    Built by running the reference's own numpy indexing on the identity, so its quirks carry over
    exactly: ``C[num_chroma] = spec`` keeps only the last bin per chroma number (and wraps the
    negative number of bin 0), and ``C /= num_freqs_per_chroma[num_chroma]`` divides slot j by
    the bin count of the chroma number of *bin* ``num_chroma[j]``.
    """
    freqs = (np.arange(num_fft) + 1) * sample_rate / (2 * num_fft)
    num_chroma = np.round(12.0 * np.log2(freqs / 27.50)).astype(int)
    per_chroma = np.zeros(num_fft)
    for u in np.unique(num_chroma):
        idx = np.nonzero(num_chroma == u)
        per_chroma[idx] = idx[0].shape
    if num_chroma.max() >= num_fft:
        # pyAudioAnalysis's other branch fails with a shape mismatch (its "bug with large windows").
        raise ValueError(
            f"window of {2 * num_fft} samples is too short for pyAudioAnalysis's chroma features"
        )
    slots = np.zeros((num_fft, num_fft))  # slots[j, b]: weight of spectrum bin b in slot j
    slots[num_chroma] = np.eye(num_fft)
    slots /= per_chroma[num_chroma][:, None]
    padded = np.zeros((-(-num_fft // 12) * 12, num_fft))
    padded[:num_fft] = slots
    return padded.reshape(-1, 12, num_fft).sum(axis=0).T


def dct_ortho_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_in, n_out) matrix of the orthonormal DCT-II (scipy ``dct(type=2, norm='ortho')``)."""
    n = np.arange(n_in)[:, None]
    k = np.arange(n_out)[None, :]
    mat = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    mat[:, 0] = np.sqrt(1.0 / n_in)
    return mat


def _entropy(blocks: torch.Tensor, total: torch.Tensor, floor: float = EPS) -> torch.Tensor:
    """Entropy of block energies (..., N_SHORT_BLOCKS) normalised by total energy (..., 1) + floor.

    Quirk: the tail that does not fill a block is dropped from the blocks but still counted in
    the total, as in pyAudioAnalysis's energy_entropy / spectral_entropy.
    """
    s = blocks / (total + floor)
    return -(s * torch.log2(s + EPS)).sum(-1)


def _block_sums(values: torch.Tensor) -> torch.Tensor:
    """Sums of N_SHORT_BLOCKS consecutive blocks of len // N_SHORT_BLOCKS along the last dim."""
    sub = values.shape[-1] // N_SHORT_BLOCKS
    return values[..., : sub * N_SHORT_BLOCKS].unflatten(-1, (N_SHORT_BLOCKS, sub)).sum(-1)


class PyAAFeatures(nn.Module):
    """pyAudioAnalysis short-term features: (..., samples) -> (..., frames, dim).

    ``dim`` is 68 with deltas (34 without), in the order of ``FEATURE_NAMES``. Frame t covers
    samples ``[t * hop_length, t * hop_length + win_length)``; only whole frames are kept, so an
    utterance of n samples has ``num_frames(n)`` frames (0 if shorter than one window, where
    pyAudioAnalysis raises instead).

    Batches: pass ``lengths`` (real samples per utterance) with right-padded input. The DC offset
    and peak used for normalisation then come from each utterance's own samples, frames inside an
    utterance equal the unbatched result, and frames past ``num_frames(lengths)`` are zero.
    Without ``lengths`` every sample of the last dimension counts as signal.

    Input scale: pyAudioAnalysis reads 16-bit integers and divides by 2**15, so ``int16 / 2**15``
    here gives the same features as its ``feature_extraction`` on the int16 array (any scale
    does, up to the 1e-10 peak floor). Computation is float64 on the input's device; the output
    has the input's floating dtype. On CPU the work is split into cache-sized chunks of small
    ops, which run fastest with ``torch.set_num_threads(1)`` (one process per core).
    """

    # Frames per chunk on CPU (None: whole batch at once); see _rows_per_chunk.
    cpu_chunk_frames: int | None = 512
    # Buffers registered in __init__ (declared for type checkers: Module.__getattr__ is untyped).
    fbank_t: torch.Tensor
    dct: torch.Tensor
    chroma_bins: torch.Tensor
    chroma: torch.Tensor
    ind: torch.Tensor

    def __init__(
        self,
        sample_rate: int = 16000,
        win_ms: float = 50.0,
        step_ms: float = 25.0,
        deltas: bool = True,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.win_length = round(sample_rate * win_ms / 1000)
        self.hop_length = round(sample_rate * step_ms / 1000)
        if self.win_length < 2 * N_SHORT_BLOCKS or self.hop_length < 1:
            raise ValueError(f"window {self.win_length} / step {self.hop_length} samples too small")
        self.deltas = deltas
        self.feature_names: tuple[str, ...] = FEATURE_NAMES if deltas else BASE_NAMES
        self.dim = len(self.feature_names)
        self.num_fft = self.win_length // 2
        n = self.num_fft
        f64 = torch.float64
        # Derived constants: not persistent, so state dicts do not carry them.
        # Only the bins each map uses are kept: the filterbank ends well below n, and the chroma
        # map uses one bin per chroma number.
        fbank = mfcc_filter_banks(sample_rate, n)
        last = int(np.nonzero(fbank.any(axis=0))[0].max()) + 1
        fbank_t = torch.tensor(fbank.T[:last] / n, dtype=f64)  # applied to n |X|
        self.register_buffer("fbank_t", fbank_t, persistent=False)
        dct = dct_ortho_matrix(fbank.shape[0], N_MFCC)
        self.register_buffer("dct", torch.tensor(dct, dtype=f64), persistent=False)
        chroma = chroma_matrix(sample_rate, n)
        used = np.nonzero(chroma.any(axis=1))[0]
        self.register_buffer("chroma_bins", torch.tensor(used), persistent=False)
        self.register_buffer("chroma", torch.tensor(chroma[used], dtype=f64), persistent=False)
        # Quirk: bin k is taken to be at (k + 1) * fs / window Hz for the centroid/spread.
        ind = torch.arange(1, n + 1, dtype=f64) * (sample_rate / (2.0 * n))
        self.register_buffer("ind", ind, persistent=False)

    @overload
    def num_frames(self, n_samples: int) -> int: ...
    @overload
    def num_frames(self, n_samples: torch.Tensor) -> torch.Tensor: ...
    def num_frames(self, n_samples: int | torch.Tensor) -> int | torch.Tensor:
        """Number of whole frames in n samples (int or integer tensor, elementwise)."""
        if isinstance(n_samples, torch.Tensor):
            frames = torch.div(n_samples - self.win_length, self.hop_length, rounding_mode="floor")
            return (frames + 1).clamp(min=0)
        return max((n_samples - self.win_length) // self.hop_length + 1, 0)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Features of ``wave`` (..., samples) in [-1, 1]; ``lengths`` (...) real samples each."""
        out_dtype = wave.dtype if wave.is_floating_point() else torch.float32
        lead, n_samples = wave.shape[:-1], wave.shape[-1]
        x = wave.reshape(-1, n_samples)
        n_frames = self.num_frames(n_samples)
        out = torch.zeros((x.shape[0], n_frames, self.dim), dtype=out_dtype, device=x.device)
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=x.device).reshape(-1).to(torch.long)
            if lengths.numel() != x.shape[0]:
                raise ValueError(f"lengths has {lengths.numel()} entries for {x.shape[0]} waves")
            lengths = lengths.clamp(0, n_samples)
        if n_frames > 0 and x.shape[0] > 0:
            rows = self._rows_per_chunk(x.shape[0], n_frames, x.device)
            for r in range(0, x.shape[0], rows):
                part = None if lengths is None else lengths[r : r + rows]
                out[r : r + rows] = self._forward_rows(x[r : r + rows], part)
        return out.reshape(*lead, n_frames, self.dim)

    def _rows_per_chunk(self, n_rows: int, n_frames: int, device: torch.device) -> int:
        # On CPU, a few hundred frames at a time keep the float64 temporaries in cache (and out
        # of fresh page-faulting allocations): about twice as fast as the whole batch at once.
        if device.type != "cpu" or self.cpu_chunk_frames is None:
            return n_rows
        return max(1, self.cpu_chunk_frames // n_frames)

    def _forward_rows(self, wave: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """(B, samples) -> (B, T, dim) float64, frames past each length zeroed."""
        x = self._normalise(wave.to(torch.float64, copy=True), lengths)  # in place on a copy
        feats = self._features(x)
        if self.deltas:
            # Quirk: the first frame's deltas are zero (no previous frame).
            delta = torch.nn.functional.pad(feats.diff(dim=1), (0, 0, 1, 0))
            feats = torch.cat([feats, delta], dim=-1)
        if lengths is not None:
            valid = (
                torch.arange(feats.shape[1], device=x.device) < self.num_frames(lengths)[:, None]
            )
            feats = feats * valid[..., None]
        return feats

    @staticmethod
    def _normalise(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """pyAudioAnalysis's dc_normalize per utterance: subtract the mean, divide by peak + 1e-10.

        (Its division by 2**15 is left out: the input is already in [-1, 1], i.e. int16 / 2**15,
        and the scale cancels in the peak normalisation.) Padding is set to 0. Works in place.
        """
        if lengths is None:
            x.sub_(x.mean(-1, keepdim=True))
        else:
            # A float mask: multiplying by it is faster than masked_fill_ on CPU.
            keep = (torch.arange(x.shape[-1], device=x.device) < lengths[:, None]).to(x.dtype)
            # Sum, then divide by the count: bit-identical to numpy's mean for 16-bit audio.
            mean = x.mul_(keep).sum(-1, keepdim=True) / lengths.clamp(min=1)[:, None]
            x.sub_(mean).mul_(keep)
        # max |x| as max(max x, -min x): two fast reductions, no temporary.
        peak = torch.maximum(x.amax(-1, keepdim=True), -x.amin(-1, keepdim=True))
        return x.div_(peak + PEAK_FLOOR)

    def _time_domain(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Zero-crossing rate, energy and entropy of energy: (B, samples) -> 3 x (B, T).

        Per-sample terms are computed once on the signal, not on the overlapping frames.
        """
        win, hop = self.win_length, self.hop_length
        n_frames = self.num_frames(x.shape[-1])
        starts = torch.arange(n_frames, device=x.device) * hop
        # |diff(sign)| is 0, 1 or 2: its running sum is exact in float64, so frame sums are too.
        steps = torch.nn.functional.pad(x.sign().diff(dim=-1).abs_().cumsum_(-1), (1, 0))
        zcr = (steps[:, starts + win - 1] - steps[:, starts]) / 2 / (win - 1.0)
        squares = x * x
        sub = win // N_SHORT_BLOCKS
        if win % N_SHORT_BLOCKS == 0 and hop % sub == 0:
            # Frames are whole blocks on a common grid: sum each block of the signal once.
            grid = squares[:, : x.shape[-1] // sub * sub].unflatten(-1, (-1, sub)).sum(-1)
            blocks = grid.unfold(-1, N_SHORT_BLOCKS, hop // sub)[:, :n_frames]
            frame_energy = blocks.sum(-1)
        else:
            framed = squares.unfold(-1, win, hop)
            blocks, frame_energy = _block_sums(framed), framed.sum(-1)
        return zcr, frame_energy / win, _entropy(blocks, frame_energy[..., None])

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """34 features of each frame of the normalised signals: (B, samples) -> (B, T, 34)."""
        frames = x.unfold(-1, self.win_length, self.hop_length)
        step = frames.shape[1]
        if x.device.type == "cpu" and self.cpu_chunk_frames is not None:
            step = max(1, self.cpu_chunk_frames // frames.shape[0])
        spectral, previous = [], None
        for t in range(0, frames.shape[1], step):
            feats, previous = self._spectral(frames[:, t : t + step], previous)
            spectral.append(feats)
        zcr, energy, energy_entropy = self._time_domain(x)
        time_domain = torch.stack([zcr, energy, energy_entropy], -1)
        return torch.cat([time_domain, torch.cat(spectral, dim=1)], dim=-1)

    def _spectral(
        self, frames: torch.Tensor, previous: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Spectral features of frames (B, T, window) -> (B, T, 31), and the last frame's
        normalised spectrum (B, n) for the flux of the next chunk (``previous`` of this one).

        The spectrum is kept unscaled (n times pyAudioAnalysis's |X|, n = window // 2); each
        feature is scale-free except where eps is added, and there eps is scaled to match.
        """
        f64 = torch.float64
        n = self.num_fft
        # Quirk: rectangular window, bins 0 .. n-1 only (no Nyquist).
        spectrum = torch.view_as_real(torch.fft.rfft(frames, dim=-1)[..., :n])
        re, im = spectrum[..., 0], spectrum[..., 1]
        power = torch.addcmul(re * re, im, im)  # n^2 |X|^2 (pyAudioAnalysis's chroma `spec`)
        mag = power.sqrt()  # n |X|
        total = power.sum(-1)
        eps_power, eps_mag = EPS * n * n, EPS * n

        # Centroid and spread of the peak-normalised spectrum Xt (divided by eps if all zero).
        peak = mag.amax(-1)
        peak = torch.where(peak == 0, torch.full_like(peak, EPS), peak)
        ind = self.ind.to(f64)
        moments = mag @ torch.stack([torch.ones_like(ind), ind], dim=-1)
        mag_sum = moments[..., 0]
        den = mag_sum / peak + EPS
        centroid = moments[..., 1] / peak / den
        # Spread straight from its definition: the moment form cancels badly for pure tones.
        dev = (ind - centroid[..., None]).square_().mul_(mag).sum(-1)
        spread = torch.sqrt(dev / peak / den)
        nyquist = self.sample_rate / 2.0

        spectral_entropy = _entropy(_block_sums(power), total[..., None], eps_power)

        # Quirk: eps is added to every bin before summing; frame 0 is compared with itself (0).
        unit = mag / (mag_sum + n * eps_mag)[..., None]
        before = unit[:, :1] if previous is None else previous[:, None]
        flux = torch.linalg.vector_norm(torch.diff(unit, dim=1, prepend=before), dim=-1) ** 2

        # First bin where the cumulative power (+eps) exceeds 90% of the total, over n; 0 if none.
        cum = power.cumsum(-1).add_(eps_power)
        below = torch.searchsorted(cum, (ROLLOFF * total)[..., None], right=True)[..., 0]
        rolloff = torch.where(below < n, below, torch.zeros_like(below)).to(f64) / n

        # Both maps are sparse over bins: multiply only the bins they use.
        fbank = self.fbank_t.to(f64)  # already divided by n
        mfcc = torch.log10(mag[..., : fbank.shape[0]] @ fbank + EPS) @ self.dct.to(f64)

        safe_total = torch.where(total == 0, torch.full_like(total, EPS), total)[..., None]
        chroma = power.index_select(-1, self.chroma_bins) @ self.chroma.to(f64) / safe_total
        chroma_std = chroma.std(-1, correction=0)

        scalars = [centroid / nyquist, spread / nyquist, spectral_entropy, flux, rolloff]
        feats = torch.cat([torch.stack(scalars, -1), mfcc, chroma, chroma_std[..., None]], dim=-1)
        return feats, unit[:, -1]
