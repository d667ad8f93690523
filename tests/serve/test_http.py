"""ser-serve: every endpoint and every refusal through TestClient, then the real server under
50 concurrent requests."""

from __future__ import annotations

import io
import os
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from conftest import ser_server
from fastapi.testclient import TestClient

from ser.inference.recognizer import Recognizer, load_recognizer
from ser.serve.http import create_app, main


@pytest.fixture(scope="module")
def recognizer(trained_run) -> Recognizer:
    return load_recognizer(trained_run.checkpoint)


@pytest.fixture(scope="module")
def speech_wav(trained_run) -> Path:
    """One utterance of the synthetic corpus (about 2-3 s)."""
    corpus = Path(trained_run.config.paths.data_dir) / "synthetic"
    return sorted(corpus.rglob("spk01_angry_000.wav"))[0]


@pytest.fixture(scope="module")
def client(recognizer: Recognizer):
    with TestClient(create_app(recognizer, max_upload_mb=1, max_duration_s=20)) as c:
        yield c


def wav_bytes(data: np.ndarray, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format="WAV")
    return buffer.getvalue()


def post_file(client, data: bytes, name: str = "a.wav", kind: str = "audio/wav", **kw):
    return client.post("/predict", files={"file": (name, data, kind)}, **kw)


def assert_refused(response, status: int, code: str, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert "\n" not in body["detail"]
    for word in words:
        assert word in body["detail"]


def test_health(client, recognizer: Recognizer) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["model"] == recognizer.source
    assert body["classes"] == recognizer.class_names
    assert body["sample_rate"] == recognizer.sample_rate
    assert body["limits"]["max_upload_mb"] == 1


def test_index_page_is_self_contained(client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "<canvas" in html and "MediaRecorder" in html and "decodeAudioData" in html
    # Nothing loaded from elsewhere: no external scripts, styles, fonts or images.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert not re.search(r"@import|url\(", html)


def test_predict_matches_the_recognizer(client, recognizer: Recognizer, speech_wav) -> None:
    response = post_file(client, speech_wav.read_bytes(), speech_wav.name)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = recognizer.predict_file(speech_wav)
    assert body["label"] == expected.label
    assert body["probabilities"].keys() == expected.probabilities.keys()
    for name, p in expected.probabilities.items():
        assert body["probabilities"][name] == pytest.approx(p, abs=1e-5)
    assert body["duration_s"] == pytest.approx(sf.info(speech_wav).duration)
    timeline = body["timeline"]
    names = recognizer.class_names
    assert timeline["classes"] == names
    n = len(timeline["start_s"])
    assert n >= 2 and len(timeline["end_s"]) == len(timeline["label"]) == n
    assert timeline["start_s"][0] == 0
    assert timeline["end_s"][-1] == pytest.approx(timeline["duration_s"], abs=1e-3)
    probs = np.array([timeline["probabilities"][c] for c in names]).T
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert [names[i] for i in probs.argmax(axis=1)] == timeline["label"]
    assert 0 < len(timeline["envelope"]) <= 600 and max(timeline["envelope"]) <= 1.0


def test_predict_takes_a_raw_audio_body_and_window_options(client, speech_wav) -> None:
    response = client.post(
        "/predict?window_s=0.5&hop_s=0.5",
        content=speech_wav.read_bytes(),
        headers={"content-type": "audio/wav"},
    )
    assert response.status_code == 200, response.text
    timeline = response.json()["timeline"]
    assert timeline["window_s"] == 0.5
    assert np.allclose(np.array(timeline["end_s"]) - timeline["start_s"], 0.5)


def test_too_large_upload_is_413(client) -> None:
    big = wav_bytes(np.random.default_rng(0).uniform(-0.5, 0.5, 40_000 * 16))  # 1.2 MB
    assert_refused(post_file(client, big), 413, "too_large", "1 MB")


def test_too_large_chunked_body_is_413(client) -> None:
    """Without Content-Length the body is counted as it arrives."""

    def chunks():
        for _ in range(40):
            yield b"\0" * 65536

    response = client.post("/predict", content=chunks(), headers={"content-type": "audio/wav"})
    assert_refused(response, 413, "too_large")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"files": {"file": ("notes.txt", b"hello", "text/plain")}}, ["notes.txt", "text/plain"]),
        ({"json": {"audio": "none"}}, ["application/json"]),
        ({"content": b"x", "headers": {"content-type": "image/png"}}, ["image/png"]),
    ],
)
def test_non_audio_content_type_is_415(client, kwargs, words) -> None:
    assert_refused(client.post("/predict", **kwargs), 415, "not_audio", *words)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"this is not audio at all", ["cannot decode"]),
        (b"", ["empty upload"]),
        (wav_bytes(np.zeros(16000)), ["silent"]),
        (wav_bytes(np.full(100, 0.5)), ["too short"]),
        (wav_bytes(np.full(16000 * 21, 0.1)), ["too long", "20 s"]),
        (wav_bytes(np.full(1000, 0.5), rate=100), ["sample rate"]),
    ],
    ids=["garbage", "empty", "silent", "short", "long", "rate"],
)
def test_unusable_audio_is_422_with_the_reason(client, data: bytes, words) -> None:
    assert_refused(post_file(client, data), 422, "bad_audio", *words)


def test_octet_stream_garbage_is_422_not_500(client) -> None:
    response = post_file(client, os.urandom(5000), "x.bin", "application/octet-stream")
    assert_refused(response, 422, "bad_audio", "cannot decode")


def test_missing_file_field_and_bad_window_are_422(client, speech_wav) -> None:
    other = client.post("/predict", files={"audio": ("a.wav", b"RIFF", "audio/wav")})
    assert_refused(other, 422, "no_file", "'file'")
    data = speech_wav.read_bytes()
    assert_refused(
        post_file(client, data, params={"window_s": 0.01}), 422, "bad_request", "window_s"
    )
    response = post_file(client, data, params={"window_s": 1, "hop_s": 2})
    assert_refused(response, 422, "bad_request", "hop_s")


def slow_down(monkeypatch, recognizer: Recognizer, seconds: float) -> threading.Event:
    """Make the recognizer take `seconds` longer per prediction; the event marks its start."""
    started = threading.Event()
    original = recognizer.predict_array

    def slow(*args, **kwargs):
        started.set()
        time.sleep(seconds)
        return original(*args, **kwargs)

    monkeypatch.setattr(recognizer, "predict_array", slow)
    return started


def test_timeout_is_504(recognizer: Recognizer, speech_wav, monkeypatch) -> None:
    slow_down(monkeypatch, recognizer, 1.0)
    with TestClient(create_app(recognizer, timeout_s=0.2)) as client:
        response = post_file(client, speech_wav.read_bytes())
    assert_refused(response, 504, "timeout", "0.2 s")


def test_full_queue_is_503_and_the_queued_request_still_succeeds(
    recognizer: Recognizer, speech_wav, monkeypatch
) -> None:
    started = slow_down(monkeypatch, recognizer, 1.0)
    data = speech_wav.read_bytes()
    with TestClient(create_app(recognizer, max_queue=1)) as client, ThreadPoolExecutor(1) as pool:
        first = pool.submit(post_file, client, data)
        assert started.wait(20)
        assert_refused(post_file(client, data), 503, "busy", "retry")
        assert first.result(timeout=60).status_code == 200


# ---- the real server ---------------------------------------------------------------------


@pytest.mark.slow
def test_real_server_answers_50_concurrent_requests_like_the_recognizer(
    trained_run, recognizer: Recognizer, speech_wav, repo_root
) -> None:
    with ser_server(trained_run.checkpoint, repo_root) as base:
        expected = recognizer.predict_file(speech_wav)
        data = speech_wav.read_bytes()
        with httpx.Client(base_url=base, timeout=120) as http:

            def one(i: int) -> httpx.Response:
                return http.post("/predict", files={"file": (f"{i}.wav", data, "audio/wav")})

            with ThreadPoolExecutor(max_workers=50) as pool:
                responses = list(pool.map(one, range(50), timeout=300))
        assert [r.status_code for r in responses] == [200] * 50
        for r in responses:
            body = r.json()
            assert body["label"] == expected.label
            for name, p in expected.probabilities.items():
                assert abs(body["probabilities"][name] - p) <= 1e-5


@pytest.mark.parametrize("port", ["busy", "99999"])
def test_a_port_in_use_or_out_of_range_is_one_line_and_never_says_serving(
    trained_run, port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        number = str(holder.getsockname()[1]) if port == "busy" else port
        args = ["--model", str(trained_run.checkpoint), "--host", "127.0.0.1", "--port", number]
        with pytest.raises(SystemExit) as exit_info:
            main(args)
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert "serving" not in out
    (line,) = [x for x in err.splitlines() if x.strip()]
    expected = "the port may be in use" if port == "busy" else "is not a TCP port"
    assert line.startswith("error: ") and expected in line


def test_audio_below_the_models_rate_is_answered_with_a_warning(client, speech_wav) -> None:
    import librosa

    data, rate = sf.read(speech_wav, dtype="float32")
    plain = post_file(client, wav_bytes(data, rate))
    assert plain.status_code == 200 and plain.json()["warnings"] == []
    assert "x-ser-warning" not in plain.headers
    narrow = librosa.resample(data, orig_sr=rate, target_sr=8000)
    response = post_file(client, wav_bytes(narrow, 8000))
    assert response.status_code == 200
    (warning,) = response.json()["warnings"]
    assert "8000 Hz is below the model's 16000 Hz" in warning
    assert response.headers["x-ser-warning"] == warning
