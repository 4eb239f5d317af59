"""A route set's collection in the store: its points' vectors in, nearest points out.

`RouteIndex` holds one collection of the store (`voice_router.store`) per model fingerprint and
route set, `routes_<fingerprint>_<set id>`. It takes vectors and never a model: the points a
route set calls for are planned, embedded and synced into it by `voice_router.points`
(`PointBuilder.sync`: plan -> diff -> embed -> upsert -> delete). Routing queries it
(`voice_router.scoring`); the whole matrix (`RouteVectors`) is read only by the numpy oracle and
by checks. It keeps the route and kind of every point it holds (read once from the store, then
kept up to date by its own writes), so a query needs ids and scores only.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from voice_router.errors import IndexStoreError
from voice_router.point_schema import (
    INDEXED_KEYS,
    KIND_AUDIO,
    KIND_TEXT,
    P_KIND,
    P_ROUTE,
    P_TEXT,
    P_VOICE,
    point_id,
)
from voice_router.store import (
    P_FINGERPRINT,
    PointRecord,
    ScoredRecord,
    VectorBackend,
    check_collection_name,
)

if TYPE_CHECKING:
    from voice_router.routes import RouteSet

# --------------------------------------------------------------------------------------------
# Route index
# --------------------------------------------------------------------------------------------


@dataclass
class RouteVectors:
    """The route points as a matrix, for fast scoring.

    vectors: (N, D) float32 rows L2-normalised; route/kind/text: length-N lists.
    """

    vectors: np.ndarray
    route: list[str]
    kind: list[str]
    text: list[str]
    route_names: list[str] = field(default_factory=list)

    def rows(self, route: str, kind: str) -> np.ndarray:
        """Indices of the rows of `route` with `kind`."""
        return np.array(
            [
                i
                for i, (r, k) in enumerate(zip(self.route, self.kind, strict=True))
                if r == route and k == kind
            ],
            dtype=np.int64,
        )


def prune_route_collections(
    store: VectorBackend,
    fingerprint: str,
    keep_sets: set[str] | None = None,
    *,
    dry_run: bool = False,
) -> list[dict[str, Any]]:
    """Delete the route collections of models other than `fingerprint` and, when `keep_sets`
    is given, of route sets not in it; audio-search collections are never touched. Returns
    the collections deleted (or, with `dry_run`, that would be), as `store.describe()` has
    them."""
    prefix = f"routes_{fingerprint}_"
    gone = []
    for r in store.describe():
        if r["kind"] != "routes":
            continue
        name = r["name"]
        if name.startswith(prefix) and (keep_sets is None or name[len(prefix) :] in keep_sets):
            continue
        if not dry_run:
            store.drop_collection(name)
        gone.append(r)
    return gone


def route_set_id(routes: RouteSet | None) -> str:
    """A route set's identity in the index (it names the set's collection): its declared
    `name:`, else its file's name without the extension ("home" for routes/home.yaml), else
    "inline" for a set built in code. It survives moving, renaming the folder or re-cloning the
    repo, so the exemplars are synthesised once; two different files with the same file name
    sharing one index folder should declare different `name:`s (else each sync replaces the
    other's points)."""
    if routes is None:
        return "inline"
    declared = getattr(routes, "name", None)
    if declared:
        return str(declared)
    source = getattr(routes, "source", None)
    if source is None:
        return "inline"
    stem = re.sub(r"[^A-Za-z0-9_.-]", "-", Path(source).stem).lstrip("._-")[:64]
    return stem or "routes"


class RouteIndex:
    """The points of a route set, stored in Qdrant under `routes_<fingerprint>_<set id>`.

    Args:
        backend: where the collection lives (`voice_router.store.open_backend` makes one).
        dim: the vectors' dimension; fingerprint: the model that made them (it keys the
            collection and every point id; a collection of another model is refused).
        set_id: which route set this collection holds (`route_set_id(routes)`).
    """

    def __init__(
        self, backend: VectorBackend, *, dim: int, fingerprint: str, set_id: str = "inline"
    ) -> None:
        self.backend = backend
        self.dim = int(dim)
        self.fingerprint = fingerprint
        self.collection = check_collection_name(f"routes_{fingerprint}_{set_id}")
        #: held by a writer for a whole sync; queries never wait on it for long
        self.lock = threading.RLock()
        self._vectors: RouteVectors | None = None
        # point id -> (route, kind) of every point held, and points per (route, kind) (and per
        # kind under the route ""): what a query-scored decision needs to tell "not among the
        # hits" from "has no such points". None until first read from the store.
        self._route_of: dict[str, tuple[str, str]] | None = None
        self._counts: dict[tuple[str, str], int] = {}
        self.backend.open_collection(
            self.collection, self.dim, fingerprint, "routes", indexed=INDEXED_KEYS
        )

    # -- writing ------------------------------------------------------------------------------

    def payloads(self) -> dict[str, dict[str, Any]]:
        """Every point's payload by id, read from the store (what a sync diffs against)."""
        with self.lock:
            out = {
                p.id: p.payload for p in self.backend.scroll(self.collection, with_vectors=False)
            }
            self._route_of = {}
            self._counts = {}
            for pid, pl in out.items():
                self._add(pid, (str(pl.get(P_ROUTE)), str(pl.get(P_KIND))))
            self._vectors = None
            return out

    def upsert(self, points: Sequence[PointRecord]) -> None:
        """Write `points` (embedded route points, `voice_router.points`), replacing any with
        the same id."""
        if not points:
            return
        with self.lock:
            self._known()
            self.backend.upsert(self.collection, points)
            for p in points:
                self._add(p.id, (str(p.payload.get(P_ROUTE)), str(p.payload.get(P_KIND))))
            self._vectors = None

    def delete(self, ids: Sequence[str]) -> None:
        """Remove the points `ids` (ids it does not hold are ignored)."""
        if not ids:
            return
        with self.lock:
            self._known()
            for i in range(0, len(ids), 256):
                self.backend.delete(self.collection, list(ids[i : i + 256]))
            for pid in ids:
                self._add(pid, None)
            self._vectors = None

    def optimize(self) -> None:
        """Build the collection's search index (a sync does it past `store.OPTIMIZE_AT`)."""
        with self.lock:
            self.backend.optimize(self.collection)

    def _known(self) -> dict[str, tuple[str, str]]:
        """The id -> (route, kind) map, read from the store the first time."""
        if self._route_of is None:
            self.payloads()
        assert self._route_of is not None
        return self._route_of

    def _add(self, pid: str, key: tuple[str, str] | None) -> None:
        """Point `pid` is now (route, kind) `key` (None: gone): the id map and the counts per
        (route, kind) and per kind follow, one point at a time (a write of a few points never
        recounts the whole collection)."""
        assert self._route_of is not None
        counts = self._counts
        old = self._route_of.pop(pid, None)
        for k in () if old is None else (old, ("", old[1])):
            counts[k] -= 1
            if not counts[k]:
                del counts[k]
        if key is not None:
            self._route_of[pid] = key
            for k in (key, ("", key[1])):  # per (route, kind), and per kind
                counts[k] = counts.get(k, 0) + 1

    # -- reading ------------------------------------------------------------------------------

    def query(self, vector: np.ndarray, kind: str, limit: int) -> list[tuple[str, float]]:
        """(route, cosine) of the `limit` points of `kind` ("text" or "audio") nearest to
        `vector`, best first: one Qdrant query (payload-indexed filter on the kind) returning
        ids and scores; routes come from the id map, and a point this process has not seen
        (written by another one since) is read with its payload."""
        return [(route, score) for route, _, score in self._nearest(vector, limit, {P_KIND: kind})]

    def query_all(self, vector: np.ndarray, limit: int) -> list[tuple[str, str, float]]:
        """(route, kind, cosine) of the `limit` points of any kind nearest to `vector`, best
        first: one query without a filter (cheaper than one filtered query per kind)."""
        return self._nearest(vector, limit, None)

    def _nearest(
        self, vector: np.ndarray, limit: int, where: Mapping[str, Any] | None
    ) -> list[tuple[str, str, float]]:
        """(route, kind, cosine) of the nearest points matching `where`: ids and scores from
        the store, routes and kinds from the id map; a point this process has not seen
        (written by another one since) makes it read the payloads instead."""
        hits = self.backend.query(self.collection, vector, limit, where, False)
        with self.lock:
            route_of = self._known()
            try:
                return [(*route_of[h.id], h.score) for h in hits]
            except KeyError:
                pass
        hits = self.backend.query(self.collection, vector, limit, where)
        return [(str(h.payload.get(P_ROUTE)), str(h.payload.get(P_KIND)), h.score) for h in hits]

    def query_payloads(
        self, vector: np.ndarray, where: Mapping[str, Any], limit: int
    ) -> list[tuple[float, dict[str, Any]]]:
        """(cosine, payload) of the `limit` points matching `where` nearest to `vector`, best
        first (what resolving a route's slots reads)."""
        if limit <= 0:
            return []
        hits = self.backend.query(self.collection, vector, limit, dict(where))
        return [(float(h.score), h.payload) for h in hits]

    def total(self, kind: str) -> int:
        """Points of `kind` held."""
        return self.counts().get(("", kind), 0)

    def counts(self) -> Mapping[tuple[str, str], int]:
        """Points per (route, kind) held, and per kind under the route "" (a read-only view,
        not a copy: it is read on every utterance)."""
        if self._route_of is None:
            with self.lock:
                self._known()
        return MappingProxyType(self._counts)

    def vectors(self) -> RouteVectors:
        """All route points as a matrix (cached until the next write)."""
        with self.lock:
            if self._vectors is None:
                rows = list(self.backend.scroll(self.collection, with_vectors=True))
                rows.sort(key=lambda p: p.id)  # a stable order, whatever the store returns
                for p in rows:
                    self._check_point(p)
                mat = (
                    np.stack([np.asarray(p.vector, np.float32) for p in rows])
                    if rows
                    else np.zeros((0, self.dim), np.float32)
                )  # (N, D)
                norms = np.linalg.norm(mat, axis=1, keepdims=True)  # (N, 1)
                mat = mat / np.maximum(norms, 1e-12)
                route = [str(p.payload.get(P_ROUTE)) for p in rows]
                self._vectors = RouteVectors(
                    vectors=mat.astype(np.float32),
                    route=route,
                    kind=[str(p.payload.get(P_KIND)) for p in rows],
                    text=[str(p.payload.get(P_TEXT)) for p in rows],
                    route_names=sorted(set(route)),
                )
            return self._vectors

    def _check_point(self, p: PointRecord) -> None:
        """A stored point must be what the points layer wrote: its id recomputes from its
        payload (so a damaged payload cannot silently rename a route) and its vector is finite
        (D,)."""
        pl = p.payload
        ok = (
            pl.get(P_FINGERPRINT) == self.fingerprint
            and pl.get(P_KIND) in (KIND_TEXT, KIND_AUDIO)
            and isinstance(pl.get(P_ROUTE), str)
            and p.id
            == point_id(
                self.fingerprint,
                str(pl.get(P_ROUTE)),
                str(pl.get(P_KIND)),
                str(pl.get(P_TEXT)),
                str(pl.get(P_VOICE, "")),
            )
            and p.vector is not None
            and p.vector.shape == (self.dim,)
            and bool(np.isfinite(p.vector).all())
        )
        if not ok:
            raise IndexStoreError(
                f"index collection {self.collection!r} at {self.backend.location} is corrupt "
                f"(point {p.id} does not match its payload); delete that collection's folder "
                "to rebuild it from the routes file"
            )

    def search(self, vector: np.ndarray, limit: int = 10) -> list[ScoredRecord]:
        """Nearest route points to `vector`, straight from Qdrant."""
        return self.backend.query(self.collection, vector, limit)

    def count(self) -> int:
        """Number of points in the collection."""
        return self.backend.count(self.collection)

    def close(self) -> None:
        """Release the store (and, for Edge, the folder lock)."""
        self.backend.close()

    def __enter__(self) -> RouteIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
