"""One conformance suite for the VectorBackend protocol, run on every backend (Qdrant Edge on a
folder, qdrant-client `:memory:`): what routing, the route index and audio search rely on."""

from __future__ import annotations

import numpy as np
import pytest

from voice_router.errors import IndexStoreError
from voice_router.point_schema import P_KIND, P_ROUTE, point_id
from voice_router.store import P_FINGERPRINT, ClientBackend, EdgeBackend, PointRecord

DIM = 8
FP = "fp0000000000000a"
NAME = f"routes_{FP}_conformance"


@pytest.fixture(params=["edge", "memory"])
def store(request, tmp_path):
    s = EdgeBackend(tmp_path / "idx") if request.param == "edge" else ClientBackend(":memory:")
    yield s
    s.close()


def _points(n: int = 6) -> list[PointRecord]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        v = rng.standard_normal(DIM).astype(np.float32)
        kind = "text" if i % 2 == 0 else "audio"
        payload = {P_ROUTE: f"r{i // 2}", P_KIND: kind, P_FINGERPRINT: FP}
        out.append(
            PointRecord(point_id(FP, f"r{i // 2}", kind, str(i)), v / np.linalg.norm(v), payload)
        )
    return out


def test_write_read_search_and_delete(store) -> None:
    store.open_collection(NAME, DIM, FP, "routes", indexed=(P_KIND, P_ROUTE))
    assert NAME in store.collections() and NAME in [r["name"] for r in store.describe()]
    pts = _points()
    store.upsert(NAME, pts)
    assert store.count(NAME) == 6
    assert store.existing_ids(NAME, [pts[0].id, "00000000-0000-4000-8000-00000000beef"]) == {
        pts[0].id
    }
    back = {p.id: p for p in store.scroll(NAME, with_vectors=True)}
    assert set(back) == {p.id for p in pts}
    np.testing.assert_allclose(back[pts[3].id].vector, pts[3].vector, atol=1e-6)
    assert back[pts[3].id].payload[P_ROUTE] == "r1"
    # nearest first; a filter on the kind; ids and scores only when asked
    hits = store.query(NAME, pts[2].vector, 3)
    assert hits[0].id == pts[2].id and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    audio = store.query(NAME, pts[2].vector, 10, {P_KIND: "audio"})
    assert len(audio) == 3 and all(h.payload[P_KIND] == "audio" for h in audio)
    bare = store.query(NAME, pts[2].vector, 2, {P_KIND: "text"}, False)
    assert bare[0].id == pts[2].id and bare[0].payload == {}
    store.delete(NAME, [pts[0].id])
    assert store.count(NAME) == 5
    store.optimize(NAME)  # a no-op or an index build: the points stay
    assert store.count(NAME) == 5


def test_another_model_or_dimension_is_refused(store) -> None:
    store.open_collection(NAME, DIM, FP, "routes", indexed=(P_KIND, P_ROUTE))
    store.upsert(NAME, _points())
    with pytest.raises(IndexStoreError, match="dimension|another model"):
        store.open_collection(NAME, DIM + 1, FP, "routes")


def test_drop_removes_a_collection(store) -> None:
    store.open_collection("library_sounds", DIM, FP, "library")
    store.upsert("library_sounds", _points(2))
    if isinstance(store, EdgeBackend):
        store.close()  # Edge drops only collections no one holds open
    store.drop_collection("library_sounds")
    assert "library_sounds" not in store.collections()
    with pytest.raises(IndexStoreError, match="library_sounds"):
        store.drop_collection("library_sounds")


def test_scores_are_exact_cosines_after_the_search_index_is_built(store) -> None:
    """Thresholds compare raw cosines: whatever the store does to search faster (Edge keeps
    int8 copies of the vectors for its HNSW graph), the scores it returns must be exact."""
    dim, n = 384, 8000  # 12 MB of vectors: past Qdrant's full-scan threshold, HNSW is used
    store.open_collection(NAME, dim, FP, "routes", indexed=(P_KIND, P_ROUTE))
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    pts = [
        PointRecord(point_id(FP, f"r{i}", "text", str(i)), v, {P_ROUTE: f"r{i}", P_KIND: "text"})
        for i, v in enumerate(vecs)
    ]
    for i in range(0, n, 1000):
        store.upsert(NAME, pts[i : i + 1000])
    store.optimize(NAME)
    exact = {p.id: v for p, v in zip(pts, vecs, strict=True)}
    for q in vecs[:20]:
        for h in store.query(NAME, q, 10, {P_KIND: "text"}, False):
            assert h.score == pytest.approx(float(exact[h.id] @ q), abs=1e-5)


def test_open_says_whether_it_opened_and_close_collection_releases_one(store, tmp_path):
    assert store.open_collection(NAME, DIM, FP, "routes") is True
    assert store.open_collection(NAME, DIM, FP, "routes") is False  # already open: same handle
    store.upsert(NAME, _points(2))
    store.close_collection(NAME)
    store.close_collection("never_opened")  # ignored
    if isinstance(store, EdgeBackend):  # released: another backend (a process's view) opens it
        other = EdgeBackend(tmp_path / "idx")
        assert other.open_collection(NAME, DIM, FP, "routes") is True
        assert other.count(NAME) == 2
        other.close()
    assert store.open_collection(NAME, DIM, FP, "routes") is True  # reopened after the release
    assert store.count(NAME) == 2
