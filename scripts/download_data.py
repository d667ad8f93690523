"""Download the openly licensed emotional-speech corpora, resumably and with checksums.

    python scripts/download_data.py ravdess --to data/     # then: export RAVDESS_ROOT=...

Standard library only (urllib), so it runs before the package is installed. Interrupted
downloads continue from their `.part` file with an HTTP Range request. Checksums are verified
against the publisher's values where this script knows them for certain; otherwise the SHA-256 of
what was fetched is printed (pass it back with --expected-sha256 to pin it). IEMOCAP and SAVEE
need a licence and TESS has no stable direct file URLs: for those the steps are printed and the
exit status is 2.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 1 << 20
USER_AGENT = "ser-download-data/0.1 (python urllib)"


class DownloadError(Exception):
    """A download that failed (HTTP error, size or checksum mismatch); one line for the user."""


@dataclass(frozen=True)
class Archive:
    """One zip to fetch and unpack; sha256/md5/size are None where not known for certain."""

    url: str
    filename: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Corpus:
    name: str
    env: str
    citation: str
    archives: tuple[Archive, ...] = ()
    manual: str = ""  # instructions when the corpus cannot be fetched by this script
    notes: tuple[str, ...] = field(default=())


# Checksums: Zenodo and the EmoDB site publish none that this script could verify offline, so
# none are pinned; the SHA-256 of each download is printed instead (never guessed here).
CORPORA = {
    "ravdess": Corpus(
        name="ravdess",
        env="RAVDESS_ROOT",
        citation="Livingstone & Russo (2018), CC BY-NC-SA 4.0, zenodo.org/records/1188976",
        archives=(
            Archive(
                url="https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip"
                "?download=1",
                filename="Audio_Speech_Actors_01-24.zip",
            ),
        ),
    ),
    "emodb": Corpus(
        name="emodb",
        env="EMODB_ROOT",
        citation="Burkhardt et al. (2005), emodb.bilderbar.info",
        archives=(
            Archive(url="http://emodb.bilderbar.info/download/download.zip", filename="emodb.zip"),
        ),
    ),
    "cremad": Corpus(
        name="cremad",
        env="CREMAD_ROOT",
        citation="Cao et al. (2014), ODbL, github.com/CheyneyComputerScience/CREMA-D",
        notes=(
            "CREMA-D audio is stored in Git LFS: each AudioWAV/<clip>.wav is fetched from "
            "media.githubusercontent.com and checked against the SHA-256 and size in its LFS "
            "pointer (raw.githubusercontent.com).",
        ),
    ),
    "tess": Corpus(
        name="tess",
        env="TESS_ROOT",
        citation="Dupuis & Pichora-Fuller (2010), CC BY-NC-ND 4.0",
        manual=(
            "TESS has no stable direct download URLs. Open "
            "https://tspace.library.utoronto.ca/handle/1807/24487, download the 14 collections "
            "(OAF_angry ... YAF_sad) and unpack them so that DIR/tess/OAF_angry/OAF_back_angry.wav "
            "exists."
        ),
    ),
    "iemocap": Corpus(
        name="iemocap",
        env="IEMOCAP_ROOT",
        citation="Busso et al. (2008)",
        manual=(
            "IEMOCAP needs a licence: request it at "
            "https://sail.usc.edu/iemocap/iemocap_release.htm, then unpack the release so that "
            "DIR/iemocap/Session1 ... Session5 exist."
        ),
    ),
    "savee": Corpus(
        name="savee",
        env="SAVEE_ROOT",
        citation="Haq & Jackson (2009)",
        manual=(
            "SAVEE needs a licence: register at http://kahlan.eps.surrey.ac.uk/savee/, then "
            "unpack AudioData so that DIR/savee/AudioData/DC/a01.wav exists."
        ),
    ),
}

CREMAD_MEDIA = "https://media.githubusercontent.com/media/CheyneyComputerScience/CREMA-D/master/"
CREMAD_RAW = "https://raw.githubusercontent.com/CheyneyComputerScience/CREMA-D/master/"
CREMAD_SENTENCES = [
    "IEO",
    "TIE",
    "IOM",
    "IWW",
    "TAI",
    "MTI",
    "IWL",
    "ITH",
    "DFA",
    "ITS",
    "TSI",
    "WSI",
]  # IEO is the one with intensities
CREMAD_EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")


def cremad_clips() -> list[str]:
    """The 91 x 82 clip names of the published design (IEO in LO/MD/HI, the rest XX; neutral
    always XX); about 20 were never published and are reported as absent, not as errors."""
    names = []
    for actor in range(1001, 1092):
        for sentence in CREMAD_SENTENCES:
            for emotion in CREMAD_EMOTIONS:
                levels = ("LO", "MD", "HI") if sentence == "IEO" and emotion != "NEU" else ("XX",)
                names += [f"{actor}_{sentence}_{emotion}_{level}" for level in levels]
    return names


def _open(url: str, start: int = 0, timeout: float = 60.0):
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(
    url: str,
    dest: Path,
    sha256: str | None = None,
    md5: str | None = None,
    size: int | None = None,
    retries: int = 3,
    quiet: bool = False,
) -> str:
    """Download `url` to `dest` via `dest.part`, resuming it with a Range request; check the
    size and checksums given; return the SHA-256. A complete `dest` is only re-verified."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        part = dest.with_name(dest.name + ".part")
        for attempt in range(1, retries + 1):
            try:
                _fetch_part(url, part, size, quiet)
                break
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                if isinstance(err, urllib.error.HTTPError) or attempt == retries:
                    raise DownloadError(f"{url}: {err}") from None
                if not quiet:
                    print(f"  {err}; resuming (attempt {attempt + 1}/{retries})", file=sys.stderr)
                time.sleep(min(2**attempt, 30))
        _verify(part, url, sha256, md5, size)
        part.replace(dest)
    else:
        _verify(dest, url, sha256, md5, size)
    return file_digest(dest, "sha256")


def _fetch_part(url: str, part: Path, size: int | None, quiet: bool) -> None:
    start = part.stat().st_size if part.exists() else 0
    if size is not None and start == size:
        return
    try:
        response = _open(url, start)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:  # nothing left after `start`: the part is complete
            return
        raise
    with response:
        if start and response.status != 206:
            start = 0  # the server ignored Range and sends the whole file: start over
        total = response.headers.get("Content-Length")
        total = int(total) + start if total is not None else None
        if not quiet:
            resumed = f", resuming at {start} bytes" if start else ""
            print(f"  {url} ({_human(total)}{resumed})", file=sys.stderr)
        with part.open("r+b" if start else "wb") as handle:
            handle.seek(start)
            handle.truncate()
            while chunk := response.read(CHUNK):
                handle.write(chunk)
    if total is not None and part.stat().st_size != total:
        raise ConnectionError(f"connection closed at {part.stat().st_size} of {total} bytes")


def _verify(path: Path, url: str, sha256: str | None, md5: str | None, size: int | None) -> None:
    problems = []
    if size is not None and path.stat().st_size != size:
        problems.append(f"size {path.stat().st_size} != {size}")
    if not problems and sha256 and file_digest(path, "sha256") != sha256.lower():
        problems.append(f"SHA-256 differs from {sha256}")
    if not problems and md5 and file_digest(path, "md5") != md5.lower():
        problems.append(f"MD5 differs from {md5}")
    if problems:
        path.unlink()  # a corrupt file must not be resumed from
        raise DownloadError(f"{url}: {'; '.join(problems)}; the file was deleted, run again")


def _human(size: int | None) -> str:
    if size is None:
        return "size unknown"
    return f"{size / 1e6:.1f} MB"


def extract(archive: Path, target: Path) -> None:
    """Unpack a zip into `target`, refusing members that would land outside it."""
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zipped:
        for member in zipped.namelist():
            if not (target / member).resolve().is_relative_to(target.resolve()):
                raise DownloadError(f"{archive}: unsafe member {member!r}")
        zipped.extractall(target)


def lfs_pointer(text: str) -> tuple[str, int]:
    """(sha256, size) from a Git LFS pointer file."""
    oid = re.search(r"^oid sha256:([0-9a-f]{64})$", text, re.M)
    size = re.search(r"^size (\d+)$", text, re.M)
    if oid is None or size is None:
        raise DownloadError("not a Git LFS pointer")
    return oid.group(1), int(size.group(1))


def fetch_cremad(target: Path, media: str = CREMAD_MEDIA, raw: str = CREMAD_RAW) -> None:
    """Every published AudioWAV clip (checked against its LFS pointer) and the demographics."""
    fetch(raw + "VideoDemographics.csv", target / "VideoDemographics.csv", quiet=True)
    clips, absent = cremad_clips(), []
    for i, clip in enumerate(clips, 1):
        dest = target / "AudioWAV" / f"{clip}.wav"
        if dest.exists():
            continue
        try:
            with _open(raw + f"AudioWAV/{clip}.wav") as response:
                sha256, size = lfs_pointer(response.read(4096).decode("ascii", "replace"))
        except urllib.error.HTTPError as err:
            if err.code == 404:
                absent.append(clip)
                continue
            raise DownloadError(f"{raw}AudioWAV/{clip}.wav: {err}") from None
        fetch(media + f"AudioWAV/{clip}.wav", dest, sha256=sha256, size=size, quiet=True)
        if i % 250 == 0:
            print(f"  {i}/{len(clips)} clips", file=sys.stderr)
    if absent:
        print(f"  {len(absent)} clips of the design are not in the repository: {absent[:5]} ...")


def plan(corpus: Corpus, target: Path, expected_sha256: str | None) -> list[str]:
    """What would be fetched, one line each (for --dry-run)."""
    if corpus.name == "cremad":
        return [
            f"{CREMAD_RAW}VideoDemographics.csv -> {target / 'VideoDemographics.csv'}",
            f"{len(cremad_clips())} clips {CREMAD_MEDIA}AudioWAV/<clip>.wav -> "
            f"{target / 'AudioWAV'} (each checked against {CREMAD_RAW}AudioWAV/<clip>.wav)",
        ]
    lines = []
    for archive in corpus.archives:
        sha = expected_sha256 or archive.sha256
        check = f"SHA-256 {sha}" if sha else "checksum unknown: SHA-256 printed after download"
        path = target.parent / archive.filename
        lines.append(f"{archive.url} -> {path} ({check}), unzip to {target}")
    return lines


def download(name: str, to: Path, expected_sha256: str | None = None) -> Path:
    """Fetch and unpack corpus `name` into `to/<name>`; return that root."""
    corpus = CORPORA[name]
    target = (to / name).resolve()
    if corpus.name == "cremad":
        fetch_cremad(target)
        return target
    for archive in corpus.archives:
        path = target.parent / archive.filename  # beside the corpus, not inside its root
        sha256 = expected_sha256 or archive.sha256
        digest = fetch(archive.url, path, sha256=sha256, md5=archive.md5, size=archive.size)
        if not sha256:
            print(f"{archive.filename}: SHA-256 {digest} (pin it with --expected-sha256)")
        extract(path, target)
    return target


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help=f"one of {', '.join(CORPORA)}")
    parser.add_argument("--to", type=Path, default=Path("data"), help="parent folder (./data)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be fetched")
    parser.add_argument("--expected-sha256", help="pin the archive's SHA-256 (single archives)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    args = parse_args(argv)
    corpus = CORPORA.get(args.name.lower())
    if corpus is None:
        print(
            f"error: unknown corpus {args.name!r}; choose one of {', '.join(CORPORA)}",
            file=sys.stderr,
        )
        return 2
    target = (args.to / corpus.name).resolve()
    if corpus.manual:
        print(f"{corpus.name}: {corpus.citation}")
        print(corpus.manual.replace("DIR", str(args.to)))
        print(f"then: export {corpus.env}={target}")
        return 2
    if args.dry_run:
        print(f"{corpus.name}: {corpus.citation}")
        print("\n".join(plan(corpus, target, args.expected_sha256)))
        print(f"then: export {corpus.env}={target}")
        return 0
    for note in corpus.notes:
        print(note, file=sys.stderr)
    try:
        root = download(corpus.name, args.to, args.expected_sha256)
    except (DownloadError, zipfile.BadZipFile, OSError) as err:
        print(f"error: {corpus.name}: {err}", file=sys.stderr)
        return 1
    print(f"export {corpus.env}={root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
