"""Routing from several threads at once gives the same results as serial, with bounded memory."""

from __future__ import annotations

import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from langchain_core.tools import tool

from voice_router import VoiceRouter
from voice_router.routes import parse_routes

ROUTES = """\
threshold: 0.4
margin: 0.02
routes:
  - {name: lights_on, description: turn on the lights, examples: [lights on], tool: count}
  - {name: lights_off, description: turn off the lights, examples: [lights off], tool: count}
  - {name: weather, description: what is the weather, examples: [will it rain], tool: count}
  - {name: music, description: play some music, examples: [play a song], tool: count}
"""
PHRASES = [
    "lights on",
    "turn off the lights",
    "will it rain",
    "play a song please",
    "what is the time",
    "the weather today",
    "music on",
]

_lock = threading.Lock()
CALLS: dict[str, int] = {}


@tool
def count(match: dict | None = None) -> str:
    """Counts calls per route."""
    route = (match or {}).get("route", "?")
    with _lock:
        CALLS[route] = CALLS.get(route, 0) + 1
    return route


def _clips(model, n: int) -> list[np.ndarray]:
    from voice_router.audio.io import load_audio

    rng = np.random.default_rng(0)
    clips = []
    for i in range(n):
        c = rng.uniform(-0.3, 0.3, 8000 + 160 * (i % 7)).astype(np.float32)
        model.register_audio(load_audio((c, 16000)), PHRASES[i % len(PHRASES)])
        clips.append(c)
    return clips


def _key(m):
    return (m.route, round(m.score, 6), round(m.margin, 6), m.nearest, m.tool_result)


@pytest.mark.parametrize("store", ["memory", "edge"])
def test_threads_give_serial_results(hash_model, tmp_path, store):
    index = ":memory:" if store == "memory" else tmp_path / "idx"
    router = VoiceRouter(
        parse_routes(ROUTES), model=hash_model, tools=[count], index=index, exemplar_voices=0
    )
    clips = _clips(hash_model, 84)
    CALLS.clear()
    serial = [_key(router.route(c)) for c in clips]
    serial_calls = dict(CALLS)
    assert {k[0] for k in serial} >= {"lights_on", "lights_off", "weather", "music"}
    CALLS.clear()
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = [_key(m) for m in pool.map(router.route, clips)]
    assert threaded == serial
    assert CALLS == serial_calls  # every matched route's tool ran exactly once per clip
    assert [_key(m) for m in router.batch(clips, config={"max_concurrency": 6})] == serial
    router.close()


def test_memory_stays_bounded_over_many_concurrent_routes(hash_model):
    router = VoiceRouter(
        parse_routes(ROUTES), model=hash_model, tools=[count], index=":memory:", exemplar_voices=0
    )
    clips = _clips(hash_model, 28)

    def burst():
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(router.route, clips * 4))

    burst()  # warm caches (imports, thread pools)
    tracemalloc.start()
    try:
        burst()
        after_one, _ = tracemalloc.get_traced_memory()
        for _ in range(3):
            burst()
        after_four, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after_four - after_one < 512 * 1024, "memory grows with every burst"
    assert peak < 64 * 2**20


@pytest.mark.slow
def test_threads_with_the_tiny_torch_model():
    import torch

    torch.set_num_threads(1)
    from voice_router.model import load_model

    model = load_model("tiny")
    router = VoiceRouter(
        parse_routes(ROUTES), model=model, index=":memory:", exemplar_voices=0, dispatch=False
    )
    rng = np.random.default_rng(1)
    clips = [rng.uniform(-0.3, 0.3, 8000 + 800 * (i % 5)).astype(np.float32) for i in range(24)]
    serial = [router.scores(c) for c in clips]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(router.scores, clips))
    for s, t in zip(serial, threaded, strict=True):
        assert t == pytest.approx(s, abs=1e-5)


def test_refresh_while_other_threads_route(hash_model):
    """Enrolment + refresh while threads route: every result is a valid decision, no errors."""
    router = VoiceRouter(
        parse_routes(ROUTES), model=hash_model, tools=[count], index=":memory:", exemplar_voices=0
    )
    clips = _clips(hash_model, 28)
    names = {"lights_on", "lights_off", "weather", "music", None}
    stop = threading.Event()
    errors: list[BaseException] = []

    def refresher():
        i = 0
        while not stop.is_set():
            clip = np.random.default_rng(100 + i).uniform(-0.2, 0.2, 4000).astype(np.float32)
            router.enroll("music", [clip], [f"e{i}"])
            router.refresh()
            i += 1

    t = threading.Thread(target=refresher)
    t.start()
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            for m in pool.map(router.route, clips * 3):
                assert m.route in names
    except BaseException as e:  # pragma: no cover - reported below
        errors.append(e)
    finally:
        stop.set()
        t.join()
    assert not errors
