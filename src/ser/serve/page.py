"""The page ser-serve shows at `/`: self-contained HTML (inline CSS and JS, nothing external).

Upload a file, or record from the microphone: the browser's MediaRecorder gives WebM or Ogg
(Opus), which libsndfile may not decode (WebM never), so recordings are decoded by the browser
(Web Audio), resampled to the model's rate and sent as 16-bit PCM WAV. Uploaded files go as
they are; if the server cannot decode one and the browser can, it is converted and re-sent.
`document.body.dataset.state` is "ready", "busy", "done" or "error" (for automated checks).
"""

INDEX_HTML = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ser: speech emotion recognition</title>
<style>
  :root { --fg: #1d2330; --muted: #5c6577; --line: #d9dee7; --accent: #1f77b4; }
  * { box-sizing: border-box; }
  body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
         margin: 0; background: #f5f7fa; }
  main { max-width: 880px; margin: 0 auto; padding: 20px 18px 40px; }
  h1 { font-size: 22px; margin: 0 0 2px; }
  .muted { color: var(--muted); font-size: 13px; }
  .card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px;
          margin-top: 14px; }
  .controls { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; }
  button, label.button { font: inherit; border: 1px solid var(--accent); background: var(--accent);
          color: #fff; border-radius: 6px; padding: 7px 14px; cursor: pointer; }
  button.secondary { background: #fff; color: var(--accent); }
  button.recording { background: #d62728; border-color: #d62728; }
  button:disabled { opacity: .5; cursor: default; }
  input[type=file] { display: none; }
  #status { min-height: 1.4em; }
  #error { display: none; color: #a0181b; background: #fdecec; border: 1px solid #f3c2c2;
           border-radius: 6px; padding: 8px 10px; margin-top: 10px; }
  #result { display: none; }
  .label { font-size: 28px; font-weight: 650; margin-right: 10px; }
  .bars { display: grid; grid-template-columns: max-content 1fr 4.5em; gap: 5px 10px;
          align-items: center; margin-top: 10px; }
  .track { background: #eef1f5; border-radius: 4px; height: 14px; overflow: hidden; }
  .fill { height: 100%; border-radius: 4px; }
  .num { text-align: right; font-variant-numeric: tabular-nums; }
  canvas { width: 100%; height: 300px; display: block; margin-top: 8px; }
  .legend { display: flex; flex-wrap: wrap; gap: 14px; font-size: 13px; margin-top: 4px; }
  .swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
            vertical-align: -1px; margin-right: 5px; }
  audio { height: 34px; }
</style>
</head>
<body data-state="loading">
<main>
  <h1>Speech emotion recognition</h1>
  <div class="muted" id="model">loading model information...</div>

  <div class="card">
    <div class="controls">
      <label class="button" for="file">Upload audio file</label>
      <input type="file" id="file" accept="audio/*,.wav,.flac,.ogg,.mp3">
      <button id="record" class="secondary">Record from microphone</button>
      <span id="status" class="muted"></span>
    </div>
    <div id="error"></div>
  </div>

  <div class="card" id="result">
    <div><span class="label" id="label"></span><span class="muted" id="summary"></span></div>
    <div class="bars" id="bars"></div>
    <h3 style="margin:16px 0 0;font-size:15px">Emotion over time</h3>
    <div class="muted" id="timeline-note"></div>
    <canvas id="timeline"></canvas>
    <div class="legend" id="legend"></div>
    <div style="margin-top:10px"><audio id="player" controls></audio></div>
  </div>
</main>
<script>
"use strict";
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const MAX_RECORD_S = 60;
const $ = (id) => document.getElementById(id);
let health = null, recorder = null, stopTimer = null, last = null;

function setState(state, text) {
  document.body.dataset.state = state;
  $("status").textContent = text || "";
  if (state !== "error") { $("error").style.display = "none"; }
}
function showError(text) {
  setState("error", "");
  $("error").textContent = text;
  $("error").style.display = "block";
}

async function loadHealth() {
  try {
    const r = await fetch("health");
    health = await r.json();
    const l = health.limits;
    $("model").textContent = `model ${health.model} · classes ${health.classes.join(", ")} · ` +
      `${health.sample_rate} Hz · uploads up to ${l.max_upload_mb} MB and ${l.max_duration_s} s`;
    setState("ready", "");
  } catch (e) { showError("cannot reach the server: " + e); }
}

// ---- WAV conversion (Web Audio): any format the browser decodes -> mono 16-bit PCM WAV ----
async function toWav(blob) {
  const rate = health ? health.sample_rate : 16000;
  const ctx = new AudioContext();
  let decoded;
  try { decoded = await ctx.decodeAudioData(await blob.arrayBuffer()); }
  finally { ctx.close(); }
  const length = Math.max(1, Math.ceil(decoded.duration * rate));
  const offline = new OfflineAudioContext(1, length, rate);  // mixes down and resamples
  const src = offline.createBufferSource();
  src.buffer = decoded;
  src.connect(offline.destination);
  src.start();
  const samples = (await offline.startRendering()).getChannelData(0);
  const out = new DataView(new ArrayBuffer(44 + samples.length * 2));
  const text = (at, s) => {
    for (let i = 0; i < s.length; i++) out.setUint8(at + i, s.charCodeAt(i));
  };
  text(0, "RIFF"); out.setUint32(4, 36 + samples.length * 2, true); text(8, "WAVE");
  text(12, "fmt "); out.setUint32(16, 16, true); out.setUint16(20, 1, true);
  out.setUint16(22, 1, true); out.setUint32(24, rate, true); out.setUint32(28, rate * 2, true);
  out.setUint16(32, 2, true); out.setUint16(34, 16, true);
  text(36, "data"); out.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    out.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([out.buffer], { type: "audio/wav" });
}

async function send(blob, name) {
  const form = new FormData();
  form.append("file", blob, name);
  const r = await fetch("predict", { method: "POST", body: form });
  let body = null;
  try { body = await r.json(); } catch (e) { body = { detail: r.statusText }; }
  return { ok: r.ok, status: r.status, body };
}

async function predict(blob, name, convert) {
  setState("busy", `analysing ${name}...`);
  try {
    if (convert) { blob = await toWav(blob); name = name.replace(/\.[^.]*$/, "") + ".wav"; }
    let res = await send(blob, name);
    if (!res.ok && res.body.code === "bad_audio" && !convert &&
        /cannot decode/.test(res.body.detail || "")) {
      // The server cannot decode it (e.g. WebM, AAC); let the browser try.
      setState("busy", `converting ${name} to WAV in the browser...`);
      try { blob = await toWav(blob); } catch (e) { throw new Error(res.body.detail); }
      res = await send(blob, name.replace(/\.[^.]*$/, "") + ".wav");
    }
    if (!res.ok) {
      const detail = typeof res.body.detail === "string" ? res.body.detail
                                                         : JSON.stringify(res.body.detail);
      throw new Error(`${res.status}: ${detail}`);
    }
    $("player").src = URL.createObjectURL(blob);
    show(res.body);
  } catch (e) { showError(String(e.message || e)); }
}

// ---- result: label, probability bars, timeline canvas ----
function show(result) {
  last = result;
  const names = result.timeline.classes;
  $("result").style.display = "block";
  $("label").textContent = result.label;
  $("label").style.color = COLORS[names.indexOf(result.label) % COLORS.length];
  $("summary").textContent = `${result.source} · ${result.duration_s.toFixed(2)} s · ` +
    `p = ${result.probabilities[result.label].toFixed(3)}`;
  const bars = $("bars");
  bars.replaceChildren();
  names.forEach((n, i) => {
    const p = result.probabilities[n];
    const name = document.createElement("div"); name.textContent = n;
    const track = document.createElement("div"); track.className = "track";
    const fill = document.createElement("div"); fill.className = "fill";
    fill.style.width = (100 * p).toFixed(1) + "%";
    fill.style.background = COLORS[i % COLORS.length];
    track.append(fill);
    const num = document.createElement("div");
    num.className = "num";
    num.textContent = p.toFixed(3);
    bars.append(name, track, num);
  });
  $("legend").replaceChildren(...names.map((n, i) => {
    const s = document.createElement("span");
    s.innerHTML = `<span class="swatch" style="background:${COLORS[i % COLORS.length]}"></span>`;
    s.append(n);
    return s;
  }));
  const t = result.timeline;
  $("timeline-note").textContent = `${t.start_s.length} windows of ${t.window_s} s every ` +
    `${t.hop_s} s; top: waveform, middle: most likely class per window, bottom: probabilities`;
  draw(result.timeline);
  setState("done", "");
}

function draw(t) {
  const canvas = $("timeline");
  const dpr = window.devicePixelRatio || 1;
  const W = canvas.clientWidth, H = canvas.clientHeight;
  canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
  const g = canvas.getContext("2d");
  g.scale(dpr, dpr);
  g.clearRect(0, 0, W, H);
  const left = 40, right = 10, top = 6, waveH = 60, stripTop = top + waveH + 6, stripH = 10;
  const plotTop = stripTop + stripH + 8, plotH = H - plotTop - 24, plotW = W - left - right;
  const dur = Math.max(t.duration_s, 1e-6);
  const x = (s) => left + plotW * s / dur;
  g.font = "11px system-ui, sans-serif";
  // waveform envelope (peak |amplitude| per block, mirrored)
  const env = t.envelope, mid = top + waveH / 2;
  g.fillStyle = "#4d4d4d";
  const bw = plotW / Math.max(env.length, 1);
  env.forEach((v, i) => {
    const h = Math.max(0.5, v * waveH / 2);
    g.fillRect(left + i * bw, mid - h, Math.max(bw, 1), 2 * h);
  });
  // most likely class per window, over the span each window's centre stands for
  const names = t.classes, n = t.start_s.length;
  const centres = t.start_s.map((s, i) => (s + t.end_s[i]) / 2);
  for (let i = 0; i < n; i++) {
    const a = i === 0 ? 0 : (centres[i - 1] + centres[i]) / 2;
    const b = i === n - 1 ? dur : (centres[i] + centres[i + 1]) / 2;
    g.fillStyle = COLORS[names.indexOf(t.label[i]) % COLORS.length];
    const xa = Math.floor(x(a)), xb = Math.ceil(x(b));  // whole pixels: no seams
    g.fillRect(xa, stripTop, Math.max(xb - xa, 1), stripH);
  }
  // probability axes
  g.strokeStyle = "#d9dee7"; g.fillStyle = "#5c6577"; g.lineWidth = 1;
  g.textAlign = "right"; g.textBaseline = "middle";
  [0, 0.5, 1].forEach((p) => {
    const y = plotTop + plotH * (1 - p);
    g.beginPath(); g.moveTo(left, y); g.lineTo(left + plotW, y); g.stroke();
    g.fillText(p.toFixed(1), left - 6, y);
  });
  const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300];
  const step = steps.find((s) => dur / s <= 10) || 600;
  g.textAlign = "center"; g.textBaseline = "top";
  for (let s = 0; s <= dur + 1e-9; s += step) {
    g.beginPath(); g.moveTo(x(s), plotTop); g.lineTo(x(s), plotTop + plotH); g.stroke();
    g.fillText((Math.round(s * 10) / 10) + " s", x(s), plotTop + plotH + 5);
  }
  // one curve per class at the window centres
  names.forEach((name, k) => {
    const ys = t.probabilities[name];
    g.strokeStyle = g.fillStyle = COLORS[k % COLORS.length];
    g.lineWidth = 2;
    g.beginPath();
    ys.forEach((p, i) => {
      const px = x(centres[i]), py = plotTop + plotH * (1 - p);
      if (i === 0) g.moveTo(px, py); else g.lineTo(px, py);
    });
    g.stroke();
    if (n <= 80) ys.forEach((p, i) => {
      g.beginPath(); g.arc(x(centres[i]), plotTop + plotH * (1 - p), 2.5, 0, 2 * Math.PI); g.fill();
    });
  });
}

// ---- controls ----
$("file").addEventListener("change", () => {
  const f = $("file").files[0];
  if (f) predict(f, f.name, false);
  $("file").value = "";
});

$("record").addEventListener("click", async () => {
  if (recorder) { recorder.stop(); return; }
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    showError("this browser cannot record audio here (it needs https or localhost)");
    return;
  }
  let stream;
  try { stream = await navigator.mediaDevices.getUserMedia({ audio: true }); }
  catch (e) { showError("no microphone: " + e.message); return; }
  const chunks = [];
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
  recorder.onstop = () => {
    clearTimeout(stopTimer);
    stream.getTracks().forEach((tr) => tr.stop());
    const blob = new Blob(chunks, { type: recorder.mimeType || "audio/webm" });
    recorder = null;
    $("record").textContent = "Record from microphone";
    $("record").classList.remove("recording");
    predict(blob, "recording", true);  // WebM/Ogg -> WAV in the browser
  };
  recorder.start();
  stopTimer = setTimeout(() => recorder && recorder.stop(), MAX_RECORD_S * 1000);
  $("record").textContent = "Stop";
  $("record").classList.add("recording");
  setState("busy", `recording (stops by itself after ${MAX_RECORD_S} s)...`);
});

window.addEventListener("resize", () => { if (last) draw(last.timeline); });
loadHealth();
</script>
</body>
</html>
"""
