"""ser-predict: the emotion of each audio file, with the posterior of every class.

    ser-predict PATH... [--model REF] [--format table|json|csv] [--output FILE]

PATHs are files (any format soundfile decodes, detected from the header) or folders, searched
recursively for audio files by extension. A file that cannot be used (unreadable, empty,
silent, too short) gets a one-line reason on stderr and the others are still predicted; the
exit code is then 1. Bad usage (no model, a missing path) ends with one `error:` line, exit 2.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from ser.atomic import atomic_write
from ser.errors import SerError, exit_on_user_error

# Extensions searched for in folders (files given by name are read whatever their name).
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc"}
    | {".au", ".snd", ".caf", ".w64", ".rf64"}
)
# Show a progress bar for more files than this, when stderr is a terminal.
PROGRESS_MIN_FILES = 5

MODEL_HELP = (
    "the model: a .ckpt path, an MLflow run id, models:/<name>@<alias> (e.g. "
    "models:/ser@champion) or models:/<name>/<version>. Default: models:/ser@champion if the "
    "store has that alias, else the newest FINISHED run there with a checkpoint artifact"
)


def audio_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files named, and the audio files under the folders named (sorted, no hidden ones).

    Raises SerError for a path that does not exist or a folder without audio files.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = sorted(
                p
                for p in path.rglob("*")
                if p.suffix.lower() in AUDIO_EXTENSIONS
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not inside:
                raise SerError(
                    f"{path}: no audio files in this folder (looked for "
                    f"{' '.join(sorted(AUDIO_EXTENSIONS))}); give files or another folder"
                )
            found.extend(inside)
        elif path.exists():
            found.append(path)
        else:
            raise SerError(f"{path}: no such file or folder; check the path")
    return list(dict.fromkeys(found))  # each file once, in the order given


def format_table(records: list[dict], class_names: Sequence[str]) -> str:
    """Aligned plain text: file, label, duration, one column per class; failures say why."""
    header = ["file", "label", "duration_s", *class_names]
    rows = []
    for r in records:
        if "error" in r:
            rows.append([r["source"], "-", "-", *(["-"] * len(class_names))])
        else:
            probs = [f"{r['probabilities'][c]:.3f}" for c in class_names]
            rows.append([r["source"], r["label"], f"{r['duration_s']:.2f}", *probs])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [
            str(cell).ljust(w) if i < 2 else str(cell).rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def format_csv(records: list[dict], class_names: Sequence[str]) -> str:
    """One row per file: source, label, duration_s, a probability column per class, error."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["source", "label", "duration_s", *class_names, "error"])
    for r in records:
        if "error" in r:
            writer.writerow([r["source"], "", "", *([""] * len(class_names)), r["error"]])
        else:
            probs = [r["probabilities"][c] for c in class_names]
            writer.writerow([r["source"], r["label"], r["duration_s"], *probs, ""])
    return out.getvalue()


def format_json(records: list[dict]) -> str:
    """A list: {source, label, duration_s, probabilities{class: p}} or {source, error}."""
    return json.dumps(records, indent=2) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ser-predict",
        description="Predict the emotion of audio files: label, posterior per class, duration.",
        epilog="Exit status: 0 all files predicted, 1 some files could not be used (each "
        "gets a one-line reason on stderr), 2 bad usage (no model, a missing path).",
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="audio files (any format soundfile reads) or folders (searched recursively for "
        f"{' '.join(sorted(AUDIO_EXTENSIONS))})",
    )
    parser.add_argument("--model", metavar="REF", help=MODEL_HELP)
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow store for run ids and models:/ refs (default: $MLFLOW_TRACKING_URI, "
        "else the store `python train.py` writes to: sqlite:///$SER_ROOT/mlruns/mlflow.db, "
        "$SER_ROOT defaulting to the working directory)",
    )
    parser.add_argument(
        "--labels",
        metavar="A,B,...",
        help="the classes the model must predict, in order; a model with others is refused",
    )
    parser.add_argument("--format", choices=["table", "json", "csv"], default="table")
    parser.add_argument(
        "--output", metavar="FILE", type=Path, help="write here (atomically) instead of stdout"
    )
    return parser


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `ser-predict`; returns the exit status."""
    args = build_parser().parse_args(argv)
    # MLflow's download progress bars are noise for a model of a few MB.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    files = audio_files(args.paths)
    from tqdm import tqdm

    from ser.inference.recognizer import load_recognizer
    from ser.tracking import tracking_uri
    from ser.tracking.registry import default_model

    ref = args.model
    if ref is None:
        store = tracking_uri(args.tracking_uri, create=False)
        ref = default_model(store)
        print(f"model: {ref} from the MLflow store {store} (no --model given)", file=sys.stderr)
    recognizer = load_recognizer(ref, args.tracking_uri)
    if args.labels is not None:
        asked = [label.strip() for label in args.labels.split(",") if label.strip()]
        if asked != recognizer.class_names:
            raise SerError(
                f"model {ref} predicts {recognizer.class_names}, not the --labels {asked}; "
                "give --model a model trained on those labels"
            )
    show_progress = len(files) > PROGRESS_MIN_FILES and sys.stderr.isatty()
    records: list[dict] = []
    failed = 0
    for path in tqdm(files, disable=not show_progress, unit="file", file=sys.stderr):
        try:
            prediction = recognizer.predict_file(path)
            records.append(prediction.as_dict())
            for warning in prediction.warnings:
                tqdm.write(f"warning: {path}: {warning}", file=sys.stderr)
        except SerError as err:  # AudioError: this file only
            failed += 1
            reason = getattr(err, "reason", str(err))
            records.append({"source": str(path), "error": reason})
            tqdm.write(f"failed: {path}: {reason}", file=sys.stderr)
    if args.format == "json":
        text = format_json(records)
    elif args.format == "csv":
        text = format_csv(records, recognizer.class_names)
    else:
        text = format_table(records, recognizer.class_names)
    if args.output is not None:
        with atomic_write(args.output) as tmp:
            tmp.write_text(text)
        print(f"wrote {len(records) - failed} predictions to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if failed:
        print(f"{failed} of {len(files)} files could not be used", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
