"""VoiceRouter: scoring, decision rule, fusion, dispatch, Runnable/as_tool behaviour."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soundfile as sf
from langchain_core.tools import tool

from voice_router.audio.io import load_audio
from voice_router.decision import Fusion
from voice_router.errors import AudioError, ModelError, ToolError, VoiceRouterError
from voice_router.index import RouteIndex
from voice_router.routes import parse_routes
from voice_router.routing import RouteMatch
from voice_router.runnable import VoiceRouter
from voice_router.store import ClientBackend

CALLS: list[tuple[str, dict]] = []


@tool
def lights_on(room: str) -> str:
    """Turn the lights on in a room."""
    CALLS.append(("lights_on", {"room": room}))
    return f"lights on in {room}"


@tool
def lights_off(match: dict | None = None) -> str:
    """Turn the lights off; receives the match."""
    CALLS.append(("lights_off", {"match": match}))
    return "lights off"


@pytest.fixture(autouse=True)
def _clear_calls():
    CALLS.clear()


@pytest.fixture
def router(hash_model, route_set) -> VoiceRouter:
    return VoiceRouter(
        route_set,
        model=hash_model,
        tools=[lights_on, lights_off],
        index=":memory:",
        exemplar_voices=0,
    )


def _clip(model, text: str, seed: int = 0) -> np.ndarray:
    """A noise clip the hash model embeds like `text` (as the router sees it, decoded)."""
    clip = np.random.default_rng(seed).uniform(-0.3, 0.3, 16000).astype(np.float32)
    model.register_audio(clip, text)
    model.register_audio(load_audio((clip, 16000)), text)
    return clip


def test_text_vector_routes_to_its_route_and_calls_the_tool(router, hash_model):
    m = router.route_vector(hash_model.embed_text(["switch the lamp on"])[0])
    assert m.route == "lights_on" and m.nearest == "lights_on"
    assert m.score == pytest.approx(1.0, abs=1e-5)
    scores = router.scores_vector(hash_model.embed_text(["switch the lamp on"])[0])
    runner = sorted(scores.values())[-2]
    assert m.margin == pytest.approx(1.0 - runner, abs=1e-5)
    assert [c[0] for c in m.candidates][0] == "lights_on"
    assert [c[1] for c in m.candidates] == sorted((c[1] for c in m.candidates), reverse=True)
    assert m.tool == "lights_on" and m.tool_result == "lights on in kitchen"
    assert CALLS == [("lights_on", {"room": "kitchen"})]


def test_route_score_is_max_over_its_texts(router, hash_model, route_set):
    q = hash_model.embed_text(["lights please"])[0]
    scores = router.scores_vector(q)
    for r in route_set.routes:
        expected = float(np.max(hash_model.embed_text(r.texts()) @ q))
        assert scores[r.name] == pytest.approx(expected, abs=1e-5)


def test_below_threshold_is_no_match_and_no_tool(router, hash_model):
    v = np.random.default_rng(5).standard_normal(hash_model.dim).astype(np.float32)
    m = router.route_vector(v)
    assert m.route is None and m.nearest is not None and m.score < 0.5
    assert m.tool_result is None and CALLS == []


def test_margin_rule_rejects_a_tie(hash_model):
    rs = parse_routes(
        "margin: 0.1\nroutes:\n  - {name: a, description: play music}\n"
        "  - {name: b, description: play music now}\n"
    )
    r = VoiceRouter(rs, model=hash_model, index=":memory:", exemplar_voices=0)
    va, vb = hash_model.embed_text(["play music", "play music now"])
    m = r.route_vector(va + 0.9 * vb)  # between the two, nearer a
    assert m.nearest == "a" and m.score >= 0.5
    assert 0 < m.margin < 0.1 and m.route is None
    assert r.route_vector(va).route == "a"  # a clear winner passes


def test_route_threshold_overrides_the_set_threshold(hash_model):
    rs = parse_routes(
        "threshold: 0.1\nmargin: 0.0\nroutes:\n"
        "  - {name: a, description: play music, threshold: 0.99}\n"
        "  - {name: b, description: stop}\n"
    )
    r = VoiceRouter(rs, model=hash_model, index=":memory:", exemplar_voices=0)
    v = hash_model.embed_text(["play music please"])[0]
    m = r.route_vector(v)
    assert m.nearest == "a" and 0.1 < m.score < 0.99 and m.route is None


def test_audio_routes_with_latency_per_stage(router, hash_model, tmp_path):
    clip = _clip(hash_model, "turn off the lights")
    m = router.route(clip)
    assert m.route == "lights_off"
    assert set(m.latency_ms) == {"decode", "gate", "embed", "search", "read", "dispatch", "total"}
    assert all(v >= 0 for v in m.latency_ms.values())
    assert m.latency_ms["total"] >= m.latency_ms["embed"]
    # the tool took a `match` argument: it got the decision as a dict
    assert CALLS[0][1]["match"]["route"] == "lights_off"
    # the same clip as a file and as (array, rate): register what the decoder returns
    sf.write(tmp_path / "c.wav", clip, 16000, subtype="FLOAT")
    hash_model.register_audio(load_audio(tmp_path / "c.wav"), "turn off the lights")
    assert router.route(tmp_path / "c.wav").route == "lights_off"
    hash_model.register_audio(load_audio((clip, 16000)), "turn off the lights")
    assert router.route((clip, 16000)).route == "lights_off"


def test_dispatch_false_decides_without_calling(router, hash_model):
    m = router.route_vector(hash_model.embed_text(["turn on the lights"])[0], dispatch=False)
    assert m.route == "lights_on" and m.tool == "lights_on" and m.tool_result is None
    assert CALLS == []


def test_bad_audio_raises_audio_error(router, tmp_path):
    (tmp_path / "x.wav").write_bytes(b"")
    with pytest.raises(AudioError):
        router.route(tmp_path / "x.wav")


def test_unregistered_tool_is_refused_at_construction(hash_model, route_set):
    with pytest.raises(ToolError, match="lights_off"):
        VoiceRouter(
            route_set, model=hash_model, tools=[lights_on], index=":memory:", exemplar_voices=0
        )
    # decide-only routers do not need the tools
    VoiceRouter(route_set, model=hash_model, index=":memory:", exemplar_voices=0, dispatch=False)


def test_import_path_tool_without_allow_import_routes_and_says_why(hash_model):
    """Python does what the CLI does: the route is decided, the match says why no tool ran."""
    rs = parse_routes(
        "routes:\n"
        "  - {name: t, description: what time is it, tool: 'examples.home_tools:get_time'}\n"
        "  - {name: w, description: the weather forecast}\n"
    )
    r = VoiceRouter(rs, model=hash_model, index=":memory:", exemplar_voices=0)
    m = r.route_vector(hash_model.embed_text(["what time is it"])[0])
    assert m.route == "t" and m.tool_result is None
    assert "allow_import=True" in m.tool_error


def test_to_dict_is_json_ready(router, hash_model):
    import json

    m = router.route_vector(hash_model.embed_text(["turn on the lights"])[0])
    d = json.loads(json.dumps(m.to_dict()))
    assert d["route"] == "lights_on" and d["tool_result"] == "lights on in kitchen"
    assert {"score", "margin", "candidates", "latency_ms", "nearest", "tool_error"} <= set(d)
    assert d["candidates"][0]["route"] == "lights_on"


def test_runnable_invoke_batch_ainvoke_and_as_tool(router, hash_model, tmp_path):
    a = _clip(hash_model, "turn on the lights", seed=1)
    b = _clip(hash_model, "will it rain today", seed=2)
    assert isinstance(router.invoke(a), RouteMatch)
    assert [m.route for m in router.batch([a, b])] == ["lights_on", "weather"]
    assert asyncio.run(router.ainvoke(b)).route == "weather"
    sf.write(tmp_path / "b.wav", b, 16000, subtype="FLOAT")
    hash_model.register_audio(load_audio(tmp_path / "b.wav"), "will it rain today")
    t = router.as_tool()
    assert t.name == "voice_router" and "weather" in t.description
    out = t.invoke({"audio_path": str(tmp_path / "b.wav")})
    assert out["route"] == "weather" and out["file"] == str(tmp_path / "b.wav")


def test_router_reuses_a_route_index(hash_model, route_set):
    idx = RouteIndex(ClientBackend(":memory:"), dim=hash_model.dim,
                     fingerprint=hash_model.fingerprint)  # fmt: skip
    kw = dict(model=hash_model, tools=[lights_on, lights_off], index=idx, exemplar_voices=0)
    r1 = VoiceRouter(route_set, **kw)
    r2 = VoiceRouter(route_set, **kw)
    assert r1.sync_report.added > 0 and r2.sync_report.added == 0
    from voice_router.errors import IndexStoreError
    from voice_router.model.fake import HashEmbeddingModel

    with pytest.raises(IndexStoreError, match="holds vectors of model"):
        VoiceRouter(route_set, **{**kw, "model": HashEmbeddingModel(dim=32, seed=7)})


def test_fusion_parse_and_combine():
    assert Fusion.parse(None) == Fusion()
    f = Fusion.parse("weighted:1,3;k=5")
    assert (f.mode, f.w_text, f.w_audio, f.top_k) == ("weighted", 1.0, 3.0, 5)
    assert f.combine(0.2, 0.6) == pytest.approx(0.5)
    assert f.combine(0.2, None) == 0.2
    assert Fusion.parse("max").combine(0.2, 0.6) == 0.6
    assert Fusion.parse("text").combine(0.2, 0.6) == 0.2
    assert Fusion.parse("audio").combine(0.2, 0.6) == 0.6
    assert Fusion.parse(str(f)) == f
    for bad in ("median", "weighted:1", "weighted:-1,1", "max;k=0", "max;k=x"):
        with pytest.raises(VoiceRouterError):
            Fusion.parse(bad)


def test_the_models_own_fusion_is_the_default_and_an_argument_overrides_it(
    hash_model, route_set, monkeypatch
):
    kw = dict(model=hash_model, index=":memory:", exemplar_voices=0, dispatch=False)
    assert VoiceRouter(route_set, **kw).fusion == Fusion()  # a model without one
    monkeypatch.setattr(hash_model, "fusion", "weighted:0.3,0.7;k=2", raising=False)
    assert VoiceRouter(route_set, **kw).fusion == Fusion(w_text=0.3, w_audio=0.7, top_k=2)
    assert VoiceRouter(route_set, fusion="max", **kw).fusion == Fusion(mode="max")
    monkeypatch.setattr(hash_model, "fusion", "weighted:2", raising=False)
    with pytest.raises(ModelError, match="routing.json"):
        VoiceRouter(route_set, **kw)
    assert VoiceRouter(route_set, fusion="text", **kw).fusion.mode == "text"  # overridden


def test_audio_score_is_mean_of_top_k_exemplars_and_fuses(hash_model, route_set):
    r = VoiceRouter(
        route_set,
        model=hash_model,
        tools=[lights_on, lights_off],
        index=":memory:",
        exemplar_voices=0,
        fusion="weighted:1,1;k=2",
    )
    texts = ["lights on", "turn on", "switch on please", "kitchen lamp"]
    clips = [_clip(hash_model, t, seed=10 + i) for i, t in enumerate(texts)]
    r.enroll("lights_on", clips, texts)
    r.refresh()
    q = hash_model.embed_text(["lights on now"])[0]
    comp = r.component_scores(q)
    ex = np.sort(hash_model.embed_text(texts) @ q)[::-1]
    assert comp["lights_on"]["audio"] == pytest.approx(float(ex[:2].mean()), abs=1e-5)
    text = float(np.max(hash_model.embed_text(route_set.get("lights_on").texts()) @ q))
    assert comp["lights_on"]["text"] == pytest.approx(text, abs=1e-5)
    assert comp["lights_on"]["score"] == pytest.approx((text + ex[:2].mean()) / 2, abs=1e-5)
    assert comp["weather"]["audio"] is None
    assert comp["weather"]["score"] == comp["weather"]["text"]


def test_wrong_vector_dimension_is_refused(router):
    with pytest.raises(ModelError, match="dimension"):
        router.route_vector(np.ones(7, np.float32))


def test_single_route_margin_is_measured_against_the_lowest_cosine(hash_model):
    rs = parse_routes("routes:\n  - {name: only, description: open the door}\n")
    r = VoiceRouter(rs, model=hash_model, index=":memory:", exemplar_voices=0)
    m = r.route_vector(hash_model.embed_text(["open the door"])[0])
    assert m.route == "only" and m.margin == pytest.approx(m.score + 1.0)


def test_bad_arrays_are_audio_errors_not_garbage_routes(router):
    with pytest.raises(AudioError, match="NaN"):
        router.route(np.array([0.1, np.nan, 0.2] * 1000, np.float32))
    with pytest.raises(AudioError):
        router.route(np.zeros(16000, np.float32))  # silence


def test_failed_construction_releases_the_index_folder(hash_model, route_set, tmp_path):
    with pytest.raises(ToolError):
        VoiceRouter(
            route_set,
            model=hash_model,
            tools=[lights_on],
            index=tmp_path / "idx",
            exemplar_voices=0,
        )
    routes_path = tmp_path / "r.yaml"
    routes_path.write_text("routes:\n  - {name: a, description: x, examples_audio: [gone.wav]}\n")
    # a sync failure (an examples_audio file vanished after loading) also releases it
    import soundfile as sf2

    sf2.write(tmp_path / "gone.wav", np.random.default_rng(0).uniform(-0.2, 0.2, 800), 16000)
    from voice_router.routes import load_routes

    rs = load_routes(routes_path)
    (tmp_path / "gone.wav").unlink()
    from voice_router.errors import IndexStoreError

    with pytest.raises(IndexStoreError, match="gone.wav"):
        VoiceRouter(rs, model=hash_model, index=tmp_path / "idx", exemplar_voices=0)
    from voice_router.index import route_set_id
    from voice_router.store import EdgeBackend

    RouteIndex(EdgeBackend(tmp_path / "idx"), dim=hash_model.dim,
               fingerprint=hash_model.fingerprint, set_id=route_set_id(rs)).close()  # fmt: skip
    with VoiceRouter(
        route_set,
        model=hash_model,
        tools=[lights_on, lights_off],
        index=tmp_path / "idx",
        exemplar_voices=0,
    ) as r:
        assert r.route_vector(hash_model.embed_text(["turn on the lights"])[0]).route == "lights_on"


def test_score_matrix_equals_per_vector_scores(hash_model, route_set):
    r = VoiceRouter(
        route_set,
        model=hash_model,
        index=":memory:",
        exemplar_voices=0,
        dispatch=False,
        fusion="weighted:1,2;k=2",
    )
    texts = ["lights on", "turn on", "switch on please", "kitchen lamp"]
    r.enroll("lights_on", [_clip(hash_model, t, seed=20 + i) for i, t in enumerate(texts)], texts)
    r.refresh()
    qs = hash_model.embed_text(["lights on now", "rain today", "off please", "x y z"])  # (4, D)
    names, mat = r.score_matrix(qs)
    assert mat.shape == (4, len(route_set.routes))
    for i, q in enumerate(qs):
        per = r.scores_vector(q)
        assert [per[n] for n in names] == pytest.approx(mat[i].tolist(), abs=1e-5)


def test_a_routes_file_without_threshold_gets_the_models_default(hash_model):
    """The model's routing.json threshold/margin (`decision_defaults`) fill in what the file
    left out; what the file set wins."""
    from voice_router.routes import parse_routes

    hash_model.decision_defaults = {"threshold": 0.42, "margin": 0.03}
    try:
        bare = parse_routes("routes:\n  - {name: a, description: alpha}\n")
        r = VoiceRouter(bare, model=hash_model, index=":memory:", exemplar_voices=0)
        assert (r.routes.threshold, r.routes.margin) == (0.42, 0.03)
        assert bare.threshold == 0.7  # the caller's set is not changed
        own = parse_routes("threshold: 0.6\nroutes:\n  - {name: a, description: alpha}\n")
        r = VoiceRouter(own, model=hash_model, index=":memory:", exemplar_voices=0)
        assert (r.routes.threshold, r.routes.margin) == (0.6, 0.03)
    finally:
        del hash_model.decision_defaults
