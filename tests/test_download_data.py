"""scripts/download_data.py against a local HTTP server with Range support (never the network)."""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "download_data.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("download_data", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


dd = load_script()
PAYLOAD = bytes(range(256)) * 4000  # ~1 MB, more than one read chunk


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves `files` (path -> bytes) with single `bytes=N-` ranges; records the Range headers."""

    files: ClassVar[dict[str, bytes]] = {}
    ranges: ClassVar[list[str | None]] = []
    honour_range = True

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        wanted = self.headers.get("Range")
        self.ranges.append(wanted)
        if wanted and self.honour_range:
            start = int(wanted.removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            body = body[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[RangeHandler]]]:
    handler = type("Handler", (RangeHandler,), {"files": {}, "ranges": [], "honour_range": True})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_fresh_download_is_verified(server: tuple, tmp_path: Path) -> None:
    url, handler = server
    handler.files["/a.bin"] = PAYLOAD
    dest = tmp_path / "a.bin"
    assert dd.fetch(f"{url}/a.bin", dest, sha256=SHA, size=len(PAYLOAD), quiet=True) == SHA
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_name("a.bin.part").exists()
    assert handler.ranges == [None]


def test_partial_download_resumes_with_a_range_request(server: tuple, tmp_path: Path) -> None:
    url, handler = server
    handler.files["/a.bin"] = PAYLOAD
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:300_000])
    dd.fetch(f"{url}/a.bin", tmp_path / "a.bin", sha256=SHA, quiet=True)
    assert handler.ranges == ["bytes=300000-"]
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_complete_part_file_is_not_fetched_again(server: tuple, tmp_path: Path) -> None:
    url, handler = server
    handler.files["/a.bin"] = PAYLOAD
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD)
    dd.fetch(f"{url}/a.bin", tmp_path / "a.bin", sha256=SHA, quiet=True)  # server answers 416
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_the_file(server: tuple, tmp_path: Path) -> None:
    url, handler = server
    handler.files["/a.bin"] = PAYLOAD
    handler.honour_range = False
    (tmp_path / "a.bin.part").write_bytes(b"x" * 1000)
    dd.fetch(f"{url}/a.bin", tmp_path / "a.bin", sha256=SHA, quiet=True)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch_deletes_the_file(server: tuple, tmp_path: Path) -> None:
    url, handler = server
    handler.files["/a.bin"] = PAYLOAD
    with pytest.raises(dd.DownloadError, match="SHA-256 differs"):
        dd.fetch(f"{url}/a.bin", tmp_path / "a.bin", sha256="0" * 64, quiet=True)
    assert not list(tmp_path.iterdir())


def test_md5_is_checked_where_the_publisher_gives_it(server: tuple, tmp_path: Path) -> None:
    url, handler = server
    handler.files["/a.bin"] = PAYLOAD
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    dd.fetch(f"{url}/a.bin", tmp_path / "a.bin", md5=md5, quiet=True)
    with pytest.raises(dd.DownloadError, match="MD5 differs"):
        dd.fetch(f"{url}/a.bin", tmp_path / "a.bin", md5="0" * 32, quiet=True)


def test_http_error_is_one_download_error(server: tuple, tmp_path: Path) -> None:
    url, _ = server
    with pytest.raises(dd.DownloadError, match="404"):
        dd.fetch(f"{url}/missing.bin", tmp_path / "m.bin", quiet=True)


def test_archive_download_unzips_and_prints_the_env_var(
    server: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    url, handler = server
    zipped = tmp_path / "src.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("Actor_01/03-01-01-01-01-01-01.wav", b"RIFF")
    handler.files["/r.zip"] = zipped.read_bytes()
    corpus = dd.CORPORA["ravdess"]
    archive = dd.Archive(url=f"{url}/r.zip", filename="r.zip")
    monkeypatch.setitem(
        dd.CORPORA, "ravdess", dd.Corpus(**{**vars(corpus), "archives": (archive,)})
    )
    assert dd.main(["ravdess", "--to", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    root = (tmp_path / "data" / "ravdess").resolve()
    assert (root / "Actor_01" / "03-01-01-01-01-01-01.wav").is_file()
    assert hashlib.sha256(handler.files["/r.zip"]).hexdigest() in out  # no known checksum
    assert out.strip().splitlines()[-1] == f"export RAVDESS_ROOT={root}"


def test_cremad_clips_follow_the_published_design() -> None:
    clips = dd.cremad_clips()
    assert len(clips) == 91 * 82  # 7442 published + the ~20 never recorded
    assert "1001_DFA_ANG_XX" in clips and "1091_IEO_HAP_HI" in clips
    assert "1001_IEO_NEU_LO" not in clips


def test_lfs_pointer_is_parsed() -> None:
    text = "version https://git-lfs.github.com/spec/v1\noid sha256:" + "a" * 64 + "\nsize 12\n"
    assert dd.lfs_pointer(text) == ("a" * 64, 12)


@pytest.mark.parametrize("name", ["iemocap", "savee", "tess"])
def test_licence_and_manual_corpora_print_where_to_ask(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert dd.main([name, "--to", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    url = {
        "iemocap": "https://sail.usc.edu/iemocap/iemocap_release.htm",
        "savee": "http://kahlan.eps.surrey.ac.uk/savee/",
        "tess": "https://tspace.library.utoronto.ca/handle/1807/24487",
    }[name]
    assert url in out
    assert f"export {name.upper()}_ROOT=" in out
    assert not list(tmp_path.iterdir())


def test_unknown_name_is_one_error_line(capsys: pytest.CaptureFixture) -> None:
    assert dd.main(["timit"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "timit" in err and "ravdess" in err and "cremad" in err


@pytest.mark.parametrize("name", ["ravdess", "emodb", "cremad"])
def test_dry_run_prints_the_plan_and_fetches_nothing(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert dd.main([name, "--to", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "https://" in out or "http://" in out
    assert f"export {name.upper()}_ROOT=" in out
    assert not list(tmp_path.iterdir())


def test_dry_run_shows_a_pinned_checksum(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dd.main(["ravdess", "--to", str(tmp_path), "--dry-run", "--expected-sha256", "ab" * 32])
    assert "ab" * 32 in capsys.readouterr().out
