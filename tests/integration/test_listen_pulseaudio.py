"""`voice-router listen` on the real audio stack: PulseAudio null sink -> monitor -> sounddevice.

The recording is played with `paplay --device=vsink` while `voice-router listen --device pulse`
captures the sink's monitor, exactly as a microphone would be read (PortAudio callback stream at
the device's native rate, resampled to 16 kHz, silero-vad endpointing, router).

Needs a running PulseAudio with the `vsink` null sink (`scripts/start-pulseaudio.sh`; CI runs it
before the tests). Skipped, with the reason, only when `pactl info` fails.

Also here: with no audio server at all, `listen` and `devices` exit non-zero with a clear
message and no traceback (needs only PortAudio, not PulseAudio).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
SEQ = DATA / "speech_sequence.flac"
META = json.loads((DATA / "speech_sequence.json").read_text())
BUNDLED = ROOT / "voice_router" / "weights" / "whisper_tiny" / "model.safetensors"

ROUTES = """\
threshold: 0.0
margin: 0.0
routes:
  - name: affirm
    description: "yes"
    examples: ["yes please", "yes do it"]
    tool: tests.integration.pulse_tools:affirm
  - name: halt
    description: stop
    examples: ["stop it", "stop now"]
    tool: tests.integration.pulse_tools:halt
  - name: go_left
    description: left
    examples: ["go left", "turn left"]
    tool: tests.integration.pulse_tools:go_left
"""
TOOL_RESULTS = {"affirm": "affirmed", "halt": "halted", "go_left": "went left"}


def _pulse_ok() -> tuple[bool, str]:
    if shutil.which("pactl") is None or shutil.which("paplay") is None:
        return False, "pactl/paplay not installed (Debian pulseaudio-utils)"
    r = subprocess.run(["pactl", "info"], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        return False, f"`pactl info` failed: no PulseAudio server ({r.stderr.strip()[:200]})"
    sinks = subprocess.run(["pactl", "list", "short", "sinks"], capture_output=True, text=True)
    if "vsink" not in sinks.stdout:
        return False, "PulseAudio has no `vsink` null sink: run scripts/start-pulseaudio.sh"
    return True, ""


def _cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def _reader(stream, q: queue.Queue) -> None:  # type: ignore[no-untyped-def]
    for line in iter(stream.readline, ""):
        q.put(line)
    q.put(None)


@pytest.mark.audio
def test_listen_routes_a_recording_played_into_the_null_sink(tmp_path: Path) -> None:
    """Play a real recording ("stop", Speech Commands) padded with silence into `vsink`;
    `voice-router listen --device pulse --max-utterances 1 --json` must capture exactly one
    utterance, at the right place, and print one sane JSON line.

    Model: with bundled weights (voice_router/weights/whisper_tiny) the default model runs, the
    route itself is asserted ("halt") and its LangChain tool must have run. Without them, the tiny
    random model runs and only the plumbing is asserted: exactly one utterance, its duration
    matching the spoken word, the captured audio (--save-utterances) matching the recording
    that was played, and every JSON field present and sane (a random model's route would mean
    nothing).
    """
    ok, why = _pulse_ok()
    if not ok:
        pytest.skip(why)
    audio, sr = sf.read(SEQ, dtype="float32")
    clip = next(c for c in META["clips"] if c["word"] == "stop")
    word = audio[clip["start"] : clip["end"]]
    pad = np.zeros(int(0.5 * sr), np.float32)
    wav = tmp_path / "stop_padded.wav"
    sf.write(wav, np.concatenate([pad, word, pad, pad]), sr, subtype="PCM_16")
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)

    real_model = BUNDLED.exists()
    cmd = [
        sys.executable, "-m", "voice_router.cli", "listen",
        "--routes", str(routes), "--device", "pulse", "--max-utterances", "1", "--json",
        "--allow-import", "--index", str(tmp_path / "index"),
        "--save-utterances", str(tmp_path / "heard"),
        "--model", "default" if real_model else "tiny",
    ]  # fmt: skip
    if not real_model:
        cmd += ["--exemplar-voices", "0"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_cli_env()
    )
    err_q: queue.Queue = queue.Queue()
    out_q: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stderr, err_q), daemon=True).start()
    threading.Thread(target=_reader, args=(proc.stdout, out_q), daemon=True).start()
    stderr_lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while not any(line.startswith("listening on") for line in stderr_lines):
            assert time.monotonic() < deadline, f"never started listening: {stderr_lines}"
            try:
                line = err_q.get(timeout=1)
            except queue.Empty:
                continue
            assert line is not None, f"listen exited early: {stderr_lines}"
            stderr_lines.append(line)
        assert "pulse" in stderr_lines[-1]
        play = subprocess.run(
            ["paplay", "--device=vsink", str(wav)], capture_output=True, text=True, timeout=30
        )
        assert play.returncode == 0, play.stderr
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = []
    while (line := out_q.get(timeout=5)) is not None:
        out.append(line)
    while (line := err_q.get(timeout=5)) is not None:
        stderr_lines.append(line)
    assert proc.returncode == 0, "".join(stderr_lines)
    assert len(out) == 1, out
    d = json.loads(out[0])
    assert "Traceback" not in "".join(stderr_lines)
    assert any("1 utterance(s)" in line for line in stderr_lines), stderr_lines

    # JSON fields present and sane
    for key in ("route", "score", "margin", "started_at", "latency_ms", "candidates"):
        assert key in d, key
    assert {c["route"] for c in d["candidates"]} == {"affirm", "halt", "go_left"}
    assert -1.0 <= d["score"] <= 1.0 and d["margin"] >= 0.0
    assert d["route"] in (None, "affirm", "halt", "go_left")
    # one utterance the length of the spoken word (~0.3-0.5 s of speech), not noise or a cut
    assert 150 <= d["duration_ms"] <= 1200, d
    assert d["cut"] is False
    # end of speech -> routed: the 500 ms endpoint wait plus processing, well under 5 s
    assert 400 <= d["latency_ms"] < 5000, d
    # what was captured through PulseAudio is the recording that was played: the saved
    # utterance holds the whole spoken word (peak normalised cross-correlation with the source)
    heard, heard_sr = sf.read(d["audio_file"], dtype="float32")
    assert heard_sr == 16000 and 0.3 <= len(heard) / heard_sr <= 2.0
    n = len(heard) + len(word)
    xc = np.fft.irfft(np.fft.rfft(heard, n) * np.conj(np.fft.rfft(word, n)), n)
    assert np.abs(xc).max() / (np.linalg.norm(heard) * np.linalg.norm(word)) > 0.9
    # the matched route's LangChain tool really ran (its return value is in the result)
    if d["route"] is not None:
        assert d["tool_result"] == TOOL_RESULTS[d["route"]] and not d.get("tool_error"), d
    if real_model:
        assert d["route"] == "halt", d


def _no_server_env(tmp_path: Path) -> dict[str, str]:
    # A PulseAudio address where nothing listens: libpulse (and the ALSA pulse plugin that
    # PortAudio uses) then finds no server, as on a machine without one.
    return _cli_env(
        PULSE_SERVER=f"unix:{tmp_path}/no-such-pulse-socket",
        PULSE_RUNTIME_PATH=str(tmp_path / "no-pulse"),
    )


@pytest.mark.parametrize("args", [["listen", "--device", "pulse"], ["listen"], ["devices"]])
def test_no_audio_server_exits_nonzero_with_clear_message(tmp_path: Path, args: list[str]) -> None:
    pytest.importorskip("sounddevice", reason="sounddevice (and PortAudio) not installed")
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    cmd = [sys.executable, "-m", "voice_router.cli", *args]
    if args[0] == "listen":
        cmd += ["--routes", str(routes), "--model", "hash", "--index", str(tmp_path / "ix")]
    r = subprocess.run(
        cmd, capture_output=True, text=True, timeout=60, env=_no_server_env(tmp_path)
    )
    assert r.returncode == 8, (r.returncode, r.stderr)  # DeviceError.exit_code
    assert "Traceback" not in r.stderr
    assert r.stdout == ""
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    assert "PulseAudio or PipeWire" in last and "pactl info" in last


@pytest.mark.parametrize("sig", ["SIGINT", pytest.param("SIGTERM", marks=pytest.mark.slow)])
def test_ctrl_c_stops_cleanly_with_a_summary(tmp_path: Path, sig: str) -> None:
    """Ctrl-C (SIGINT) or SIGTERM while listening: exit 128 + the signal (130, 143; README's
    exit-code table), a summary line, no traceback.
    Uses a real-time file source, so it needs no audio server."""
    import signal

    audio, sr = sf.read(SEQ, dtype="float32")
    long = tmp_path / "long.flac"
    sf.write(long, np.tile(audio, 8), sr)  # ~50 s: still running when the signal comes
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    cmd = [
        sys.executable, "-m", "voice_router.cli", "listen", "--file", str(long), "--realtime",
        "--routes", str(routes), "--model", "hash", "--qdrant-url", ":memory:",
        "--exemplar-voices", "0", "--json",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_cli_env()
    )
    err_q: queue.Queue = queue.Queue()
    out_q: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stderr, err_q), daemon=True).start()
    threading.Thread(target=_reader, args=(proc.stdout, out_q), daemon=True).start()
    lines: list[str] = []
    outs: list[str] = []
    try:
        # the signal comes once the first utterance has been routed (its line is on stdout),
        # however long loading and the first command take on this machine
        first = out_q.get(timeout=120)
        assert first is not None, f"exited before routing anything: {list(err_q.queue)}"
        outs.append(first)
        proc.send_signal(getattr(signal, sig))
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    while (line := err_q.get(timeout=5)) is not None:
        lines.append(line)
    while (line := out_q.get(timeout=5)) is not None:
        outs.append(line)
    out = "".join(outs)
    err = "".join(lines)
    assert proc.returncode == 128 + getattr(signal, sig), err
    assert "Traceback" not in err
    summary = [x for x in lines if x.startswith("stopped: ")]
    assert len(summary) == 1, err
    n = len(out.splitlines())
    assert 1 <= n < 24 and f"{n} utterance(s)" in summary[0], (out, summary)
    assert "dropped" in summary[0] and "matched" in summary[0]
