"""Routing is a Qdrant query, on Qdrant Edge and on qdrant-client alike: the scores equal the
numpy oracle (every stored vector) where the query returns every point, a point changed in the
store changes the decision at once, and large sets (a cut at the best hits) keep the winner."""

from __future__ import annotations

import numpy as np
import pytest

from voice_router import scoring as routing
from voice_router.point_schema import KIND_TEXT, P_KIND, P_ROUTE
from voice_router.routes import parse_routes
from voice_router.routing import Router
from voice_router.store import ClientBackend, EdgeBackend, PointRecord

ROUTES = "threshold: 0.3\nmargin: 0.0\nroutes:\n" + "".join(
    f"  - {{name: r{i}, description: command {w}, examples: [please {w}, {w} now]}}\n"
    for i, w in enumerate(["lights", "music", "timer", "weather", "door", "fan", "tea", "news"])
)


@pytest.fixture(params=["edge", "memory"])
def router(request, tmp_path, hash_model):
    backend = (
        EdgeBackend(tmp_path / "idx") if request.param == "edge" else ClientBackend(":memory:")
    )
    r = Router(parse_routes(ROUTES), model=hash_model, index=backend, exemplar_voices=0)
    rng = np.random.default_rng(0)
    for i in range(0, 8, 2):  # audio points for half the routes, 1-4 each
        clips = [(0.1 * rng.standard_normal(8000 + 100 * j)).astype(np.float32) for j in range(i)]
        if clips:
            r.enroll(f"r{i}", clips, [f"c{j}" for j in range(len(clips))])
    r.refresh()
    yield r
    r.close()


def _queries(model, n: int = 12) -> np.ndarray:
    rng = np.random.default_rng(1)
    texts = model.embed_text(["please lights", "music", "the weather", "tea now"])
    noise = rng.standard_normal((n, model.dim)).astype(np.float32)
    q = np.concatenate([texts, noise])  # (4 + n, D)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def test_query_scores_equal_the_numpy_oracle(router, hash_model) -> None:
    qs = _queries(hash_model)
    names, oracle = router.score_matrix(qs)  # (N, R) from every stored vector
    for row, q in zip(oracle, qs, strict=True):
        got = router.scores_vector(q)
        np.testing.assert_allclose([got[n] for n in names], row, atol=1e-5)
    comp = router.component_scores(qs[0])
    assert comp["r1"]["audio"] is None and comp["r2"]["audio"] is not None


def test_a_point_changed_in_the_store_changes_the_decision(router, hash_model) -> None:
    q = _queries(hash_model)[-1]  # a random direction
    before = router.route_vector(q).nearest
    target = next(n for n in ("r5", "r3") if n != before)
    # overwrite one text point of `target` with the query itself, behind the router's back
    store, name = router.index.backend, router.index.collection
    hit = next(
        h for h in store.query(name, q, 100, {P_KIND: KIND_TEXT}) if h.payload[P_ROUTE] == target
    )
    store.upsert(name, [PointRecord(hit.id, q, hit.payload)])
    m = router.route_vector(q)
    assert m.route == target and m.score == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("hits", "min_kind_hits"),
    [((12, 6), 1), ((6, 3), 100)],
    ids=["one-query", "per-kind-fallback"],
)
def test_a_cut_at_the_best_hits_keeps_the_winner(
    router, hash_model, monkeypatch, hits, min_kind_hits
) -> None:
    """Past the exact sizes: one unfiltered query for both kinds (here half of the 36 points),
    or (a kind too rare among its hits) a filtered query per kind; either way the nearest route
    is the exact one (its score may be a bound: an exemplar below the cut counts at the cut)."""
    qs = _queries(hash_model, 30)
    exact = [router.route_vector(q) for q in qs]
    monkeypatch.setattr(routing, "EXACT_TEXT_POINTS", 4)
    monkeypatch.setattr(routing, "EXACT_AUDIO_POINTS", 2)
    monkeypatch.setattr(routing, "TEXT_HITS", hits[0])
    monkeypatch.setattr(routing, "AUDIO_HITS", hits[1])
    monkeypatch.setattr(routing, "MIN_KIND_HITS", min_kind_hits)
    cut = [router.route_vector(q) for q in qs]
    assert [m.nearest for m in cut] == [m.nearest for m in exact]


def test_a_large_set_is_one_query_without_a_filter(router, hash_model, monkeypatch) -> None:
    monkeypatch.setattr(routing, "EXACT_TEXT_POINTS", 4)
    monkeypatch.setattr(routing, "EXACT_AUDIO_POINTS", 2)
    monkeypatch.setattr(routing, "MIN_KIND_HITS", 1)
    store = router.index.backend
    calls: list[tuple[int, object]] = []
    real = store.query

    def spy(name, vector, limit, where=None, with_payload=True):  # noqa: ANN001, ANN202
        calls.append((limit, where))
        return real(name, vector, limit, where, with_payload)

    monkeypatch.setattr(store, "query", spy)
    for q in _queries(hash_model):
        calls.clear()
        router.route_vector(q)
        assert calls == [(routing.TEXT_HITS + routing.AUDIO_HITS, None)]
    monkeypatch.setattr(routing, "EXACT_TEXT_POINTS", 256)  # a small set: per kind, filtered
    calls.clear()
    router.route_vector(_queries(hash_model)[0])
    assert sorted(w[P_KIND] for _, w in calls) == ["audio", "text"]


def test_points_written_by_another_process_are_read_with_their_payload(router, hash_model):
    """The id -> route map comes from the last sync; an unknown id in the hits (a point another
    process wrote since) makes the query read payloads instead of dropping it."""
    q = _queries(hash_model)[-2]
    store, name = router.index.backend, router.index.collection
    hit = store.query(name, q, 1, {P_KIND: KIND_TEXT})[0]
    payload = {**hit.payload, P_ROUTE: "r6", "text": "written elsewhere"}
    store.upsert(name, [PointRecord("00000000-0000-4000-8000-000000000001", q, payload)])
    assert router.route_vector(q).route == "r6"


def test_route_query_ab_benchmark_runs_both_strategies(capsys) -> None:
    """benchmarks/route_query_ab.py on a set past the exact sizes (300 routes, 1,200 points):
    near a route, with little noise, both strategies find the exact nearest route."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from route_query_ab import main

    argv = ["--routes", "300", "--queries", "5", "--near", "10", "--noise", "0.01"]
    assert main([*argv, "--rounds", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["points"] == 1200
    assert out["nearest_agrees_with_oracle"] == {"per_kind": 10, "one_query": 10}
    assert set(out["route_ms_p50_rounds"][0]) == {"per_kind_ms", "one_query_ms"}
