"""Audio library search: index a folder of recordings once, then find clips by text.

`AudioLibrary.index_dir(DIR)` embeds every audio file under DIR into a Qdrant collection.
It is resumable and crash-safe by construction:
- a file's point id is uuid5(model fingerprint, absolute path, size, mtime), so a re-run
  recognises files already indexed and skips them without decoding;
- points are upserted in small batches (`batch_size`), so a crash (even SIGKILL) loses at
  most the batch in flight, and the next run re-does only that;
- a file that changed on disk gets a new id; its old point is deleted after the new one is
  written, so each readable file ends with exactly one point;
- unreadable files are reported and skipped; the run goes on.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voice_router.errors import AudioError, IndexStoreError
from voice_router.model.base import embed_audio_pooled
from voice_router.store import (
    P_FINGERPRINT,
    EdgeBackend,
    PointRecord,
    VectorBackend,
    default_index_path,
)

if TYPE_CHECKING:
    from voice_router.model.base import EmbeddingModel

log = logging.getLogger(__name__)

#: Namespace of library point ids (the route points' namespace: ids written before the two
#: were split stay valid).
LIBRARY_NAMESPACE = uuid.UUID("6f1c1f6e-6b9a-5d0e-9a57-7a3e0c6f9d21")

P_PATH = "path"
P_SIZE = "size"
P_MTIME = "mtime_ns"
P_DURATION = "duration_s"

DEFAULT_BATCH = 16
_FALLBACK_EXTENSIONS = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"}
)


def audio_extensions() -> frozenset[str]:
    """File extensions treated as audio (from voice_router.audio.io when available)."""
    try:
        from voice_router.audio.io import AUDIO_EXTENSIONS

        return frozenset(e.lower() for e in AUDIO_EXTENSIONS)
    except ImportError:  # pragma: no cover - io is part of the package
        return _FALLBACK_EXTENSIONS


def file_point_id(fingerprint: str, path: Path, size: int, mtime_ns: int) -> str:
    """Deterministic id of one version of one file for one model."""
    return str(uuid.uuid5(LIBRARY_NAMESPACE, f"{fingerprint}|{path}|{size}|{mtime_ns}"))


@dataclass
class LibraryReport:
    """Outcome of `index_dir`: counts, plus (path, reason) for each unreadable file."""

    indexed: int = 0
    skipped: int = 0
    removed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "indexed": self.indexed,
            "skipped": self.skipped,
            "removed": self.removed,
            "failed": [{"path": p, "error": e} for p, e in self.failed],
        }


@dataclass
class LibraryHit:
    """One search result."""

    path: str
    score: float
    payload: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "path": self.path,
            "score": round(self.score, 6),
            **{k: v for k, v in self.payload.items() if k in (P_DURATION,)},
        }


def iter_audio_files(directory: Path, *, recursive: bool = True) -> Iterator[Path]:
    """Audio files under `directory` (by extension), sorted, hidden entries skipped."""
    exts = audio_extensions()
    if recursive:
        for root, dirs, files in os.walk(directory):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for f in sorted(files):
                if not f.startswith(".") and Path(f).suffix.lower() in exts:
                    yield Path(root) / f
    else:
        for p in sorted(directory.iterdir()):
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts:
                yield p


def audio_folder(
    directory: str | os.PathLike[str], *, recursive: bool = True
) -> tuple[Path, list[Path]]:
    """(the folder resolved, its audio files) for `index_dir`; `AudioError` when `directory` is
    not a folder. Cheap (no decoding), so a caller can refuse a bad folder before it opens or
    creates a collection."""
    d = Path(directory).expanduser()
    if not d.is_dir():
        what = "it does not exist" if not d.exists() else "it is a file"
        raise AudioError(f"{d} is not a folder ({what}); pass a folder of audio files")
    d = d.resolve()
    return d, list(iter_audio_files(d, recursive=recursive))


class AudioLibrary:
    """A searchable collection of audio files.

    Args:
        model: the embedding model (the collection is tied to its fingerprint).
        collection: collection name (a folder name under the Edge index, or a server collection).
        backend: a `VectorBackend`; default Qdrant Edge at `path` or the user data folder.
        create: False to refuse (IndexStoreError naming the known ones) a collection that does
            not exist yet, as searching one should.
    """

    def __init__(
        self,
        model: EmbeddingModel,
        collection: str,
        backend: VectorBackend | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        create: bool = True,
    ) -> None:
        self.model = model
        self.collection = collection
        self.backend = backend if backend is not None else EdgeBackend(path or default_index_path())
        if not create:
            known = self.backend.collections("library")
            if collection not in known:
                self.backend.close()
                raise IndexStoreError(
                    f"no audio collection {collection!r} in {self.backend.location}; "
                    + (f"known: {', '.join(known)}" if known else "there are none yet")
                    + f" (build one: voice-router index-audio DIR --collection {collection})"
                )
        self.backend.open_collection(collection, int(model.dim), model.fingerprint, "library")

    def index_dir(
        self,
        directory: str | os.PathLike[str],
        *,
        recursive: bool = True,
        batch_size: int = DEFAULT_BATCH,
        progress: bool = False,
        prune: bool = True,
    ) -> LibraryReport:
        """Index the audio files under `directory` (see the module docstring for guarantees).

        prune: also delete points of files under `directory` that no longer exist.
        """
        d, files = audio_folder(directory, recursive=recursive)
        report = self.index_paths(files, batch_size=batch_size, progress=progress)
        if prune:
            present = {str(p) for p in files}
            prefix = str(d) + os.sep
            gone = [
                p.id
                for p in self.backend.scroll(self.collection, with_vectors=False)
                if str(p.payload.get(P_PATH, "")).startswith(prefix)
                and p.payload.get(P_PATH) not in present
            ]
            self.backend.delete(self.collection, gone)
            report.removed += len(gone)
        return report

    def index_paths(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        batch_size: int = DEFAULT_BATCH,
        progress: bool = False,
    ) -> LibraryReport:
        """Index the given files (see `index_dir`)."""
        from tqdm import tqdm

        from voice_router.audio.io import load_audio

        fp = self.model.fingerprint
        report = LibraryReport()
        # Which (path -> ids) are stored already: one scroll, no decoding.
        stored: dict[str, set[str]] = {}
        for p in self.backend.scroll(self.collection, with_vectors=False):
            stored.setdefault(str(p.payload.get(P_PATH)), set()).add(p.id)
        stored_ids = {i for ids in stored.values() for i in ids}

        todo: list[tuple[Path, str, int, int]] = []
        for raw in paths:
            path = Path(raw).expanduser().resolve()
            try:
                st = path.stat()
            except OSError as e:
                report.failed.append((str(path), e.strerror or str(e)))
                continue
            pid = file_point_id(fp, path, st.st_size, st.st_mtime_ns)
            if pid in stored_ids:
                report.skipped += 1
            else:
                todo.append((path, pid, st.st_size, st.st_mtime_ns))

        bar = tqdm(total=len(todo), unit="file", desc="indexing", disable=not progress or None)
        try:
            for i in range(0, len(todo), batch_size):
                batch = todo[i : i + batch_size]
                pts: list[PointRecord] = []
                for path, pid, size, mtime in batch:
                    try:
                        clip = load_audio(path, target_rate=self.model.sample_rate)
                    except AudioError as e:
                        report.failed.append((str(path), str(e)))
                        log.info("skipped %s: %s", path, e)  # reported in IndexReport.failed
                        continue
                    vec = embed_audio_pooled(self.model, clip)  # (D,)
                    pts.append(
                        PointRecord(
                            pid,
                            vec,
                            {
                                P_PATH: str(path),
                                P_SIZE: size,
                                P_MTIME: mtime,
                                P_DURATION: round(clip.shape[0] / self.model.sample_rate, 3),
                                P_FINGERPRINT: fp,
                            },
                        )
                    )
                self.backend.upsert(self.collection, pts)
                # Old versions of re-indexed files go only after their new point is stored.
                old = [oid for p in pts for oid in stored.get(p.payload[P_PATH], ()) if oid != p.id]
                self.backend.delete(self.collection, old)
                report.indexed += len(pts)
                report.removed += len(old)
                bar.update(len(batch))
        finally:
            bar.close()
        return report

    def search(self, text: str, k: int = 5) -> list[LibraryHit]:
        """The `k` clips closest to `text`, best first."""
        if not text.strip():
            raise IndexStoreError("search text is empty; say what to look for")
        vec = self.model.embed_text([text])[0]  # (D,)
        return self.search_vector(vec, k)

    def search_audio(self, audio: Any, k: int = 5) -> list[LibraryHit]:
        """The `k` clips closest to an audio query (any AudioInput)."""
        from voice_router.audio.io import load_audio

        clip = load_audio(audio, target_rate=self.model.sample_rate)
        return self.search_vector(embed_audio_pooled(self.model, clip), k)

    def search_vector(self, vector: Any, k: int = 5) -> list[LibraryHit]:
        """The `k` clips closest to an embedding."""
        if k < 1:
            raise IndexStoreError("k must be at least 1")
        hits = self.backend.query(self.collection, vector, k)
        return [LibraryHit(str(h.payload.get(P_PATH)), h.score, h.payload) for h in hits]

    def count(self) -> int:
        """Number of indexed files."""
        return self.backend.count(self.collection)

    def close(self) -> None:
        """Release the store (and the Edge folder lock)."""
        self.backend.close()

    def __enter__(self) -> AudioLibrary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
