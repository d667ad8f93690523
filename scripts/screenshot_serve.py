"""A manual check of ser-serve's page in headless Chromium (not part of the test suite).

    python scripts/screenshot_serve.py --model REF --audio FILE [--out docs/img/serve_page.png]

Starts ser-serve and Chromium (Debian's `chromium` package) on 127.0.0.1, opens the page over
the DevTools protocol, uploads FILE through the page's file input and, with --mic SECONDS,
also records SECONDS from Chromium's fake microphone fed with FILE (which exercises the
in-browser WebM -> WAV conversion), then saves a screenshot of the drawn result.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_http(url: str, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as r:
                    if r.status == 200:
                        return await r.json(content_type=None)
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not answer within {seconds:g} s")
            await asyncio.sleep(0.5)


class Page:
    """A minimal DevTools-protocol client for one page target."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws, self.ids = ws, itertools.count(1)

    async def call(self, method: str, **params) -> dict:
        msg_id = next(self.ids)
        await self.ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads((await asyncio.wait_for(self.ws.receive(), 60)).data)
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    async def eval(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def wait_state(self, states: set[str], seconds: float) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            state = await self.eval("document.body.dataset.state")
            if state in states:
                return state
            await asyncio.sleep(0.25)
        raise SystemExit(f"page never reached {states} within {seconds:g} s")

    async def result(self) -> str:
        return await self.eval(
            "document.body.dataset.state + ': ' + ($('error').textContent || "
            "$('label').textContent + ' ' + $('summary').textContent)"
        )


async def drive(args: argparse.Namespace, base: str, devtools: int) -> None:
    targets = await wait_http(f"http://127.0.0.1:{devtools}/json/list", 60)
    page_url = next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"]
    async with aiohttp.ClientSession() as http, http.ws_connect(page_url, max_msg_size=0) as ws:
        page = Page(ws)
        await page.call("Page.enable")
        await page.call(
            "Emulation.setDeviceMetricsOverride", width=1000, height=1000, deviceScaleFactor=1,
            mobile=False,
        )  # fmt: skip
        await page.call("Page.navigate", url=f"{base}/")
        await page.wait_state({"ready"}, 60)
        if args.mic:
            await page.eval("document.getElementById('record').click()")
            await asyncio.sleep(args.mic)
            await page.eval("document.getElementById('record').click()")
            await page.wait_state({"done", "error"}, 120)
            print("microphone:", await page.result())
        root = await page.call("DOM.getDocument")
        node = await page.call("DOM.querySelector", nodeId=root["root"]["nodeId"], selector="#file")
        await page.call(
            "DOM.setFileInputFiles", files=[str(Path(args.audio).resolve())], nodeId=node["nodeId"]
        )
        await asyncio.sleep(0.5)
        await page.wait_state({"done", "error"}, 120)
        print("file upload:", await page.result())
        await page.call(
            "Emulation.setDeviceMetricsOverride", width=1000, height=400, deviceScaleFactor=1,
            mobile=False,
        )  # fmt: skip
        height = await page.eval("document.documentElement.scrollHeight")
        await page.call(
            "Emulation.setDeviceMetricsOverride", width=1000, height=int(height),
            deviceScaleFactor=1, mobile=False,
        )  # fmt: skip
        await page.eval("window.dispatchEvent(new Event('resize'))")
        await asyncio.sleep(0.5)
        shot = await page.call("Page.captureScreenshot", format="png")
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(shot["data"]))
        print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--audio", required=True, help="file to upload (and fake mic input)")
    parser.add_argument("--mic", type=float, default=0, help="also record this many seconds")
    parser.add_argument("--out", default=str(REPO / "docs/img/serve_page.png"))
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Chromium: apt-get install chromium")
    port, devtools = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ}
    env.pop("MLFLOW_TRACKING_URI", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "ser.serve.http", "--model", args.model, "--port", str(port)],
        cwd=REPO, env=env,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="ser-chromium-") as profile:
        browser = subprocess.Popen(
            [
                chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
                f"--remote-debugging-port={devtools}", "--remote-allow-origins=*",
                f"--user-data-dir={profile}", "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={Path(args.audio).resolve()}",
                "--autoplay-policy=no-user-gesture-required", "about:blank",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            asyncio.run(wait_http(f"{base}/health", 180))
            asyncio.run(asyncio.wait_for(drive(args, base, devtools), 600))
        finally:
            for proc in (browser, server):
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
