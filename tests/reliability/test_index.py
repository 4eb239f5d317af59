"""Index faults give clear errors, never hangs or crashes: corrupt or foreign folders, a second
process on the same folder, a model of another dimension, a full disk."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from voice_router import AudioLibrary, RouteIndex
from voice_router.errors import IndexStoreError
from voice_router.model.fake import HashEmbeddingModel
from voice_router.points import PointBuilder
from voice_router.routes import parse_routes
from voice_router.store import MANIFEST_NAME, ClientBackend, EdgeBackend

ROOT = Path(__file__).resolve().parents[2]
RS = parse_routes("routes:\n  - {name: a, description: open the door, examples: [x, y]}\n")


def _build(path: Path, model) -> Path:
    with _open(path, model) as idx:
        PointBuilder(model, exemplar_voices=0).sync(idx, RS)
        return path / idx.collection


def _open(path: Path, model, set_id: str = "inline") -> RouteIndex:
    return RouteIndex(
        EdgeBackend(path), dim=model.dim, fingerprint=model.fingerprint, set_id=set_id
    )


def _sync(idx: RouteIndex, model, routes=RS):
    return PointBuilder(model, exemplar_voices=0).sync(idx, routes)


HOME = ROOT / "routes" / "home.yaml"


@pytest.mark.parametrize("damage", ["garbage", "missing_segment_file", "bad_edge_config"])
def test_corrupt_folder_is_a_clear_error(tmp_path, hash_model, damage):
    col = _build(tmp_path, hash_model)
    if damage == "garbage":
        for f in list(col.glob("segments/**/*")) + list(col.glob("wal/*")):
            if f.is_file():
                with open(f, "r+b") as fh:
                    fh.write(os.urandom(64))
    elif damage == "missing_segment_file":
        for f in col.glob("segments/*/segment.json"):
            f.unlink()
    else:
        (col / "edge_config.json").write_text("{{{")
    with pytest.raises(IndexStoreError, match=r"corrupt or unreadable.*delete that folder"):
        _open(tmp_path, hash_model)
    shutil.rmtree(col)  # the advice works: rebuilt from the routes file
    with _open(tmp_path, hash_model) as idx:
        assert _sync(idx, hash_model).added == 3


def test_foreign_folders_are_refused(tmp_path, hash_model):
    col = tmp_path / f"routes_{hash_model.fingerprint}_inline"
    col.mkdir()
    (col / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(IndexStoreError, match="not a voice-router index"):
        _open(tmp_path, hash_model)
    assert (col / "photo.jpg").read_bytes() == b"\xff\xd8\xff"  # nothing was touched
    (col / "photo.jpg").unlink()
    (col / MANIFEST_NAME).write_text('{"format": "something-else"}')
    with pytest.raises(IndexStoreError, match="not a voice-router index collection"):
        _open(tmp_path, hash_model)
    # an index path that is a file
    (tmp_path / "file").write_text("x")
    with pytest.raises(IndexStoreError, match="is a file, not a folder"):
        EdgeBackend(tmp_path / "file")


def test_foreign_qdrant_collection_on_a_server_is_refused():
    from qdrant_client import models

    backend = ClientBackend(":memory:")
    backend.client.create_collection(
        "theirs", vectors_config=models.VectorParams(size=32, distance=models.Distance.COSINE)
    )
    backend.client.upsert(
        "theirs",
        [models.PointStruct(id=str(uuid.uuid4()), vector=[0.1] * 32, payload={"title": "x"})],
    )
    with pytest.raises(IndexStoreError, match="not written by voice-router"):
        AudioLibrary(HashEmbeddingModel(32), "theirs", backend)


def test_second_process_on_the_same_folder_gets_a_clear_error_not_a_hang(tmp_path, hash_model):
    from voice_router.index import route_set_id
    from voice_router.routes import load_routes

    sid = route_set_id(load_routes(HOME))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            f"sys.path.insert(0, {str(ROOT)!r})\n"
            "from voice_router.index import RouteIndex, route_set_id\n"
            "from voice_router.store import EdgeBackend\n"
            "from voice_router.model.fake import HashEmbeddingModel\n"
            "from voice_router.routes import load_routes\n"
            f"sid = route_set_id(load_routes({str(HOME)!r}))\n"
            f"idx = RouteIndex(EdgeBackend({str(tmp_path)!r}), dim=32, "
            "fingerprint=HashEmbeddingModel(32).fingerprint, set_id=sid)\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        t0 = time.perf_counter()
        with pytest.raises(
            IndexStoreError, match=rf"in use by another process \(pid {holder.pid}\)"
        ):
            _open(tmp_path, hash_model, set_id=sid)
        assert time.perf_counter() - t0 < 2.0
        # the CLI says the same in one line, with the index error's exit code
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "voice_router.cli",
                "enroll",
                "what_time",
                str(ROOT / "tests" / "data" / "rhasspy_what_time_is_it.flac"),
                "--routes",
                str(HOME),
                "--model",
                "hash",
                "--index",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert out.returncode == 6 and out.stderr.count("\n") == 1
        assert out.stderr.startswith("error: ") and "in use by another process" in out.stderr
    finally:
        holder.kill()
        holder.wait()
    with _open(tmp_path, hash_model, set_id=sid) as idx:  # the lock died with its holder
        assert idx.count() == 0


def test_model_with_another_dimension_is_refused(tmp_path):
    lib = AudioLibrary(HashEmbeddingModel(32), "sounds", EdgeBackend(tmp_path))
    lib.close()
    with pytest.raises(IndexStoreError, match="built with dimension 32, but the model gives 64"):
        AudioLibrary(HashEmbeddingModel(64), "sounds", EdgeBackend(tmp_path))
    with pytest.raises(IndexStoreError, match="another model"):
        AudioLibrary(HashEmbeddingModel(32, seed=7), "sounds", EdgeBackend(tmp_path))
    backend = ClientBackend(":memory:")
    AudioLibrary(HashEmbeddingModel(32), "sounds", backend)
    with pytest.raises(IndexStoreError, match="dimension 32, but the model gives 64"):
        AudioLibrary(HashEmbeddingModel(64), "sounds", backend)


def test_disk_full_while_writing_the_manifest_is_a_clear_error(tmp_path, hash_model, monkeypatch):
    real_open = open

    def full_open(path, mode="r", *a, **kw):
        if "w" in mode and str(path).endswith(".tmp"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *a, **kw)

    import voice_router.store

    # `open` as the store module sees it (its own global shadows the builtin), not process-wide
    monkeypatch.setattr(voice_router.store, "open", full_open, raising=False)
    with pytest.raises(IndexStoreError, match="disk full"):
        _open(tmp_path, hash_model)
    monkeypatch.undo()
    with _open(tmp_path, hash_model) as idx:  # nothing half-written was left behind
        assert _sync(idx, hash_model).added == 3


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return r.returncode == 0


def test_real_full_disk_is_refused_before_edge_can_crash(tmp_path):
    """On a really full filesystem Qdrant Edge dies with SIGBUS inside its memory-mapped WAL
    (measured); the free-space check refuses first, the process lives and data stays intact."""
    mnt = tmp_path / "mnt"
    if not _mount_tmpfs(mnt, "160m"):
        pytest.skip("needs root and a mountable tmpfs to make a real full disk")
    try:
        script = (
            "import sys\n"
            f"sys.path.insert(0, {str(ROOT)!r})\n"
            "from voice_router.index import RouteIndex\n"
            "from voice_router.points import PointBuilder\n"
            "from voice_router.store import EdgeBackend\n"
            "from voice_router.errors import IndexStoreError\n"
            "from voice_router.model.fake import HashEmbeddingModel\n"
            "from voice_router.routes import parse_routes\n"
            "rs = parse_routes('routes:\\n  - {name: a, description: open the door}\\n"
            "  - {name: b, description: ' + sys.argv[2] + '}\\n')\n"
            "try:\n"
            "    m = HashEmbeddingModel(32)\n"
            "    idx = RouteIndex(EdgeBackend(sys.argv[1]), dim=32, fingerprint=m.fingerprint)\n"
            "    with idx:\n"
            "        added = PointBuilder(m, exemplar_voices=0).sync(idx, rs).added\n"
            "        print('added', added, 'count', idx.count())\n"
            "except IndexStoreError as e:\n"
            "    print('refused', e)\n"
        )
        run = lambda text: subprocess.run(  # noqa: E731
            [sys.executable, "-c", script, str(mnt / "idx"), text],
            capture_output=True,
            text=True,
            timeout=120,
        )
        first = run("close the door")
        assert first.returncode == 0 and first.stdout.startswith("added 2 count 2"), first.stderr
        free = shutil.disk_usage(mnt).free
        with open(mnt / "ballast", "wb") as f:  # leave ~40 MiB free
            f.truncate(0)
            f.write(b"\0" * max(0, free - 40 * 2**20))
        full = run("lock the door")
        assert full.returncode == 0, f"process died ({full.returncode}): {full.stderr}"
        assert full.stdout.startswith("refused disk full"), full.stdout
        (mnt / "ballast").unlink()
        again = run("close the door")
        assert again.stdout.startswith("added 0 count 2"), again.stdout + again.stderr
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_tiny_disk_refuses_to_create_an_index(tmp_path):
    mnt = tmp_path / "small"
    if not _mount_tmpfs(mnt, "8m"):
        pytest.skip("needs root and a mountable tmpfs")
    try:
        with pytest.raises(IndexStoreError, match=r"disk full: only .* MiB free"):
            _open(mnt / "idx", HashEmbeddingModel(32))
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_bad_vectors_never_reach_the_index(hash_model):
    """A model returning NaN is caught before anything is stored."""

    class NaNModel(HashEmbeddingModel):
        def embed_text(self, texts):
            return np.full((len(texts), self.dim), np.nan, np.float32)

    model = NaNModel(32, seed=3)
    idx = RouteIndex(ClientBackend(":memory:"), dim=32, fingerprint=model.fingerprint)
    with pytest.raises(IndexStoreError, match="non-finite"):
        _sync(idx, model)
    assert idx.count() == 0


DAMAGE_CHILD = """\
import glob, os, random, sys
sys.path.insert(0, {root!r})
from voice_router.errors import IndexStoreError
from voice_router.index import RouteIndex
from voice_router.model.fake import HashEmbeddingModel
from voice_router.points import PointBuilder
from voice_router.routes import parse_routes
from voice_router.store import EdgeBackend

m = HashEmbeddingModel(32)
pts = PointBuilder(m, exemplar_voices=0)
rs = parse_routes("routes:\\n  - {{name: a, description: open the door, examples: [x, y]}}\\n")
path, mode, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
with RouteIndex(EdgeBackend(path), dim=32, fingerprint=m.fingerprint) as idx:
    pts.sync(idx, rs)
col = glob.glob(path + "/routes_*")[0]
files = sorted(f for f in glob.glob(col + "/segments/**/*", recursive=True)
               + glob.glob(col + "/wal/*") if os.path.isfile(f))
rng = random.Random(seed)
target = rng.choice(files)
size = os.path.getsize(target)
if mode == "truncate":
    os.truncate(target, rng.randint(0, max(0, size - 1)))
else:
    with open(target, "r+b") as fh:
        for _ in range(8):
            fh.seek(rng.randint(0, max(0, size - 1)))
            fh.write(bytes([rng.randint(0, 255)]))
try:
    with RouteIndex(EdgeBackend(path), dim=32, fingerprint=m.fingerprint) as idx:
        pts.sync(idx, rs)
        v = idx.vectors()
        assert set(v.route) == {{"a"}} and v.vectors.shape == (3, 32)
        print("ok")
except IndexStoreError as e:
    print("refused", e)
"""


def _damage_trials(tmp_path: Path, seeds: range) -> list[str]:
    script = tmp_path / "damage.py"
    script.write_text(DAMAGE_CHILD.format(root=str(ROOT)))
    outcomes = []
    for seed in seeds:
        for mode in ("truncate", "flip"):
            out = subprocess.run(
                [sys.executable, str(script), str(tmp_path / f"i{seed}{mode}"), mode, str(seed)],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert out.returncode == 0, f"{mode} seed {seed}: died ({out.returncode}) {out.stderr}"
            first = out.stdout.strip().splitlines()[-1]
            assert first == "ok" or first.startswith("refused index collection"), first
            outcomes.append(first.split()[0])
    return outcomes


def test_randomly_damaged_index_files_never_crash_the_process(tmp_path):
    """Truncated or byte-flipped Edge files: either the index still reads correctly or a clear
    IndexStoreError; never a crash, a hang or a wrong route set."""
    _damage_trials(tmp_path, range(2))


@pytest.mark.slow
def test_randomly_damaged_index_files_many_seeds(tmp_path):
    outcomes = _damage_trials(tmp_path, range(3, 23))
    assert "refused" in outcomes  # the sample did hit files that matter
