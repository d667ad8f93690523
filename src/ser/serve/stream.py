"""Emotion over time: a sliding window over a recording (or a microphone take).

    ser-stream FILE [--model REF] [--window-s 1.0] [--hop-s 0.25] [--out DIR]
    ser-stream --mic SECONDS [--model REF] ...

Prints one row per window (time -> label and its probability) and writes, atomically,
`<name>_timeline.csv` (start_s, end_s, one column per class, label) and `<name>_timeline.png`
(waveform on top, one probability curve per class below, on a shared time axis).

The timeline is computed on the preprocessed audio *without* silence trimming, so its times are
the recording's own times; the overall label is the model's usual whole-utterance prediction.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ser.atomic import atomic_write
from ser.errors import AudioError, SerError, exit_on_user_error
from ser.inference.early import EarlyPolicy, early_decider
from ser.inference.recognizer import Prediction, Recognizer, load_recognizer
from ser.preprocess import read_audio, segment_bounds

DEFAULT_MODEL = "models/model.ckpt"  # where the DVC `train` stage saves the model
MIN_WINDOW_S = 0.1
MAX_WINDOW_S = 30.0
BATCH = 32  # windows per forward pass: bounded memory on long recordings


class TimelineCancelled(Exception):
    """Raised by `stream_timeline` when its `cancel` event is set (e.g. a request timed out)."""


def check_window(window_s: float, hop_s: float) -> None:
    """Raise SerError unless MIN_WINDOW_S <= window_s <= MAX_WINDOW_S and 0 < hop_s <= window_s."""
    if not MIN_WINDOW_S <= window_s <= MAX_WINDOW_S:
        raise SerError(
            f"window of {window_s} s is out of range; use {MIN_WINDOW_S} to {MAX_WINDOW_S} s"
        )
    if not 0 < hop_s <= window_s:
        # A hop longer than the window would leave gaps the timeline does not cover.
        raise SerError(f"hop of {hop_s} s must be > 0 and at most the window ({window_s} s)")


def window_bounds(n_samples: int, sample_rate: int, window_s: float, hop_s: float) -> np.ndarray:
    """(start, end) samples of the windows: every `hop_s`, plus one ending exactly at the end.

    Unlike `segment_bounds`' shorter tail, the last window is a full one aligned to the end, so
    every window has the same length (what the model sees stays comparable) and the windows
    cover the whole recording. A recording shorter than one window gives one window.
    """
    # min_last_s=window_s: segment_bounds never adds a short tail; the aligned one replaces it.
    bounds = segment_bounds(n_samples, sample_rate, window_s, hop_s, min_last_s=window_s)
    if len(bounds) and bounds[-1, 1] < n_samples:
        window = bounds[-1, 1] - bounds[-1, 0]
        bounds = np.vstack([bounds, [[n_samples - window, n_samples]]])
    return bounds


def timeline_wave(
    recognizer: Recognizer, data: np.ndarray, rate: int, source: object = "<array>"
) -> np.ndarray:
    """The recognizer's preprocessing without silence trimming (times stay the recording's).

    Raises AudioError for silent, too-short or corrupt audio, like the full preprocessing.
    """
    untrimmed = dataclasses.replace(recognizer.preprocessor, trim=None, trim_db=None)
    return untrimmed.process(data, rate, source)


def stream_timeline(
    recognizer: Recognizer,
    wave: np.ndarray,
    window_s: float = 1.0,
    hop_s: float = 0.25,
    *,
    cancel: threading.Event | None = None,
) -> pd.DataFrame:
    """Class posteriors of each sliding window over a preprocessed waveform.

    `wave` is mono at `recognizer.sample_rate` (see `timeline_wave`). Returns one row per
    window: start_s, end_s, one probability column per class (each row sums to 1) and label
    (the most probable class). Setting `cancel` stops the work between batches.
    """
    check_window(window_s, hop_s)
    rate = recognizer.sample_rate
    bounds = window_bounds(len(wave), rate, window_s, hop_s)
    if len(bounds) == 0:
        raise AudioError("<array>", "empty audio (0 samples)")
    probs = []
    for first in range(0, len(bounds), BATCH):
        if cancel is not None and cancel.is_set():
            raise TimelineCancelled
        feats = [recognizer.features(wave[s:e]) for s, e in bounds[first : first + BATCH]]
        # All windows have the same length (see window_bounds), so their features stack.
        probs.append(recognizer.posteriors_of_features(torch.stack(feats)))
    matrix = np.concatenate(probs).astype(np.float64)
    frame = pd.DataFrame(matrix, columns=recognizer.class_names)
    frame.insert(0, "start_s", bounds[:, 0] / rate)
    frame.insert(1, "end_s", bounds[:, 1] / rate)
    frame["label"] = [recognizer.class_names[i] for i in matrix.argmax(axis=1)]
    return frame


def format_table(timeline: pd.DataFrame, class_names: list[str]) -> str:
    """time -> label and top probability, one line per window."""
    lines = [f"{'start_s':>8} {'end_s':>8}  {'label':<12} {'prob':>5}"]
    probs = timeline[class_names].to_numpy()
    for (start, end, label), top in zip(
        timeline[["start_s", "end_s", "label"]].itertuples(index=False),
        probs.max(axis=1),
        strict=True,
    ):
        lines.append(f"{start:8.2f} {end:8.2f}  {label:<12} {top:5.2f}")
    return "\n".join(lines)


def write_csv(timeline: pd.DataFrame, path: str | Path) -> Path:
    with atomic_write(path) as tmp:
        timeline.to_csv(tmp, index=False, float_format="%.6f")
    return Path(path)


def plot_timeline(
    wave: np.ndarray,
    sample_rate: int,
    timeline: pd.DataFrame,
    class_names: list[str],
    path: str | Path,
    title: str = "",
) -> Path:
    """Waveform on top, one probability curve per class below (at window centres), one x axis."""
    # The evaluation plots' headless matplotlib setup and atomic PNG save.
    from ser.evaluate.plots import plt, save_figure

    duration = len(wave) / sample_rate
    fig, (ax_wave, ax_prob) = plt.subplots(
        2, 1, figsize=(10, 5), sharex=True, gridspec_kw={"height_ratios": [1, 2]}
    )
    # Plot at most ~4000 points of min/max envelope: a long file would make a huge PNG path.
    step = max(1, len(wave) // 2000)
    n = len(wave) // step * step
    if step > 1 and n:
        blocks = wave[:n].reshape(-1, step)
        t = (np.arange(len(blocks)) * step + step / 2) / sample_rate
        ax_wave.fill_between(t, blocks.min(axis=1), blocks.max(axis=1), color="0.3", lw=0)
    else:
        ax_wave.plot(np.arange(len(wave)) / sample_rate, wave, color="0.3", lw=0.5)
    ax_wave.set(ylabel="amplitude", ylim=(-1.05, 1.05), title=title)
    centres = (timeline["start_s"] + timeline["end_s"]) / 2
    for name in class_names:
        ax_prob.plot(centres, timeline[name], marker="o", ms=3, label=name)
    ax_prob.set(xlabel="time (s)", ylabel="probability", ylim=(0, 1), xlim=(0, duration))
    for ax in (ax_wave, ax_prob):
        ax.grid(alpha=0.3)
    ax_prob.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return save_figure(fig, path)


def open_sounddevice() -> Any:
    """The sounddevice module, or SerError naming the fix (package or PortAudio missing)."""
    try:
        import sounddevice as sd  # lazy: PortAudio is only needed for --mic
    except ImportError:
        raise SerError(
            "--mic needs the sounddevice package: pip install 'ser[mic]' (or pass a FILE)"
        ) from None
    except OSError as err:  # sounddevice raises OSError when the PortAudio library is missing
        raise SerError(
            f"--mic: {err}; install PortAudio (apt-get install libportaudio2) or pass a FILE"
        ) from None
    return sd


def record_mic(seconds: float, sample_rate: int, sd: Any = None) -> np.ndarray:
    """Record `seconds` of mono audio from the default input device (needs PortAudio)."""
    if not 0 < seconds <= 600:
        raise SerError(f"--mic {seconds}: record between 0 and 600 seconds")
    sd = sd or open_sounddevice()
    try:
        print(f"recording {seconds:g} s from the default microphone...", file=sys.stderr)
        data = sd.rec(int(seconds * sample_rate), samplerate=sample_rate, channels=1)
        sd.wait()
    except (sd.PortAudioError, OSError, ValueError) as err:
        raise SerError(
            f"--mic: cannot open an input device ({err}); connect a microphone, check "
            "`python -m sounddevice`, or pass a FILE"
        ) from None
    return np.asarray(data, dtype=np.float32)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ser-stream", description="Emotion over time with a sliding window."
    )
    parser.add_argument("file", nargs="?", help="audio file (WAV, FLAC, OGG, MP3, ...)")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"checkpoint, MLflow run id or models:/<name>@<alias> (default {DEFAULT_MODEL})",
    )
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI for run ids")
    parser.add_argument("--window-s", type=float, default=1.0, help="window length (s)")
    parser.add_argument("--hop-s", type=float, default=0.25, help="hop between windows (s)")
    parser.add_argument("--out", default=".", help="directory for the CSV and PNG (default .)")
    parser.add_argument(
        "--mic", type=float, metavar="SECONDS", help="record SECONDS from the microphone"
    )
    parser.add_argument(
        "--policy",
        help="an Emo-RL policy (policy_*.zip from `python -m ser.rl.train`): print when it "
        "stops listening and its label; --model must then be a causal (streaming) model. A "
        "joint model (rl=joint) brings its own policy: its decision is printed without this",
    )
    return parser


def run(args: argparse.Namespace) -> pd.DataFrame:
    """ser-stream on parsed arguments; returns the timeline."""
    if (args.file is None) == (args.mic is None):
        raise SerError("give either an audio FILE or --mic SECONDS (not both)")
    check_window(args.window_s, args.hop_s)
    # Fail on a bad file or a missing microphone before the slow model load.
    if args.file is not None:
        data, rate = read_audio(args.file)
        source, stem = str(args.file), Path(args.file).stem
    else:
        if not 0 < args.mic <= 600:
            raise SerError(f"--mic {args.mic}: record between 0 and 600 seconds")
        sd = open_sounddevice()
    policy = None
    if args.policy:
        policy = EarlyPolicy(args.policy)  # a missing policy file: before any model work
    recognizer = load_recognizer(args.model, args.tracking_uri)
    # A given policy, or a joint model's own; a non-causal model fails before the timeline.
    decider = early_decider(recognizer, policy)
    if args.mic is not None:
        rate = recognizer.sample_rate
        data = record_mic(args.mic, rate, sd)
        source, stem = "microphone", time.strftime("mic_%Y%m%d-%H%M%S")
    overall: Prediction = recognizer.predict_array(data, rate, source)
    for warning in overall.warnings:
        print(f"warning: {source}: {warning}", file=sys.stderr)
    wave = timeline_wave(recognizer, data, rate, source)
    timeline = stream_timeline(recognizer, wave, args.window_s, args.hop_s)
    names = recognizer.class_names
    print(format_table(timeline, names))
    duration = len(wave) / recognizer.sample_rate
    top = overall.probabilities[overall.label]
    print(f"overall: {overall.label} ({top:.2f}) over {duration:.2f} s")
    if decider is not None:
        decision = decider.decide(recognizer, recognizer.preprocessor.process(data, rate, source))
        print(
            f"early decision (Emo-RL): {decision.label} after {decision.seconds:.2f} s of "
            f"speech ({decision.fraction:.0%} of it heard)"
        )
    out = Path(args.out)
    csv_path = write_csv(timeline, out / f"{stem}_timeline.csv")
    title = f"{Path(source).name}: window {args.window_s:g} s, hop {args.hop_s:g} s"
    png_path = plot_timeline(
        wave, recognizer.sample_rate, timeline, names, out / f"{stem}_timeline.png", title
    )
    print(f"wrote {csv_path} and {png_path}")
    return timeline


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
