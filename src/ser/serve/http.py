"""The HTTP service: a trained model behind FastAPI.

    ser-serve --model REF [--host 127.0.0.1] [--port 8000] [--max-upload-mb 20] [--timeout-s 30]

GET /health      status, model source, class names, sample rate and the limits in force
POST /predict    an audio upload (multipart field `file`, or a raw audio/* body) -> label,
                 probabilities, duration and a sliding-window timeline
GET /            a small page: upload a file or record from the microphone, see the result

Bad uploads get a 4xx with a one-line `detail`, never a 500: 413 too large, 415 not audio,
422 undecodable/silent/too short/too long; 503 when the queue is full, 504 on timeout.
Inference runs on one worker thread (a bounded queue in front of it): the model and torch are
used by one request at a time, and the event loop stays free to accept and reject requests.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import socket
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import soundfile as sf
from fastapi import FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from ser.errors import AudioError, SerError, exit_on_user_error
from ser.inference.early import EarlyDecider, EarlyPolicy, early_decider
from ser.inference.recognizer import Recognizer, load_recognizer
from ser.serve.page import INDEX_HTML
from ser.serve.stream import TimelineCancelled, stream_timeline, timeline_wave

# Multipart framing (boundaries, part headers) on top of the file itself.
MULTIPART_SLACK = 64 * 1024
# Points of the waveform envelope sent for drawing: enough for a page-wide canvas.
ENVELOPE_POINTS = 600
MIN_RATE, MAX_RATE = 1000, 384_000
MAX_CHANNELS = 32


class UploadError(Exception):
    """A request the service refuses: HTTP status, short code and a one-line reason."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int
    timeout_s: float
    max_queue: int
    max_duration_s: float

    def as_dict(self) -> dict[str, float]:
        return {
            "max_upload_mb": self.max_upload_bytes / 2**20,
            "timeout_s": self.timeout_s,
            "max_queue": self.max_queue,
            "max_duration_s": self.max_duration_s,
        }


def decode_upload(data: bytes, source: str, max_duration_s: float) -> tuple[np.ndarray, int]:
    """Decode an uploaded file with soundfile (format from its header); AudioError if unusable.

    Checks the header before decoding: a small compressed file can expand to hours of audio.
    """
    if not data:
        raise AudioError(source, "empty upload (0 bytes); send an audio file")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate, channels, frames = f.samplerate, f.channels, f.frames
            if not MIN_RATE <= rate <= MAX_RATE:
                raise AudioError(
                    source, f"unsupported sample rate {rate} Hz; use {MIN_RATE}-{MAX_RATE} Hz"
                )
            if channels > MAX_CHANNELS:
                raise AudioError(source, f"{channels} channels; send mono or stereo audio")
            if frames > max_duration_s * rate:
                raise AudioError(
                    source,
                    f"too long: {frames / rate:.1f} s, the limit is {max_duration_s:g} s; "
                    "cut it or use ser-stream for long recordings",
                )
            samples = f.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, sf.SoundFileError, RuntimeError, ValueError, TypeError) as err:
        # libsndfile's own message, without soundfile's "Error opening <BytesIO ...>" prefix
        reason = getattr(err, "error_string", None) or str(err)
        raise AudioError(
            source,
            f"cannot decode audio ({reason.rstrip('.')}); send WAV, FLAC, OGG or MP3 "
            "(the page converts recordings to WAV)",
        ) from None
    return samples, int(rate)


def envelope(wave: np.ndarray, points: int = ENVELOPE_POINTS) -> list[float]:
    """Peak |amplitude| of `points` equal blocks of the waveform, for drawing it."""
    n = len(wave) // points * points
    if n == 0:
        return [round(float(abs(x)), 4) for x in wave]
    return [round(float(x), 4) for x in np.abs(wave[:n]).reshape(points, -1).max(axis=1)]


class Service:
    """The model, its single inference thread, the queue bound and the limits."""

    def __init__(
        self, recognizer: Recognizer, limits: Limits, early: EarlyDecider | None = None
    ) -> None:
        self.recognizer = recognizer
        self.limits = limits
        self.early = early  # who decides when to stop listening, where someone does
        self.executor: ThreadPoolExecutor | None = None  # started on first use
        self.pending = 0  # requests queued or running; touched only on the event loop thread

    def infer(
        self, data: bytes, source: str, window_s: float, hop_s: float, cancel: threading.Event
    ) -> dict[str, Any]:
        """Decode, predict and compute the timeline (runs on the inference thread)."""
        if cancel.is_set():  # timed out while queued: skip the work
            raise TimelineCancelled
        samples, rate = decode_upload(data, source, self.limits.max_duration_s)
        prediction = self.recognizer.predict_array(samples, rate, source)
        wave = timeline_wave(self.recognizer, samples, rate, source)
        timeline = stream_timeline(self.recognizer, wave, window_s, hop_s, cancel=cancel)
        names = self.recognizer.class_names
        warnings = list(prediction.warnings)
        early = None
        if self.early is not None:
            try:
                processed = self.recognizer.preprocessor.process(samples, rate, source)
                early = dataclasses.asdict(self.early.decide(self.recognizer, processed))
            except AudioError as err:  # shorter than one chunk: no early decision to make
                warnings.append(f"no early decision: {err.reason}")
        return {
            "source": source,
            "label": prediction.label,
            # Unrounded: clients can compare with the model's own output.
            "probabilities": prediction.probabilities,
            "duration_s": prediction.duration_s,
            "warnings": warnings,
            **({"early_decision": early} if self.early is not None else {}),
            "timeline": {
                "window_s": window_s,
                "hop_s": hop_s,
                "classes": names,
                "start_s": timeline["start_s"].round(4).tolist(),
                "end_s": timeline["end_s"].round(4).tolist(),
                "label": timeline["label"].tolist(),
                "probabilities": {n: timeline[n].round(5).tolist() for n in names},
                "duration_s": len(wave) / self.recognizer.sample_rate,
                "envelope": envelope(wave),
            },
        }

    def close(self) -> None:
        """Stop the worker thread (queued jobs are dropped); a later request starts a new one."""
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = None

    async def run(self, data: bytes, source: str, window_s: float, hop_s: float) -> dict:
        if self.pending >= self.limits.max_queue:
            raise UploadError(
                503, "busy", f"server busy: {self.pending} requests queued; retry later"
            )
        if self.executor is None:
            self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ser-infer")
        self.pending += 1
        cancel = threading.Event()
        future = asyncio.wrap_future(
            self.executor.submit(self.infer, data, source, window_s, hop_s, cancel)
        )
        try:
            return await asyncio.wait_for(future, self.limits.timeout_s)
        except TimeoutError:
            cancel.set()  # the worker stops at its next batch, or skips the job if queued
            raise UploadError(
                504,
                "timeout",
                f"no result within {self.limits.timeout_s:g} s (queue and inference); "
                "retry later or send shorter audio",
            ) from None
        except AudioError as err:
            raise UploadError(422, "bad_audio", str(err)) from None
        except SerError as err:
            raise UploadError(422, "bad_request", str(err)) from None
        finally:
            self.pending -= 1


def _is_audio(content_type: str | None) -> bool:
    kind = (content_type or "").split(";")[0].strip().lower()
    return kind.startswith("audio/") or kind == "application/octet-stream"


class BodyLimit:
    """ASGI middleware: 413 for bodies over the cap, before they are read into memory or disk.

    Checks Content-Length when given, and counts the bytes of chunked bodies as they arrive.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _too_large(self.max_bytes)(scope, receive, send)
            return
        received = 0

        async def counted() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise UploadError(413, "too_large", _too_large_detail(self.max_bytes))
            return message

        await self.app(scope, counted, send)


def _too_large_detail(max_bytes: int) -> str:
    mb = (max_bytes - MULTIPART_SLACK) / 2**20
    return f"upload too large: the limit is {mb:g} MB; send a shorter or compressed file"


def _too_large(max_bytes: int) -> JSONResponse:
    return _error(UploadError(413, "too_large", _too_large_detail(max_bytes)))


def _error(err: UploadError) -> JSONResponse:
    return JSONResponse({"detail": err.detail, "code": err.code}, status_code=err.status)


async def _read_upload(request: Request, max_bytes: int) -> tuple[bytes, str]:
    """The audio bytes and a name for them, from a multipart field `file` or a raw body."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=10)
        except UploadError:
            raise
        except Exception as err:  # malformed multipart (Starlette raises HTTPException 400)
            raise UploadError(400, "bad_form", f"malformed multipart body ({err})") from None
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise UploadError(
                422, "no_file", "no file in the form; send the audio as the multipart field 'file'"
            )
        name = upload.filename or "upload"
        if not _is_audio(upload.content_type):
            raise UploadError(
                415,
                "not_audio",
                f"{name}: content type {upload.content_type!r} is not audio; "
                "send audio/* or application/octet-stream",
            )
        data = await upload.read(max_bytes + 1)
        await upload.close()
    elif _is_audio(kind):
        name = "upload"
        data = await request.body()
    else:
        raise UploadError(
            415,
            "not_audio",
            f"content type {kind or 'none'!r} is not accepted; send multipart/form-data with "
            "a field 'file', or a raw audio/* or application/octet-stream body",
        )
    if len(data) > max_bytes:
        raise UploadError(413, "too_large", _too_large_detail(max_bytes + MULTIPART_SLACK))
    return data, name


def create_app(
    recognizer: Recognizer,
    max_upload_mb: float = 20.0,
    timeout_s: float = 30.0,
    max_queue: int = 64,
    max_duration_s: float = 600.0,
    policy: EarlyPolicy | None = None,
) -> FastAPI:
    """The FastAPI app serving `recognizer` with these limits; with an Emo-RL `policy`, or a
    joint model's own, each answer also says when listening could have stopped."""
    limits = Limits(int(max_upload_mb * 2**20), timeout_s, max_queue, max_duration_s)
    service = Service(recognizer, limits, early_decider(recognizer, policy))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(title="ser: speech emotion recognition", version="1", lifespan=lifespan)
    app.state.service = service
    app.add_middleware(BodyLimit, max_bytes=limits.max_upload_bytes + MULTIPART_SLACK)

    @app.exception_handler(UploadError)
    async def _upload_error(request: Request, err: UploadError) -> JSONResponse:
        return _error(err)

    @app.exception_handler(RequestValidationError)
    async def _bad_query(request: Request, err: RequestValidationError) -> JSONResponse:
        # One line like every other error, instead of FastAPI's list of dicts.
        parts = [f"{e['loc'][-1]}: {e['msg']}" for e in err.errors()]
        return _error(UploadError(422, "bad_request", "; ".join(parts)))

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": recognizer.source,
            "classes": recognizer.class_names,
            "sample_rate": recognizer.sample_rate,
            "limits": limits.as_dict(),
        }

    @app.post(
        "/predict",
        openapi_extra={
            "requestBody": {
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"file": {"type": "string", "format": "binary"}},
                            "required": ["file"],
                        }
                    },
                    "audio/*": {"schema": {"type": "string", "format": "binary"}},
                },
                "required": True,
            }
        },
    )
    async def predict(
        request: Request,
        response: Response,
        window_s: float = Query(1.0, ge=0.1, le=30.0, description="timeline window (s)"),
        hop_s: float = Query(0.25, ge=0.05, le=30.0, description="timeline hop (s)"),
    ) -> dict[str, Any]:
        if hop_s > window_s:
            raise UploadError(
                422, "bad_request", f"hop_s={hop_s} must be at most window_s={window_s}"
            )
        data, name = await _read_upload(request, limits.max_upload_bytes)
        result = await service.run(data, name, window_s, hop_s)
        if result["warnings"]:  # also in the JSON body's `warnings`
            response.headers["X-SER-Warning"] = "; ".join(result["warnings"])
        return result

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return INDEX_HTML

    return app


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ser-serve", description="Serve a model over HTTP.")
    parser.add_argument(
        "--model", required=True, help="checkpoint, MLflow run id or models:/<name>@<alias>"
    )
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI for run ids")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-upload-mb", type=float, default=20.0, help="upload size cap")
    parser.add_argument("--timeout-s", type=float, default=30.0, help="per-request time limit")
    parser.add_argument(
        "--max-queue", type=int, default=64, help="requests queued or running before 503"
    )
    parser.add_argument(
        "--max-duration-s", type=float, default=600.0, help="longest audio accepted (s)"
    )
    parser.add_argument(
        "--policy",
        help="an Emo-RL policy (policy_*.zip): answers add its early decision (a joint model, "
        "rl=joint, adds its own without this); --model must be a causal model",
    )
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    import uvicorn

    args = build_parser().parse_args(argv)
    for name in ("max_upload_mb", "timeout_s", "max_duration_s"):
        if getattr(args, name) <= 0:
            raise SerError(f"--{name.replace('_', '-')} must be positive")
    if args.max_queue < 1:
        raise SerError("--max-queue must be at least 1")
    if not 0 <= args.port <= 65535:
        raise SerError(f"--port {args.port} is not a TCP port; give one in 1-65535, e.g. 8000")
    # The port first: one in use is one error line before the model loads; and "serving" is
    # printed once the socket listens (connections queue until the app takes them).
    policy = EarlyPolicy(args.policy) if args.policy else None  # before the port and model
    sock = listening_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    recognizer = load_recognizer(args.model, args.tracking_uri)
    app = create_app(
        recognizer,
        args.max_upload_mb,
        args.timeout_s,
        args.max_queue,
        args.max_duration_s,
        policy,
    )
    print(f"serving {recognizer.source} on http://{host}:{port}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) and listening, or one SerError naming the fix."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as err:
        raise SerError(
            f"--host {host}: {err.strerror}; give an address such as 127.0.0.1"
        ) from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as err:
        sock.close()
        raise SerError(
            f"cannot listen on {host}:{port} ({err.strerror}); the port may be in use: pick "
            "another with --port, or stop what holds it"
        ) from None
    return sock


if __name__ == "__main__":
    main()
