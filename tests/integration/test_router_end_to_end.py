"""End to end on real parts: Qdrant Edge on disk and qdrant-client :memory:, the tiny torch
model, real audio files from tests/data, espeak-ng exemplars, and LangChain tools invoked."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from examples import home_tools
from voice_router import AudioLibrary, RouteIndex, VoiceRouter, VoiceRouterEmbeddings
from voice_router.point_schema import KIND_AUDIO
from voice_router.points import PointBuilder
from voice_router.routes import parse_routes
from voice_router.store import ClientBackend, EdgeBackend

from .conftest import ROOT

CLIP = ROOT / "tests" / "data" / "rhasspy_turn_on_the_living_room_lamp.flac"
CLIP2 = ROOT / "tests" / "data" / "rhasspy_what_time_is_it.flac"

ROUTES = """\
threshold: 0.3
margin: 0.0
routes:
  - name: lights_on
    description: Turn the lights on.
    examples: ["turn on the lamp", "lights on please"]
    tool: examples.home_tools:lights_on
    args: {room: living room}
  - name: what_time
    description: Tell me what time it is.
    examples: ["what time is it"]
    tool: examples.home_tools:get_time
  - name: lock_door
    description: Lock the front door.
    tool: examples.home_tools:lock_door
"""


def _backend(kind, tmp_path):
    return EdgeBackend(tmp_path / "idx") if kind == "edge" else ClientBackend(":memory:")


@pytest.mark.parametrize("store", ["edge", "memory"])
def test_enrolled_recording_routes_to_its_tool(store, tmp_path, tiny_model):
    """A real recording enrolled for a route is routed there and its LangChain tool runs."""
    home_tools.ACTIONS.clear()
    rs = parse_routes(ROUTES)
    index = RouteIndex(_backend(store, tmp_path), dim=tiny_model.dim,
                       fingerprint=tiny_model.fingerprint)  # fmt: skip
    router = VoiceRouter(rs, model=tiny_model, tools=home_tools.HOME_TOOLS, index=index,
                         exemplar_voices=0, fusion="max")  # fmt: skip
    from voice_router.audio.io import load_audio

    router.enroll("lights_on", [load_audio(CLIP)], [str(CLIP)])
    router.refresh()
    m = router.route(CLIP)
    # the speech gate trims the clip's silence before embedding; the enrolled copy is whole
    assert m.route == "lights_on" and m.score == pytest.approx(1.0, abs=0.01)
    assert m.tool_result == "Lights on in the living room." and m.tool_error is None
    assert home_tools.ACTIONS[-1] == {
        "tool": "lights_on",
        "room": "living room",
        "route": "lights_on",
    }
    assert json.loads(json.dumps(m.to_dict()))["file"] == str(CLIP)
    router.close()


def test_edge_restart_writes_nothing_and_edit_reembeds_one_route(tmp_path, tiny_model):
    rs = parse_routes(ROUTES)
    with VoiceRouter(
        rs, model=tiny_model, index=tmp_path / "idx", exemplar_voices=0, dispatch=False
    ) as r1:
        n = r1.sync_report.added
        before = r1.scores(CLIP)
    assert n == sum(len(r.texts()) for r in rs.routes)
    with VoiceRouter(
        rs, model=tiny_model, index=tmp_path / "idx", exemplar_voices=0, dispatch=False
    ) as r2:
        assert (r2.sync_report.added, r2.sync_report.removed) == (0, 0)
        assert r2.scores(CLIP) == pytest.approx(before, abs=1e-6)
    edited = parse_routes(ROUTES.replace('["what time is it"]', '["what time is it", "the time"]'))
    with VoiceRouter(
        edited, model=tiny_model, index=tmp_path / "idx", exemplar_voices=0, dispatch=False
    ) as r3:
        assert (r3.sync_report.added, r3.sync_report.removed) == (1, 0)


def test_espeak_exemplars_are_built_once(tmp_path, tiny_model):
    from voice_router import tts

    if not tts.tts_available():
        pytest.skip("espeak-ng is not installed")
    rs = parse_routes(ROUTES)
    pts = PointBuilder(tiny_model, exemplar_voices=2)
    kw = dict(dim=tiny_model.dim, fingerprint=tiny_model.fingerprint)
    with RouteIndex(EdgeBackend(tmp_path), **kw) as idx:
        rep = pts.sync(idx, rs)
        n_texts = sum(len(r.texts()) for r in rs.routes)
        assert rep.added == n_texts * 3 and rep.exemplars_skipped is None
        assert idx.vectors().kind.count(KIND_AUDIO) == n_texts * 2
    with RouteIndex(EdgeBackend(tmp_path), **kw) as idx:
        assert pts.sync(idx, rs).added == 0


def test_library_and_embeddings_adapter_against_qdrant_client(tmp_path, tiny_model):
    lib_dir = tmp_path / "clips"
    lib_dir.mkdir()
    shutil.copy(CLIP, lib_dir)
    shutil.copy(CLIP2, lib_dir)
    backend = ClientBackend(":memory:")
    lib = AudioLibrary(tiny_model, "sounds", backend)
    rep = lib.index_dir(lib_dir)
    assert rep.indexed == 2 and lib.count() == 2
    hits = lib.search("what time is it", k=2)
    # The LangChain adapter queries the same collection through qdrant-client directly.
    emb = VoiceRouterEmbeddings(tiny_model)
    q = emb.embed_query("what time is it")
    assert len(q) == tiny_model.dim and abs(np.linalg.norm(q) - 1) < 1e-4
    res = backend.client.query_points("sounds", query=q, limit=2, with_payload=True).points
    assert [p.payload["path"] for p in res] == [h.path for h in hits]
    assert [p.score for p in res] == pytest.approx([h.score for h in hits], abs=1e-5)
    docs = emb.embed_documents(["a", "b"])
    assert len(docs) == 2 and docs[0] != docs[1]


def _route_cli(clip, tmp_path) -> dict:
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "voice_router.cli",
        "route",
        str(clip),
        "--routes",
        str(ROOT / "routes" / "home.yaml"),
        "--json",
        "--allow-import",
        "--index",
        str(tmp_path / "idx"),
        "--exemplar-voices",
        "0",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    assert row["file"] == str(clip)
    return row


def test_default_model_routes_a_real_question_via_cli(tmp_path, default_model):
    """The headline command with the bundled model, route texts only (no exemplars): a real
    "what time is it" goes to what_time of routes/home.yaml, above its threshold, and the tool
    runs."""
    row = _route_cli(CLIP2, tmp_path)
    assert row["candidates"][0]["route"] == "what_time", row["candidates"][:3]
    assert row["route"] == "what_time", row
    assert row["tool_error"] is None and row["tool_result"]


def test_default_model_ranks_the_lamp_command_first_via_cli(tmp_path, default_model):
    """A real "turn on the living room lamp": lights_on ranks first. On route text alone its
    score is below the file's threshold and its lead over lights_off small (the bundled model's
    weak spot, on/off minimal pairs: see the model card), so only the ranking is asserted."""
    row = _route_cli(CLIP, tmp_path)
    assert [c["route"] for c in row["candidates"][:2]] == ["lights_on", "lights_off"], row


def default_model_routes():
    from voice_router.routes import load_routes

    return load_routes(ROOT / "routes" / "home.yaml").routes


SLOT_ROUTES = """\
threshold: 0.0
margin: 0.0
lists:
  room: [kitchen, living room, bedroom]
  minutes: {range: {from: 1, to: 60}}
routes:
  - name: lights_on
    description: Turn the lights on.
    sentences: ["(turn|switch) on [the] {room} (light|lights|lamp)"]
    tool: examples.home_tools:lights_on
  - name: lights_off
    description: Turn the lights off.
    sentences: ["(turn|switch) off [the] {room} (light|lights|lamp)"]
    tool: examples.home_tools:lights_off
  - name: set_timer
    description: Start a timer.
    sentences: ["set a timer for {minutes} minutes"]
    tool: examples.home_tools:set_timer
"""


def test_the_slot_stage_hears_the_room_and_the_tool_gets_it(tmp_path):
    """The bundled model on the real Rhasspy lamp clip: the slot stage reads "turn on the
    living room lamp" from the audio (not the tool's default room), and the tool runs with it."""
    home_tools.ACTIONS.clear()
    with VoiceRouter(parse_routes(SLOT_ROUTES), tools=home_tools.HOME_TOOLS,
                     index=str(tmp_path / "idx"), exemplar_voices=0) as router:  # fmt: skip
        m = router.route(CLIP)
    assert m.route == "lights_on", m.to_dict()
    assert m.args == {"room": "living room"}
    assert m.reading["understood"] and m.reading["phrasing"].lower().startswith("turn on")
    assert home_tools.ACTIONS[-1]["tool"] == "lights_on"
    assert home_tools.ACTIONS[-1]["room"] == "living room"


def test_speech_that_fits_no_phrasing_calls_no_tool(tmp_path):
    """ "What time is it?" against routes that all have phrasings and a threshold of 0: the
    embedding picks some route, the slot stage understands none of them, so nothing matches
    and no tool runs; the result says why."""
    home_tools.ACTIONS.clear()
    with VoiceRouter(parse_routes(SLOT_ROUTES), tools=home_tools.HOME_TOOLS,
                     index=str(tmp_path / "idx"), exemplar_voices=0) as router:  # fmt: skip
        m = router.route(CLIP2)
    assert m.route is None and m.reason == "not understood", m.to_dict()
    assert m.reading is not None and not m.reading["understood"]
    assert m.to_dict()["reason"] == "not understood"
    assert home_tools.ACTIONS == []
