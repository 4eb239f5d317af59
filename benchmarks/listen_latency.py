"""Live-listening figures: end-of-speech -> tool-call latency (p50/p95) and idle CPU use.

    python benchmarks/listen_latency.py [--model default|tiny|PATH] [--repeats 4]
        [--idle-seconds 10] [--no-pulse] [--threads 1] [--json]

What it measures (same code path as `voice-router listen`: capture thread, silero-vad
segmenter, bounded queue, VoiceRouter with a LangChain tool that is really called):

1. latency, file source in real time: tests/data/speech_sequence.flac (three real spoken
   commands separated by silence) repeated --repeats times, paced at real-time speed, so each
   utterance's end of speech is followed by the endpointing wait, as from a microphone.
   `latency_ms` = last voiced sample -> tool call returned (includes the 500 ms endpoint
   silence); `processing_ms` = endpoint detected -> tool call returned (embed + search + tool).
2. latency through PulseAudio (unless --no-pulse or no server): the same recording played with
   `paplay --device=vsink` while listening to device `pulse` (the null sink's monitor). Times
   count from when a sample reached the capture callback (the audio server's own buffering
   before that is not visible to the process).
3. CPU while idle listening: process CPU time / wall time over --idle-seconds of listening to
   (a) the PulseAudio monitor with nothing playing (digital silence: frames below the -70 dBFS
   energy floor skip the VAD model), and (b) a real-time source of steady background noise at
   -50 dBFS (every frame goes through silero-vad, as with a real microphone in a room).
   Reported as % of one core.

Model: --model default needs voice_router/weights/whisper_tiny; without it the script uses "tiny"
(random weights: the routing decisions mean nothing, the timings are those of the tiny config).
--model compact-init builds the bundled model's architecture at its initial weights (same
compute as the trained model, so representative timings before weights exist).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SEQ = REPO / "tests" / "data" / "speech_sequence.flac"
ROUTES = """\
threshold: 0.0
margin: 0.0
routes:
  - name: affirm
    description: "yes"
    tool: act
  - name: halt
    description: stop
    tool: act
  - name: go_left
    description: left
    tool: act
"""


def pct(values: list[float], q: float) -> float:
    """Percentile q (0-100) by linear interpolation."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def summarize(results: list[Any]) -> dict[str, Any]:
    """p50/p95 of latency_ms and processing_ms, mean stage times, count."""
    lat = [r.latency_ms for r in results]
    proc = [r.processing_ms for r in results]
    stages: dict[str, list[float]] = {}
    for r in results:
        for k, v in (r.match.latency_ms or {}).items():
            stages.setdefault(k, []).append(float(v))
    return {
        "utterances": len(results),
        "latency_ms_p50": round(pct(lat, 50), 1) if lat else None,
        "latency_ms_p95": round(pct(lat, 95), 1) if lat else None,
        "processing_ms_p50": round(pct(proc, 50), 1) if proc else None,
        "processing_ms_p95": round(pct(proc, 95), 1) if proc else None,
        "stages_ms_median": {k: round(statistics.median(v), 2) for k, v in stages.items()},
    }


def make_router(model: str) -> Any:
    """VoiceRouter over three command routes, Qdrant :memory:, one real LangChain tool."""
    from langchain_core.tools import tool

    from voice_router.routes import parse_routes
    from voice_router.runnable import VoiceRouter

    @tool
    def act() -> str:
        """A tool that does nothing but return."""
        return "ok"

    m: Any = model
    if model == "compact-init":  # the bundled model's architecture at its initial weights
        from voice_router.model.torch_runtime import build_embedding_model

        m = build_embedding_model("compact")
    return VoiceRouter(
        parse_routes(ROUTES), model=m, tools=[act], index=":memory:", exemplar_voices=0
    )


def bench_file(router: Any, repeats: int, silence_ms: float) -> dict[str, Any]:
    """Latency on the test recording, repeated, paced in real time."""
    from voice_router.audio.capture import ArraySource
    from voice_router.listen import listen

    audio, sr = sf.read(SEQ, dtype="float32")
    src = ArraySource(np.tile(audio, repeats), sr, realtime=True)
    results = list(listen(src, router, silence_ms=silence_ms))
    return summarize(results)


def pulse_ok() -> bool:
    """True when a PulseAudio server with the vsink null sink answers."""
    if shutil.which("pactl") is None or shutil.which("paplay") is None:
        return False
    r = subprocess.run(["pactl", "list", "short", "sinks"], capture_output=True, text=True)
    return r.returncode == 0 and "vsink" in r.stdout


def bench_pulse(router: Any, repeats: int, silence_ms: float) -> dict[str, Any]:
    """Latency with the recording played into the null sink and captured from its monitor."""
    from voice_router.audio.capture import MicrophoneSource
    from voice_router.listen import listen

    audio, sr = sf.read(SEQ, dtype="float32")
    wav = Path(os.environ.get("TMPDIR", "/tmp")) / "listen_latency_seq.wav"
    sf.write(wav, np.tile(audio, repeats), sr, subtype="PCM_16")
    expected = 3 * repeats
    src = MicrophoneSource("pulse")
    listener = listen(src, router, silence_ms=silence_ms, max_utterances=expected)
    results: list[Any] = []

    def consume() -> None:
        results.extend(listener)

    t = threading.Thread(target=consume)
    t.start()
    if not listener.ready.wait(15):
        listener.stop()
        t.join()
        return {"error": "no audio from the pulse device within 15 s"}
    subprocess.run(["paplay", "--device=vsink", str(wav)], check=True, timeout=120)
    t.join(timeout=10)
    listener.stop()
    t.join()
    out = summarize(results)
    out["expected_utterances"] = expected
    out["dropped_blocks"] = src.stats()["dropped_blocks"]
    return out


def idle_cpu(source: Any, seconds: float) -> dict[str, Any]:
    """Process CPU % of one core while the pipeline listens to `source` for `seconds`."""
    from voice_router.listen import listen

    class NoRouter:
        def route(self, audio: np.ndarray, **kw: Any) -> Any:
            raise AssertionError("idle benchmark heard speech")

    listener = listen(source, NoRouter())
    t = threading.Thread(target=lambda: list(listener))
    t.start()
    if not listener.ready.wait(15):
        listener.stop()
        t.join()
        return {"error": "no audio within 15 s"}
    time.sleep(1.0)  # settle (model warm-up, first blocks)
    c0, w0 = time.process_time(), time.monotonic()
    vad0 = listener.segmenter.model_frames
    time.sleep(seconds)
    c1, w1 = time.process_time(), time.monotonic()
    vad1 = listener.segmenter.model_frames
    listener.stop()
    t.join()
    frames = (w1 - w0) * 16000 / 512
    return {
        "seconds": round(w1 - w0, 1),
        "cpu_percent_of_one_core": round(100 * (c1 - c0) / (w1 - w0), 2),
        "vad_model_frames_fraction": round((vad1 - vad0) / frames, 3),
        "utterances": listener.stats.utterances,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--model", default=None, help="default (bundled), tiny, compact-init, or a folder"
    )
    p.add_argument("--repeats", type=int, default=4, help="passes over the 3-command recording")
    p.add_argument("--silence-ms", type=float, default=500.0, help="endpoint silence [500]")
    p.add_argument("--idle-seconds", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=1, help="torch threads [1]")
    p.add_argument("--no-pulse", action="store_true", help="skip the PulseAudio measurements")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from voice_router.audio.capture import ArraySource, MicrophoneSource

    bundled = REPO / "voice_router" / "weights" / "whisper_tiny" / "model.safetensors"
    model = args.model or ("default" if bundled.exists() else "tiny")
    out: dict[str, Any] = {
        "model": model,
        "torch_threads": args.threads,
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "silence_ms": args.silence_ms,
    }
    with make_router(model) as router:
        out["file_realtime"] = bench_file(router, args.repeats, args.silence_ms)
        if not args.no_pulse and pulse_ok():
            out["pulse"] = bench_pulse(router, args.repeats, args.silence_ms)
    noise = np.random.default_rng(0).normal(
        0, 10 ** (-50 / 20), int(16000 * (args.idle_seconds + 5))
    )
    out["idle_noise_-50dBFS"] = idle_cpu(
        ArraySource(noise.astype(np.float32), realtime=True), args.idle_seconds
    )
    if not args.no_pulse and pulse_ok():
        out["idle_pulse_silence"] = idle_cpu(MicrophoneSource("pulse"), args.idle_seconds)
    out["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]

    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(
        f"model {model}, torch threads {args.threads}, {out['cpus']} CPUs, "
        f"load average at start {out['loadavg_at_start']}"
    )
    for key in ("file_realtime", "pulse"):
        r = out.get(key)
        if not r:
            continue
        if "error" in r:
            print(f"{key}: {r['error']}")
            continue
        print(
            f"{key:14s} {r['utterances']:3d} utterances  end of speech -> tool done: "
            f"p50 {r['latency_ms_p50']} ms, p95 {r['latency_ms_p95']} ms  "
            f"(endpoint -> tool done: p50 {r['processing_ms_p50']} ms, "
            f"p95 {r['processing_ms_p95']} ms)  stages {r['stages_ms_median']}"
        )
    for key in ("idle_noise_-50dBFS", "idle_pulse_silence"):
        r = out.get(key)
        if r:
            print(
                f"{key:20s} CPU {r.get('cpu_percent_of_one_core')} % of one core over "
                f"{r.get('seconds')} s (VAD model ran on {r.get('vad_model_frames_fraction')} "
                f"of frames)"
                if "error" not in r
                else f"{key}: {r['error']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
