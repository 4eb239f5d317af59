"""The vector store: Qdrant collections of points, and nothing else (it never embeds and
never imports a model).

Two storage engines sit behind one small protocol (`VectorBackend`):

- `EdgeBackend`: Qdrant Edge (the real engine, in-process) on a folder on disk. Each collection
  is one Edge shard in a sub-folder `<root>/<collection>/`, next to a `voice-router.json`
  manifest (format, model fingerprint, dimension) and a lock file. Edge allows one process per
  shard; we hold an exclusive `fcntl` lock so a second process gets a clear `IndexStoreError` at
  once instead of a hang or an engine-internal message.
- `ClientBackend`: qdrant-client, for a Qdrant server or cluster (`url=`) or `:memory:` (tests).

`open_backend` is the one rule that turns a place (":memory:", a URL, host:port, a folder) into
one. What the points mean (routes, exemplars, library files) is decided by the modules that
write them: `voice_router.index` (route points) and `voice_router.library` (audio search).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from voice_router.errors import IndexStoreError, VoiceRouterError

log = logging.getLogger(__name__)

#: Payload key stamped on every point: which model's vectors a collection holds (checked on
#: open, so one model never searches another's vectors).
P_FINGERPRINT = "fingerprint"

MANIFEST_NAME = "voice-router.json"
#: A route collection this large gets its HNSW index built after a sync adds points: below it
#: a query scans the points (about 1 ms per 4,000 here), above it the scan would pass 5 ms.
OPTIMIZE_AT = 20_000
LOCK_NAME = ".voice-router.lock"
MANIFEST_FORMAT = "voice-router-collection"
MANIFEST_VERSION = 1

#: Refuse to write to an Edge folder with less free space than this. Edge memory-maps its
#: write-ahead log; a write into a full disk kills the process with SIGBUS (measured on a
#: full tmpfs), which no Python code can catch, so we check before every write instead.
DEFAULT_MIN_FREE_BYTES = 96 * 2**20

UPSERT_BATCH = 64

_COLLECTION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def default_index_path() -> Path:
    """The on-disk default: `<user data dir>/voice-router/index` (platformdirs)."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("voice-router")) / "index"


def check_collection_name(name: str) -> str:
    """Validate a collection name (it becomes a folder name): letters, digits, `_ . -`."""
    if not _COLLECTION_RE.match(name):
        raise IndexStoreError(
            f"invalid collection name {name!r}: use 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass
class PointRecord:
    """One stored point: id (UUID string), vector (D,) or None, payload."""

    id: str
    vector: np.ndarray | None
    payload: dict[str, Any]


@dataclass
class ScoredRecord:
    """A query hit: id, cosine similarity, payload."""

    id: str
    score: float
    payload: dict[str, Any]


class VectorBackend(Protocol):
    """The few operations voice-router needs from a vector store."""

    location: str

    def open_collection(
        self, name: str, dim: int, fingerprint: str, kind: str, indexed: Sequence[str] = ()
    ) -> bool:
        """Create or open `name` (`kind`: "routes" or "library", recorded for listings) with
        keyword payload indexes on the `indexed` keys; raise `IndexStoreError` if it holds
        another dim/model. True when this call opened it, False when it was open already."""
        ...

    def upsert(self, name: str, points: Sequence[PointRecord]) -> None: ...

    def delete(self, name: str, ids: Sequence[str]) -> None: ...

    def existing_ids(self, name: str, ids: Sequence[str]) -> set[str]: ...

    def scroll(self, name: str, *, with_vectors: bool) -> Iterator[PointRecord]: ...

    def query(
        self,
        name: str,
        vector: np.ndarray,
        limit: int,
        where: Mapping[str, Any] | None = None,
        with_payload: bool = True,
    ) -> list[ScoredRecord]:
        """The `limit` nearest points (cosine), best first, optionally filtered by payload
        equality; `with_payload=False` returns ids and scores only (payloads dominate the cost
        of a large result)."""
        ...

    def count(self, name: str) -> int: ...

    def collections(self, kind: str | None = None) -> list[str]:
        """Names of the voice-router collections in the store (of `kind`: "routes",
        "library"), sorted; opens none."""
        ...

    def describe(self) -> list[dict[str, Any]]:
        """One dict per collection: name, kind, fingerprint, dim, bytes (None where the store
        does not say), for `voice-router index list`."""
        ...

    def drop_collection(self, name: str) -> None:
        """Delete a collection and its points (IndexStoreError if it is open or in use)."""
        ...

    def optimize(self, name: str) -> None:
        """Build the collection's search index now (Qdrant Edge's HNSW; a server builds its
        own): what keeps a query fast on tens of thousands of points."""
        ...

    def close_collection(self, name: str) -> None:
        """Release one open collection (for Edge its shard and folder lock), so another process
        may open it; a later call reopens it. Unknown or unopened names are ignored."""
        ...

    def close(self) -> None: ...


def _reraise_control(e: BaseException) -> None:
    """Let Ctrl-C and exits through. Everything else the Qdrant Edge engine raises (a plain
    `Exception` with its message, or pyo3's `PanicException`, a BaseException subclass, if
    the Rust side panics on bad data) becomes an `IndexStoreError` at the call site."""
    if isinstance(e, KeyboardInterrupt | SystemExit | GeneratorExit):
        raise e


def _check_foreign(name: str, location: str, payload: Mapping[str, Any], fingerprint: str) -> None:
    """Raise if a stored point shows the collection belongs to another model or program."""
    fp = payload.get(P_FINGERPRINT)
    if fp is None:
        raise IndexStoreError(
            f"collection {name!r} at {location} was not written by voice-router (its points have "
            "no model fingerprint); use another collection name"
        )
    if fp != fingerprint:
        raise IndexStoreError(
            f"collection {name!r} at {location} holds vectors of another model (fingerprint "
            f"{fp}, this model is {fingerprint}); use another collection name or the same model"
        )


# --------------------------------------------------------------------------------------------
# Qdrant Edge
# --------------------------------------------------------------------------------------------


@dataclass
class _EdgeCollection:
    shard: Any
    lock_fd: int
    folder: Path
    dim: int


class EdgeBackend:
    """Collections as Qdrant Edge shards in sub-folders of `root` (one process per folder).

    Args:
        root: the index folder (created if missing).
        min_free_bytes: refuse writes when the disk has less free space (see
            `DEFAULT_MIN_FREE_BYTES` for why).
    """

    def __init__(self, root: str | os.PathLike[str], *, min_free_bytes: int | None = None) -> None:
        self.root = Path(root).expanduser()
        self.location = str(self.root)
        self._filters: dict[tuple, Any] = {}
        self._exact_scores: Any = None  # SearchParams, built on the first query
        self.min_free_bytes = DEFAULT_MIN_FREE_BYTES if min_free_bytes is None else min_free_bytes
        self._cols: dict[str, _EdgeCollection] = {}
        self._lock = threading.RLock()
        try:
            import qdrant_edge  # noqa: F401
        except ImportError as e:  # pragma: no cover - qdrant-edge-py is a core dependency
            raise IndexStoreError(
                "Qdrant Edge is not installed: pip install qdrant-edge-py, or use --qdrant-url"
            ) from e
        if self.root.exists() and not self.root.is_dir():
            raise IndexStoreError(f"index path {self.root} is a file, not a folder")

    # -- helpers ------------------------------------------------------------------------------

    def _check_space(self, folder: Path, need: int = 0) -> None:
        probe = folder if folder.exists() else self.root
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        if free < self.min_free_bytes + need:
            raise IndexStoreError(
                f"disk full: only {free / 2**20:.1f} MiB free where the index lives ({folder}); "
                f"writing needs at least {(self.min_free_bytes + need) / 2**20:.0f} MiB. "
                "Free some space or pass --index with a folder on another disk."
            )

    def _col(self, name: str) -> _EdgeCollection:
        try:
            return self._cols[name]
        except KeyError:
            raise IndexStoreError(f"collection {name!r} is not open") from None

    def _acquire_lock(self, folder: Path) -> int:
        lock_path = folder / LOCK_NAME
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise IndexStoreError(f"cannot open lock file {lock_path}: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            try:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES) and holder == str(
                os.getpid()
            ):
                raise IndexStoreError(
                    f"index folder {folder} is already open in this process; close the other "
                    "RouteIndex / VoiceRouter / AudioLibrary on it first, or share that one"
                ) from None
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise IndexStoreError(
                    f"index folder {folder} is in use by another process (pid {holder}); "
                    "Qdrant Edge allows one process per folder: stop that process, or pass "
                    "--index with another folder (or --qdrant-url to share a server)"
                ) from None
            raise IndexStoreError(f"cannot lock {lock_path}: {e.strerror}") from e
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return fd

    def _read_manifest(self, folder: Path) -> dict[str, Any] | None:
        path = folder / MANIFEST_NAME
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise IndexStoreError(
                f"index collection {folder} is corrupt (unreadable {MANIFEST_NAME}: {e}); "
                "delete that folder to rebuild it"
            ) from None
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise IndexStoreError(
                f"{folder} is not a voice-router index collection ({MANIFEST_NAME} has another "
                "format); pass --index with another folder"
            )
        return data

    def _write_manifest(self, folder: Path, data: dict[str, Any]) -> None:
        path = folder / MANIFEST_NAME
        tmp = folder / (MANIFEST_NAME + ".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise _os_error(e, f"writing {path}") from e

    # -- protocol -----------------------------------------------------------------------------

    def open_collection(
        self, name: str, dim: int, fingerprint: str, kind: str, indexed: Sequence[str] = ()
    ) -> bool:
        """Create or open the Edge shard `<root>/<name>`, locked for this process."""
        import qdrant_edge as q

        check_collection_name(name)
        with self._lock:
            if name in self._cols:
                if self._cols[name].dim != dim:
                    raise IndexStoreError(
                        f"collection {name!r} has dimension {self._cols[name].dim}, not {dim}"
                    )
                return False
            folder = self.root / name
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise _os_error(e, f"creating index folder {folder}") from e
            fd = self._acquire_lock(folder)
            try:
                manifest = self._read_manifest(folder)
                # A manifest half-written by a killed process is junk, not foreign data.
                (folder / (MANIFEST_NAME + ".tmp")).unlink(missing_ok=True)
                others = [p.name for p in folder.iterdir() if p.name != LOCK_NAME]
                if manifest is None:
                    if others:
                        raise IndexStoreError(
                            f"{folder} exists but is not a voice-router index (no {MANIFEST_NAME}; "
                            f"found {', '.join(sorted(others)[:3])}); pass --index with another "
                            "folder or remove it"
                        )
                    self._check_space(folder)
                    manifest = {
                        "format": MANIFEST_FORMAT,
                        "version": MANIFEST_VERSION,
                        "kind": kind,
                        "fingerprint": fingerprint,
                        "dim": dim,
                    }
                    self._write_manifest(folder, manifest)
                if manifest.get("dim") != dim:
                    raise IndexStoreError(
                        f"collection {name!r} at {folder} was built with dimension "
                        f"{manifest.get('dim')}, but the model gives {dim}; use the model it was "
                        "built with, another --collection, or delete the folder to rebuild"
                    )
                if manifest.get("fingerprint") != fingerprint:
                    raise IndexStoreError(
                        f"collection {name!r} at {folder} holds vectors of another model "
                        f"(fingerprint {manifest.get('fingerprint')}, this model is "
                        f"{fingerprint}); use another collection name or the model it was "
                        "built with"
                    )
                cfg = q.EdgeConfig(
                    vectors=q.EdgeVectorParams(size=dim, distance=q.Distance.Cosine),
                    # int8 copies of the vectors steer the HNSW search (measured at 40,000
                    # points: two filtered queries 1.9 ms instead of 3.2); every hit is then
                    # rescored with its float32 vector, so scores stay exact cosines
                    quantization_config=q.ScalarQuantizationConfig(
                        type=q.ScalarType.Int8, always_ram=True
                    ),
                )
                has_segments = (folder / "segments").is_dir() and any(
                    (folder / "segments").iterdir()
                )
                # Loading writes too (payload-index files are memory-mapped and grown on open):
                # on a full disk that is a SIGBUS, so the free-space check comes first here too.
                self._check_space(folder)
                try:
                    if has_segments or (folder / "edge_config.json").exists():
                        shard = q.EdgeShard.load(str(folder), cfg)
                    else:
                        shard = q.EdgeShard.create(str(folder), cfg)
                    if indexed:  # e.g. routing filters by kind on every utterance
                        have = set(shard.info().payload_schema)
                        for key in indexed:
                            if key not in have:
                                shard.update(
                                    q.UpdateOperation.create_field_index(
                                        key, q.PayloadSchemaType.Keyword
                                    )
                                )
                except BaseException as e:  # noqa: BLE001 - see _reraise_control
                    _reraise_control(e)
                    raise IndexStoreError(
                        f"index collection {folder} is corrupt or unreadable ({e}); delete that "
                        "folder to rebuild it (route indexes rebuild from the routes file)"
                    ) from None
            except BaseException:
                os.close(fd)
                raise
            self._cols[name] = _EdgeCollection(shard=shard, lock_fd=fd, folder=folder, dim=dim)
            return True

    def upsert(self, name: str, points: Sequence[PointRecord]) -> None:
        import qdrant_edge as q

        if not points:
            return
        col = self._col(name)
        mat = _checked_vectors(points, col.dim)  # (N, D)
        need = len(points) * (4 * col.dim + 1024) * 4
        self._check_space(col.folder, need)
        edge_points = [q.Point(p.id, mat[i].tolist(), p.payload) for i, p in enumerate(points)]
        with self._lock:
            try:
                col.shard.update(q.UpdateOperation.upsert_points(edge_points))
            except BaseException as e:  # noqa: BLE001 - see _reraise_control
                _reraise_control(e)
                raise IndexStoreError(f"writing to index {col.folder} failed: {e}") from None

    def delete(self, name: str, ids: Sequence[str]) -> None:
        import qdrant_edge as q

        if not ids:
            return
        col = self._col(name)
        self._check_space(col.folder)
        with self._lock:
            try:
                col.shard.update(q.UpdateOperation.delete_points(list(ids)))
            except BaseException as e:  # noqa: BLE001 - see _reraise_control
                _reraise_control(e)
                raise IndexStoreError(f"deleting from index {col.folder} failed: {e}") from None

    def existing_ids(self, name: str, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        col = self._col(name)
        with self._lock:
            recs = col.shard.retrieve(list(ids), with_payload=False, with_vector=False)
        return {str(r.id) for r in recs}

    def scroll(self, name: str, *, with_vectors: bool) -> Iterator[PointRecord]:
        import qdrant_edge as q

        col = self._col(name)
        offset = None
        while True:
            with self._lock:
                recs, offset = col.shard.scroll(
                    q.ScrollRequest(
                        offset=offset, limit=256, with_payload=True, with_vector=with_vectors
                    )
                )
            for r in recs:
                yield _point_record(r, with_vectors)
            if offset is None:
                return

    def query(
        self,
        name: str,
        vector: np.ndarray,
        limit: int,
        where: Mapping[str, Any] | None = None,
        with_payload: bool = True,
    ) -> list[ScoredRecord]:
        import qdrant_edge as q

        col = self._col(name)
        if self._exact_scores is None:  # rescore hits with their float32 vectors
            self._exact_scores = q.SearchParams(
                quantization=q.QuantizationSearchParams(rescore=True)
            )
        flt = None
        if where:
            key = tuple(sorted(where.items()))
            flt = self._filters.get(key)
            if flt is None:  # built once per condition: routing asks the same two every time
                flt = q.Filter(
                    must=[q.FieldCondition(key=k, match=q.MatchValue(v)) for k, v in key]
                )
                self._filters[key] = flt
        req = q.QueryRequest(
            limit=limit,
            query=q.Query.Nearest(np.asarray(vector, dtype=np.float32).tolist()),
            with_payload=with_payload,
            filter=flt,
            params=self._exact_scores,
        )
        with self._lock:
            hits = col.shard.query(req)
        if not with_payload:
            return [ScoredRecord(str(h.id), h.score, {}) for h in hits]
        return [ScoredRecord(str(h.id), float(h.score), dict(h.payload or {})) for h in hits]

    def collections(self, kind: str | None = None) -> list[str]:
        """Sub-folders with a voice-router manifest (of `kind`), sorted."""
        if not self.root.is_dir():
            return []
        out = []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            try:
                manifest = self._read_manifest(folder)
            except IndexStoreError:
                continue  # not ours, or corrupt: opening it says so
            if manifest is not None and kind in (None, manifest.get("kind")):
                out.append(folder.name)
        return out

    def describe(self) -> list[dict[str, Any]]:
        """Every voice-router collection folder, from its manifest and its size on disk (the
        bytes its files occupy, not their length: Qdrant Edge preallocates its WAL and mmap
        files sparsely, 32 MiB each, so the lengths added up to 151 MB for 6.5 MB used)."""
        out = []
        for name in self.collections():
            folder = self.root / name
            m = self._read_manifest(folder) or {}
            size = sum(_bytes_used(f) for f in folder.rglob("*") if f.is_file())
            out.append(
                {
                    "name": name,
                    "kind": m.get("kind"),
                    "fingerprint": m.get("fingerprint"),
                    "dim": m.get("dim"),
                    "bytes": size,
                }
            )
        return out

    def optimize(self, name: str) -> None:
        """Merge segments and build the HNSW index (minutes for ~100,000 points on 2 cores)."""
        col = self._col(name)
        with self._lock:
            try:
                col.shard.optimize()
            except BaseException as e:  # noqa: BLE001 - see _reraise_control
                _reraise_control(e)
                raise IndexStoreError(f"optimizing {col.folder} failed: {e}") from None

    def drop_collection(self, name: str) -> None:
        """Delete a collection folder, under its lock (so never one in use)."""
        folder = self.root / check_collection_name(name)
        with self._lock:
            if name in self._cols:
                raise IndexStoreError(f"collection {name!r} is open here; close it first")
            if name not in self.collections():
                raise IndexStoreError(f"no voice-router collection {name!r} in {self.root}")
            fd = self._acquire_lock(folder)
            try:
                shutil.rmtree(folder)
            except OSError as e:
                raise _os_error(e, f"deleting {folder}") from e
            finally:
                os.close(fd)

    def count(self, name: str) -> int:
        import qdrant_edge as q

        col = self._col(name)
        with self._lock:
            return int(col.shard.count(q.CountRequest(exact=True)))

    def close_collection(self, name: str) -> None:
        """Flush and close one shard and release its folder lock (see `VectorBackend`)."""
        with self._lock:
            col = self._cols.pop(name, None)
            if col is not None:
                self._release(col)

    def close(self) -> None:
        """Flush and close every shard, then release the folder locks."""
        with self._lock:
            for col in self._cols.values():
                self._release(col)
            self._cols.clear()

    @staticmethod
    def _release(col: _EdgeCollection) -> None:
        try:
            col.shard.flush()
            col.shard.close()
        except Exception as e:  # closing must not mask the caller's own error
            log.warning("closing index %s: %s", col.folder, e)
        finally:
            os.close(col.lock_fd)


# --------------------------------------------------------------------------------------------
# qdrant-client (server, cluster, :memory:)
# --------------------------------------------------------------------------------------------


class ClientBackend:
    """Collections in a Qdrant server/cluster (`url`) or in qdrant-client's `:memory:` mode.

    The API key is taken from the argument or from the environment
    (`VOICE_ROUTER_QDRANT_API_KEY`, then `QDRANT_API_KEY`); it is never logged or shown in
    errors (messages are scrubbed of it).
    """

    def __init__(
        self, url: str = ":memory:", *, api_key: str | None = None, client: Any = None
    ) -> None:
        from qdrant_client import QdrantClient

        self._api_key = (
            api_key
            or os.environ.get("VOICE_ROUTER_QDRANT_API_KEY")
            or os.environ.get("QDRANT_API_KEY")
        )
        self.location = url
        self._dims: dict[str, int] = {}
        # qdrant-client's local mode (":memory:") is not thread-safe: a query beside an upsert
        # can read a half-grown array. Every call goes through this lock (a server needs none,
        # but the cost is nil next to a network round trip).
        self._lock = threading.RLock()
        if client is not None:
            self.client = client
        elif url == ":memory:":
            self.client = QdrantClient(location=":memory:")
        else:
            try:
                self.client = QdrantClient(
                    url=url, api_key=self._api_key, check_compatibility=False
                )
            except Exception as e:
                raise IndexStoreError(
                    self._scrub(f"cannot connect to Qdrant at {url}: {e}")
                ) from None

    def _scrub(self, msg: str) -> str:
        if self._api_key:
            msg = msg.replace(self._api_key, "***")
        return msg

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            with self._lock:
                return fn(*args, **kwargs)
        except VoiceRouterError:
            raise
        except Exception as e:
            raise IndexStoreError(
                self._scrub(f"Qdrant at {self.location}: {what} failed: {e}")
            ) from None

    def open_collection(
        self, name: str, dim: int, fingerprint: str, kind: str, indexed: Sequence[str] = ()
    ) -> bool:
        """Create or open collection `name` on the server (see `VectorBackend`)."""
        from qdrant_client import models

        check_collection_name(name)
        exists = self._call("checking collection", self.client.collection_exists, name)
        if not exists:
            self._call(
                "creating collection",
                self.client.create_collection,
                name,
                vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
            )
            if self.location != ":memory:":  # local mode has no payload indexes
                for key in indexed:
                    self._call(
                        "indexing a payload field",
                        self.client.create_payload_index,
                        name,
                        key,
                        field_schema=models.PayloadSchemaType.KEYWORD,
                    )
        else:
            info = self._call("reading collection", self.client.get_collection, name)
            vectors = info.config.params.vectors
            size = getattr(vectors, "size", None)
            if size is None:
                raise IndexStoreError(
                    f"collection {name!r} at {self.location} uses named vectors; it was not "
                    "written by voice-router: use another collection name"
                )
            if size != dim:
                raise IndexStoreError(
                    f"collection {name!r} at {self.location} has dimension {size}, but the model "
                    f"gives {dim}; use another collection name or the model it was built with"
                )
            recs, _ = self._call(
                "reading collection", self.client.scroll, name, limit=1, with_payload=True
            )
            if recs:
                _check_foreign(name, self.location, recs[0].payload or {}, fingerprint)
        first = name not in self._dims
        self._dims[name] = dim
        return first

    def upsert(self, name: str, points: Sequence[PointRecord]) -> None:
        from qdrant_client import models

        if not points:
            return
        mat = _checked_vectors(points, self._dims.get(name))  # (N, D)
        pts = [
            models.PointStruct(id=p.id, vector=mat[i].tolist(), payload=p.payload)
            for i, p in enumerate(points)
        ]
        self._call("upsert", self.client.upsert, name, points=pts, wait=True)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        from qdrant_client import models

        if not ids:
            return
        self._call(
            "delete",
            self.client.delete,
            name,
            points_selector=models.PointIdsList(points=list(ids)),
            wait=True,
        )

    def existing_ids(self, name: str, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        recs = self._call(
            "retrieve",
            self.client.retrieve,
            name,
            list(ids),
            with_payload=False,
            with_vectors=False,
        )
        return {str(r.id) for r in recs}

    def scroll(self, name: str, *, with_vectors: bool) -> Iterator[PointRecord]:
        offset = None
        while True:
            recs, offset = self._call(
                "scroll",
                self.client.scroll,
                name,
                limit=256,
                offset=offset,
                with_payload=True,
                with_vectors=with_vectors,
            )
            for r in recs:
                yield _point_record(r, with_vectors)
            if offset is None:
                return

    def query(
        self,
        name: str,
        vector: np.ndarray,
        limit: int,
        where: Mapping[str, Any] | None = None,
        with_payload: bool = True,
    ) -> list[ScoredRecord]:
        from qdrant_client import models

        flt = None
        if where:
            flt = models.Filter(
                must=[
                    models.FieldCondition(key=k, match=models.MatchValue(value=v))
                    for k, v in where.items()
                ]
            )
        res = self._call(
            "query",
            self.client.query_points,
            name,
            query=np.asarray(vector, dtype=np.float32).tolist(),
            limit=limit,
            query_filter=flt,
            with_payload=with_payload,
        )
        return [ScoredRecord(str(h.id), float(h.score), dict(h.payload or {})) for h in res.points]

    def count(self, name: str) -> int:
        return int(self._call("count", self.client.count, name, exact=True).count)

    def collections(self, kind: str | None = None) -> list[str]:
        """The server's collections, sorted (`kind` is not recorded there: all of them)."""
        cols = self._call("listing collections", self.client.get_collections).collections
        return sorted(c.name for c in cols)

    def describe(self) -> list[dict[str, Any]]:
        """The server's collections; kind and fingerprint from the name where it is ours."""
        out = []
        for name in self.collections():
            parts = name.split("_", 2)
            ours = parts[0] == "routes" and len(parts) == 3
            out.append(
                {
                    "name": name,
                    "kind": "routes" if ours else None,
                    "fingerprint": parts[1] if ours else None,
                    "dim": None,
                    "bytes": None,
                }
            )
        return out

    def optimize(self, name: str) -> None:
        """Nothing to do: a Qdrant server indexes by its own optimizer settings."""

    def close_collection(self, name: str) -> None:
        """Forget that `name` is open (a server's collections hold no local lock)."""
        self._dims.pop(name, None)

    def drop_collection(self, name: str) -> None:
        """Delete a server collection."""
        if name not in self.collections():
            raise IndexStoreError(f"no collection {name!r} at {self.location}")
        self._call("deleting a collection", self.client.delete_collection, name)

    def close(self) -> None:
        try:
            self.client.close()
        except Exception as e:  # pragma: no cover - best effort
            log.debug("closing qdrant client: %s", e)


def _point_record(r: Any, with_vectors: bool) -> PointRecord:
    """A stored point of either engine (Edge or qdrant-client: same record shape; the unnamed
    vector may come as a {"": [...]} mapping) as a `PointRecord`."""
    vec = None
    if with_vectors and r.vector is not None:
        v = r.vector[""] if isinstance(r.vector, dict) else r.vector
        vec = np.asarray(v, dtype=np.float32)
    return PointRecord(str(r.id), vec, dict(r.payload or {}))


def _checked_vectors(points: Sequence[PointRecord], dim: int | None = None) -> np.ndarray:
    """The points' vectors as (N, D) float32; refuses NaN/Inf or a wrong dimension, so a
    broken model can never poison the store."""
    mat = np.stack([np.asarray(p.vector, dtype=np.float32).reshape(-1) for p in points])  # (N, D)
    if dim is not None and mat.shape[1] != dim:
        raise IndexStoreError(f"vectors have dimension {mat.shape[1]}, the collection {dim}")
    bad = ~np.isfinite(mat).all(axis=1)  # (N,)
    if bad.any():
        first = points[int(np.argmax(bad))].payload
        what = first.get("text") or first.get("path") or "?"  # a route text or an audio file
        raise IndexStoreError(
            f"the model produced non-finite values (NaN/Inf) for {int(bad.sum())} point(s), e.g. "
            f"{what!r}; nothing of that batch was stored: check the model's weights"
        )
    return mat


def _bytes_used(path: Path) -> int:
    """Bytes a file occupies on disk (allocated blocks; its length where the platform has no
    st_blocks): sparse, preallocated files count what they hold, as `du` does."""
    st = path.stat()
    blocks = getattr(st, "st_blocks", None)
    return st.st_size if blocks is None else blocks * 512


def _os_error(e: OSError, what: str) -> IndexStoreError:
    if e.errno == errno.ENOSPC:
        return IndexStoreError(
            f"disk full while {what}; free some space or pass --index with a folder on another disk"
        )
    return IndexStoreError(f"{what} failed: {e.strerror or e}")


_HOST_PORT = re.compile(r"^[A-Za-z0-9.-]+:\d{1,5}$")


def open_backend(
    location: VectorBackend | str | os.PathLike[str] | None = None,
    *,
    path: str | os.PathLike[str] | None = None,
    url: str | None = None,
    api_key: str | None = None,
) -> VectorBackend:
    """The one rule that turns a place into a backend, as qdrant-client reads its arguments:
    `url` (a server; ":memory:" allowed) wins over `path` (a Qdrant Edge folder); `location`
    is either, told apart by its form: ":memory:", "http(s)://..." or "host:port" is a server
    (qdrant-client), anything else a folder; a backend is returned as it is. Nothing given:
    Edge in the user data folder."""
    if location is not None and not isinstance(location, str | os.PathLike):
        return location  # already a backend
    if location is not None and url is None and path is None:
        loc = os.fspath(location)
        if loc == ":memory:" or "://" in loc or _HOST_PORT.match(loc):
            url = loc if (loc == ":memory:" or "://" in loc) else f"http://{loc}"
        else:
            path = loc
    if url:
        return ClientBackend(url, api_key=api_key)
    if path is not None and os.fspath(path) == ":memory:":
        return ClientBackend(":memory:")
    return EdgeBackend(path if path is not None else default_index_path())
