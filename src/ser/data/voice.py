"""A source-filter voice that speaks emotions: the synthesiser behind the synthetic corpus.

Each utterance is a Rosenberg glottal-pulse train following an F0 contour (declination, pitch
accents, a random wander, a final fall or rise), with jitter, shimmer and aspiration noise,
filtered by a cascade of four time-varying formant resonators that move through a sequence of
syllables (consonant + vowel), with fricative noise, stop bursts and pauses between them.
Speakers differ in pitch, vocal-tract length, loudness and voice quality; emotions shift pitch
level and range, loudness, spectral tilt, speaking rate and breathiness the way acted speech
does, with enough per-utterance and per-speaker spread that the task is learnable but not
trivial.

Every utterance is seeded from (seed, speaker, emotion, index), so it is a pure function of
those: it does not depend on generation order or corpus size. The corpus files (folders,
markers, index) are `ser.data.synthetic`.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, lfilter, sosfilt

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry")

# Bump when the generated audio changes, so cached corpora of an older version are not reused.
GENERATOR_VERSION = 1

# Per-emotion means of the prosodic/voice parameters drawn for each utterance.
_PARAMS = (
    "f0_shift",  # semitones relative to the speaker's baseline
    "f0_range",  # size of pitch accents, semitones
    "level",  # loudness, dB relative to neutral
    "rate",  # syllables per second
    "oq",  # glottal open quotient: lower = sharper closure = flatter spectrum
    "tilt",  # one-pole low-pass coefficient: higher = steeper spectral tilt
    "breath",  # aspiration-noise multiplier
    "jitter",  # jitter/shimmer multiplier
    "pause",  # probability of a pause at a syllable boundary
    "f1",  # F1 scale (effort opens the jaw)
    "f2",  # F2 scale (smiling shortens the front cavity)
)
_P = {name: i for i, name in enumerate(_PARAMS)}
_MEANS = np.array(
    [
        # f0_shift f0_range level rate  oq    tilt  breath jitter pause f1    f2
        [0.0, 2.5, 0.0, 4.2, 0.60, 0.35, 1.0, 1.0, 0.15, 1.00, 1.00],  # neutral
        [2.5, 5.0, 3.0, 4.8, 0.55, 0.28, 0.9, 1.2, 0.10, 1.04, 1.05],  # happy
        [-1.5, 1.2, -5.0, 3.3, 0.70, 0.55, 2.2, 1.3, 0.30, 0.97, 0.98],  # sad
        [3.5, 3.5, 7.0, 5.0, 0.42, 0.12, 0.7, 1.5, 0.08, 1.08, 1.00],  # angry
    ]
)
# Per-utterance spread around the (speaker-specific) emotion mean.
_SD = np.array([1.2, 0.7, 2.0, 0.35, 0.04, 0.06, 0.25, 0.2, 0.05, 0.02, 0.02])
_LOW = np.array([-8.0, 0.3, -20.0, 2.0, 0.30, 0.0, 0.2, 0.3, 0.0, 0.85, 0.85])
_HIGH = np.array([10.0, 10.0, 20.0, 7.5, 0.85, 0.80, 5.0, 4.0, 0.6, 1.20, 1.20])

# Seconds per syllable (incl. pauses) of neutral speech: turns a drawn duration into a syllable
# count, so neutral utterances span the duration range and slower emotions come out longer.
_NEUTRAL_SYLLABLE_TIME = 0.27
_NEUTRAL_RMS_DB = -28.0  # active-speech RMS of a neutral utterance of an average speaker

# Male reference formants F1-F4 (Hz), roughly Peterson & Barney / Hillenbrand.
_VOWELS = np.array(
    [
        [270, 2290, 3010, 3700],  # i
        [390, 1990, 2550, 3600],  # I
        [530, 1840, 2480, 3550],  # e
        [660, 1720, 2410, 3500],  # ae
        [730, 1090, 2440, 3400],  # a
        [570, 840, 2410, 3350],  # o
        [440, 1020, 2240, 3300],  # U
        [300, 870, 2240, 3300],  # u
        [640, 1190, 2390, 3400],  # V
        [490, 1350, 1690, 3300],  # er
    ],
    dtype=float,
)
_APPROXIMANTS = np.array(
    [[360, 1300, 2700, 3500], [310, 1060, 1380, 3300], [300, 700, 2200, 3300]], dtype=float
)
_NASAL = np.array([250, 1150, 2300, 3400], dtype=float)
_F2_LOCI = np.array([900.0, 1700.0, 2300.0])  # labial, alveolar, velar
_BANDWIDTHS = np.array([60.0, 90.0, 150.0, 220.0])
_FRICATIVE_BANDS = ((1200.0, 7000.0), (2200.0, 4200.0), (3500.0, 7500.0), (5000.0, 7800.0))

# Segment kinds of an utterance plan.
_SIL, _VOWEL, _FRIC, _CLOSURE, _BURST, _NASAL_K, _APPROX = range(7)


@dataclass(frozen=True)
class SpeakerProfile:
    """The fixed traits of one synthetic speaker."""

    index: int
    gender: str
    f0_hz: float  # pitch baseline
    formant_scale: float  # inverse vocal-tract length
    level_db: float  # habitual loudness
    jitter: float  # relative period perturbation
    shimmer: float  # relative amplitude perturbation
    breathiness: float  # aspiration noise relative to the glottal pulses
    rate_scale: float  # habitual speaking rate
    expressiveness: float  # how strongly this speaker acts the emotions
    style: np.ndarray  # (emotions, params) speaker-specific offsets to the emotion means


def speaker_gender(speaker: int) -> str:
    """Genders alternate (even = female) so every speaker split contains both."""
    return "female" if speaker % 2 == 0 else "male"


def speaker_profile(speaker: int, seed: int = 0) -> SpeakerProfile:
    """The deterministic profile of `speaker` for `seed` (independent of the corpus size)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, speaker)))
    gender = speaker_gender(speaker)
    female = gender == "female"
    return SpeakerProfile(
        index=speaker,
        gender=gender,
        f0_hz=float(rng.uniform(190, 230) if female else rng.uniform(100, 130)),
        formant_scale=float(rng.uniform(1.12, 1.22) if female else rng.uniform(0.94, 1.04)),
        level_db=float(rng.normal(0.0, 2.5)),
        jitter=float(rng.uniform(0.004, 0.012)),
        shimmer=float(rng.uniform(0.02, 0.06)),
        breathiness=float(rng.uniform(0.04, 0.14) * (1.3 if female else 1.0)),
        rate_scale=float(np.exp(rng.normal(0.0, 0.08))),
        expressiveness=float(rng.uniform(0.7, 1.25)),
        style=rng.normal(0.0, 0.5, size=_MEANS.shape) * _SD,
    )


def _emotion_params(
    rng: np.random.Generator, profile: SpeakerProfile, emotion_index: int
) -> np.ndarray:
    """Draw one utterance's parameters around the speaker's version of the emotion."""
    neutral = _MEANS[0]
    mean = neutral + profile.expressiveness * (_MEANS[emotion_index] - neutral)
    mean = mean + profile.style[emotion_index]
    params = mean + _SD * rng.standard_normal(len(_PARAMS))
    return np.clip(params, _LOW, _HIGH)


@dataclass
class _Plan:
    """Segment sequence of one utterance (durations in seconds)."""

    kind: list[int]
    dur: list[float]
    voice: list[float]  # voiced amplitude
    formants: list[np.ndarray | None]  # formant target (F1-F4) or None to glide through
    stressed: list[bool]
    aux: list[int]  # fricative band or place of articulation


def _plan_utterance(
    rng: np.random.Generator,
    params: np.ndarray,
    profile: SpeakerProfile,
    min_duration: float,
    max_duration: float,
) -> _Plan:
    """Syllables (optional onset consonant + vowel) with pauses, fitted into the duration range."""
    plan = _Plan([], [], [], [], [], [])

    def add(kind: int, dur: float, voice=0.0, formants=None, stressed=False, aux=0) -> None:
        plan.kind.append(kind)
        plan.dur.append(dur)
        plan.voice.append(voice)
        plan.formants.append(formants)
        plan.stressed.append(stressed)
        plan.aux.append(aux)

    # Leading/trailing silence must leave room for speech in short corpora.
    edge_hi = min(0.3, 0.2 * min_duration)
    lead, trail = rng.uniform(min(0.05, edge_hi), edge_hi, size=2)
    # Aim below max_duration so that slow (sad) speech is rarely squeezed to fit.
    target = rng.uniform(min_duration, min_duration + 0.8 * (max_duration - min_duration))
    n_syl = max(1, round((target - lead - trail) / _NEUTRAL_SYLLABLE_TIME))
    rate = params[_P["rate"]] * profile.rate_scale
    scale = np.array([params[_P["f1"]], params[_P["f2"]], 1.0, 1.0]) * profile.formant_scale
    stressed = rng.random(n_syl) < 0.35
    stressed[rng.integers(n_syl)] = True  # every utterance carries at least one accent

    add(_SIL, lead)
    for s in range(n_syl):
        if s > 0 and rng.random() < params[_P["pause"]]:
            add(_SIL, rng.uniform(0.08, 0.25) * _MEANS[0, _P["rate"]] / rate)
        syl = rng.uniform(0.75, 1.25) * (1.25 if stressed[s] else 0.9) / rate
        vowel = _VOWELS[rng.integers(len(_VOWELS))] * scale
        amp = rng.uniform(0.85, 1.1) * (1.15 if stressed[s] else 0.8) * (1 - 0.3 * s / n_syl)
        if rng.random() < 0.8:
            cons = syl * rng.uniform(0.25, 0.4)
            syl -= cons
            kind = rng.choice(4, p=[0.3, 0.35, 0.15, 0.2])
            place = int(rng.integers(3))
            locus = np.array([280.0, _F2_LOCI[place], 2500.0, 3500.0]) * profile.formant_scale
            if kind == 0:
                add(_FRIC, cons, 0.0, locus, aux=int(rng.integers(len(_FRICATIVE_BANDS))))
            elif kind == 1:
                add(_CLOSURE, cons * 0.75, 0.0, locus)
                add(_BURST, cons * 0.25, 0.0, None, aux=place)
            elif kind == 2:
                add(_NASAL_K, cons, 0.3 * amp, _NASAL * profile.formant_scale)
            else:
                approx = _APPROXIMANTS[rng.integers(len(_APPROXIMANTS))] * profile.formant_scale
                add(_APPROX, cons, 0.55 * amp, approx)
        add(_VOWEL, syl, amp, vowel, stressed=bool(stressed[s]))
    add(_SIL, trail)

    # Squeeze or stretch the speech (not the edges) into [min_duration, max_duration].
    dur = np.array(plan.dur)
    speech = dur[1:-1].sum()
    margin = min(0.01, (max_duration - min_duration) / 2)  # keeps sample rounding inside
    lo, hi = min_duration + margin - lead - trail, max_duration - margin - lead - trail
    dur[1:-1] *= np.clip(speech, lo, hi) / speech
    plan.dur = dur.tolist()
    return plan


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Triangular moving average (two boxcars) so envelopes have no clicks."""
    if width < 2:
        return x
    for _ in range(2):
        c = np.cumsum(np.concatenate([np.zeros(width), x, np.full(width, x[-1])]))
        x = (c[width:] - c[:-width])[width // 2 : width // 2 + len(x)] / width
    return x


@functools.lru_cache(maxsize=32)
def _bandpass(sample_rate: int, band: int) -> np.ndarray:
    nyq = sample_rate / 2
    lo, hi = _FRICATIVE_BANDS[band]
    return butter(2, [min(lo, 0.8 * nyq) / nyq, min(hi, 0.95 * nyq) / nyq], "band", output="sos")


@functools.lru_cache(maxsize=8)
def _highpass(sample_rate: int, cutoff: float) -> np.ndarray:
    return butter(2, cutoff / (sample_rate / 2), "high", output="sos")


def _f0_contour(
    rng: np.random.Generator,
    params: np.ndarray,
    profile: SpeakerProfile,
    t: np.ndarray,
    centres: np.ndarray,
    widths: np.ndarray,
    accents: np.ndarray,
    speech: tuple[float, float],
) -> np.ndarray:
    """F0 (Hz) at times t: declination + accents + random wander + final fall/rise."""
    start, end = speech
    span = max(end - start, 1e-3)
    rng_st = params[_P["f0_range"]]
    pos = np.clip((t - start) / span, 0.0, 1.0)
    st = params[_P["f0_shift"]] + rng.uniform(1.0, 3.0) * (0.5 - pos)  # declination
    for c, w, a in zip(centres, widths, accents, strict=True):
        st = st + a * rng_st * np.exp(-0.5 * ((t - c) / w) ** 2)
    knots = np.arange(start - 0.3, end + 0.6, 0.25)
    st = st + np.interp(t, knots, rng.normal(0.0, 0.3 + 0.2 * rng_st, len(knots)))
    final = np.clip((t - (end - 0.3)) / 0.3, 0.0, 1.0)
    st = st + final * (0.7 * rng_st if rng.random() < 0.2 else -0.5 * rng_st)
    return np.clip(profile.f0_hz * 2.0 ** (st / 12.0), 50.0, 600.0)


def _glottal_source(
    rng: np.random.Generator, f0: np.ndarray, sample_rate: int, oq: float, jit: float, shim: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rosenberg flow derivative (and the flow itself) with per-period jitter and shimmer."""
    n_periods = int(np.sum(f0) / sample_rate * 1.1) + 8
    phase0 = np.cumsum(f0) / sample_rate
    period_jit = 1.0 + jit * rng.standard_normal(n_periods)
    phase = np.cumsum(f0 * period_jit[phase0.astype(np.int64)]) / sample_rate
    k = phase.astype(np.int64)
    x = phase - k
    tp, tn = 0.7 * oq, 0.3 * oq
    opening = x < tp
    closing = ~opening & (x < tp + tn)
    dflow = np.zeros_like(x)
    dflow[opening] = np.sin(np.pi * x[opening] / tp) * (np.pi / (2 * tp))
    xc = (x[closing] - tp) / tn
    dflow[closing] = -np.sin(0.5 * np.pi * xc) * (np.pi / (2 * tn))
    flow = np.zeros_like(x)
    flow[opening] = 0.5 * (1 - np.cos(np.pi * x[opening] / tp))
    flow[closing] = np.cos(0.5 * np.pi * xc)
    amp = np.maximum(1.0 + shim * rng.standard_normal(n_periods), 0.2)[np.minimum(k, n_periods - 1)]
    return dflow * amp, flow


def _vocal_tract(
    source: np.ndarray, formants: np.ndarray, bandwidths: np.ndarray, sample_rate: int, block: int
) -> np.ndarray:
    """Cascade of four resonators, updated every `block` samples with the filter state carried."""
    n_blocks = formants.shape[0]
    r = np.exp(-np.pi * bandwidths / sample_rate)
    theta = 2 * np.pi * np.minimum(formants, 0.47 * sample_rate) / sample_rate
    a1, a2 = -2 * r * np.cos(theta), np.broadcast_to(r**2, formants.shape)
    # Multiply the four second-order denominators into one 8th-order polynomial per block.
    den = np.zeros((n_blocks, 9))
    den[:, 0] = 1.0
    order = 0
    for k in range(formants.shape[1]):
        sec = (np.ones(n_blocks), a1[:, k], a2[:, k])
        new = np.zeros_like(den)
        for i in range(order + 1):
            for j in range(3):
                new[:, i + j] += den[:, i] * sec[j]
        den, order = new, order + 2
    gain = den.sum(axis=1)  # unity gain at DC, like a Klatt cascade
    out = np.empty_like(source)
    zi = np.zeros(8)
    for b in range(n_blocks):
        sl = slice(b * block, min((b + 1) * block, len(source)))
        out[sl], zi = lfilter(gain[b : b + 1], den[b], source[sl], zi=zi)
    return out


def synthesize_utterance(
    speaker: int,
    emotion: str,
    index: int,
    sample_rate: int = 16000,
    seed: int = 0,
    n_speakers: int = 8,
    min_duration: float = 1.5,
    max_duration: float = 4.0,
) -> np.ndarray:
    """One utterance as a float32 mono waveform in [-1, 1] (a pure function of its arguments).

    `n_speakers` only validates `speaker`; a speaker's voice does not depend on the corpus size.
    """
    if emotion not in EMOTIONS:
        raise ValueError(f"unknown emotion {emotion!r}; expected one of {EMOTIONS}")
    if not 0 <= speaker < n_speakers:
        raise ValueError(f"speaker {speaker} out of range for n_speakers={n_speakers}")
    if not 0.3 <= min_duration <= max_duration:
        raise ValueError(
            f"need 0.3 <= min_duration <= max_duration, got {min_duration}, {max_duration}"
        )
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be >= 8000, got {sample_rate}")
    emo = EMOTIONS.index(emotion)
    profile = speaker_profile(speaker, seed)
    ss = np.random.SeedSequence(seed, spawn_key=(1, speaker, emo, index))
    rng = np.random.default_rng(ss)
    params = _emotion_params(rng, profile, emo)
    plan = _plan_utterance(rng, params, profile, min_duration, max_duration)

    bounds = np.round(np.concatenate([[0.0], np.cumsum(plan.dur)]) * sample_rate).astype(int)
    n = int(bounds[-1])
    sr = sample_rate
    voice = np.zeros(n)
    for k, (a, b) in enumerate(itertools.pairwise(bounds)):
        voice[a:b] = plan.voice[k]
    voice = _smooth(voice, int(0.012 * sr))

    # Formant targets sit at the middle of each segment; in between they glide linearly.
    times, targets = [], []
    for k, f in enumerate(plan.formants):
        if f is not None:
            a, b = bounds[k] / sr, bounds[k + 1] / sr
            if plan.kind[k] == _VOWEL:
                times += [a + 0.3 * (b - a), a + 0.7 * (b - a)]
                targets += [f, f]
            else:
                times.append(0.5 * (a + b))
                targets.append(f)
    block = max(1, int(0.01 * sr))
    n_blocks = -(-n // block)
    tb = (np.arange(n_blocks) + 0.5) * block / sr
    targets_arr = np.array(targets)
    formants = np.stack([np.interp(tb, times, targets_arr[:, k]) for k in range(4)], axis=1)

    # Prosody: accents on stressed vowels, small bumps on the others.
    vowels = [k for k in range(len(plan.kind)) if plan.kind[k] == _VOWEL]
    centres = np.array([(bounds[k] + bounds[k + 1]) / (2 * sr) for k in vowels])
    widths = np.array([0.3 * plan.dur[k] + 0.03 for k in vowels])
    accents = np.array(
        [rng.uniform(0.6, 1.0) if plan.stressed[k] else rng.uniform(0.0, 0.25) for k in vowels]
    )
    hop = max(1, int(0.005 * sr))
    tf = np.arange(0, n + hop, hop) / sr
    speech = (bounds[1] / sr, bounds[-2] / sr)
    f0_frames = _f0_contour(rng, params, profile, tf, centres, widths, accents, speech)
    f0 = np.interp(np.arange(n) / sr, tf, f0_frames)

    jit = params[_P["jitter"]]
    dflow, flow = _glottal_source(
        rng, f0, sr, params[_P["oq"]], profile.jitter * jit, profile.shimmer * jit
    )
    breath = profile.breathiness * params[_P["breath"]]
    # Aspiration is turbulence at the glottis, strongest while the folds are open.
    aspiration = rng.standard_normal(n) * (0.25 + flow) * (breath * 4.0)
    source = (dflow + aspiration) * voice
    bw = _BANDWIDTHS * (1.0 + 1.5 * breath) * (1.1 if profile.gender == "female" else 1.0)
    out = _vocal_tract(source, formants, bw, sr, block)

    active = voice > 0.5
    ref = np.sqrt(np.mean(out[active] ** 2)) if active.any() else 1.0
    # Fricatives and bursts are noise sources in front of the constriction: not formant-filtered.
    for k, kind in enumerate(plan.kind):
        a, b = int(bounds[k]), int(bounds[k + 1])
        if b - a < 4 or kind not in (_FRIC, _BURST):
            continue
        if kind == _FRIC:
            band = plan.aux[k]
            level = rng.uniform(0.15, 0.4)
        else:
            band = (0, 2, 1)[plan.aux[k]]  # labial broad, alveolar high, velar mid
            level = rng.uniform(0.4, 0.9)
        noise = sosfilt(_bandpass(sr, band), rng.standard_normal(b - a + 64))[64:]
        env = np.sin(np.linspace(0, np.pi, b - a)) ** (0.5 if kind == _FRIC else 0.2)
        if kind == _BURST:
            env *= np.exp(-np.linspace(0, 4, b - a))
        out[a:b] += noise / (noise.std() + 1e-12) * env * level * ref

    out = lfilter([1 - params[_P["tilt"]]], [1, -params[_P["tilt"]]], out)
    out = sosfilt(_highpass(sr, 60.0), out)

    level_db = _NEUTRAL_RMS_DB + profile.level_db + params[_P["level"]]
    rms = np.sqrt(np.mean(out[active] ** 2)) if active.any() else np.sqrt(np.mean(out**2))
    out *= 10 ** (level_db / 20) / (rms + 1e-12)

    # A faint, emotion-independent noise floor, as in any real recording.
    floor = lfilter([1.0], [1.0, -0.6], rng.standard_normal(n))
    out += floor / floor.std() * 10 ** (rng.uniform(-80.0, -65.0) / 20)
    peak = np.max(np.abs(out))
    if peak > 0.95:  # normalise rather than clip the rare very loud utterance
        out *= 0.95 / peak
    return out.astype(np.float32)
