"""Crash safety of `index-audio`: SIGKILL at random points, restart, and every readable file
ends with exactly one point (none missing, none duplicated); unreadable files are reported."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voice_router import AudioLibrary
from voice_router.model.fake import HashEmbeddingModel
from voice_router.store import EdgeBackend

ROOT = Path(__file__).resolve().parents[2]

# The child indexes with a model slowed to ~4 ms per clip, so kills land mid-run on any
# machine; it prints "ready" once the collection is open (the indexing starts right after).
CHILD = """\
import sys, time
sys.path.insert(0, {root!r})
from voice_router.library import AudioLibrary
from voice_router.model.fake import HashEmbeddingModel
from voice_router.store import EdgeBackend

class Slow(HashEmbeddingModel):
    def embed_audio(self, audios):
        time.sleep(0.004 * len(audios))
        return super().embed_audio(audios)

lib = AudioLibrary(Slow(32), "lib", EdgeBackend(sys.argv[2]))
print("ready", flush=True)
rep = lib.index_dir(sys.argv[1], batch_size=4)
print("done", rep.indexed, rep.skipped, len(rep.failed), flush=True)
"""


def _make_library(folder: Path, n: int) -> tuple[int, int]:
    folder.mkdir()
    t = np.arange(2400) / 16000
    for i in range(n):
        sub = folder / f"part{i % 3}"
        sub.mkdir(exist_ok=True)
        tone = 0.2 * np.sin(2 * np.pi * (120 + 7 * i) * t)
        sf.write(sub / f"clip{i:04d}.wav", tone.astype(np.float32), 16000)
    bad = ["part0/empty.wav", "part1/junk.flac", "part2/truncated.wav"]
    (folder / bad[0]).write_bytes(b"")
    (folder / bad[1]).write_bytes(os.urandom(3000))
    good = (folder / "part0" / "clip0000.wav").read_bytes()
    (folder / bad[2]).write_bytes(good[:30])
    return n, len(bad)


def _points(index: Path) -> list[dict]:
    lib = AudioLibrary(HashEmbeddingModel(32), "lib", EdgeBackend(index))
    try:
        return [p.payload for p in lib.backend.scroll("lib", with_vectors=False)]
    finally:
        lib.close()


def _kill_and_restart(tmp_path: Path, n_files: int, n_kills: int, seed: int) -> None:
    rng = random.Random(seed)
    lib_dir, index = tmp_path / "audio", tmp_path / "index"
    n_good, n_bad = _make_library(lib_dir, n_files)
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT)))
    counts = []
    mid_run_kills = 0
    for _ in range(n_kills):
        child = subprocess.Popen(
            [sys.executable, str(script), str(lib_dir), str(index)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.5))
        finished = child.poll() is not None  # poll() reaps a finished child: kill only if not
        if not finished:
            os.kill(child.pid, signal.SIGKILL)
        child.wait()
        mid_run_kills += not finished
        paths = [p["path"] for p in _points(index)]
        assert len(paths) == len(set(paths)), "a file got two points"
        counts.append(len(paths))
    assert counts == sorted(counts), f"progress went backwards: {counts}"
    assert mid_run_kills >= 1, f"seed {seed}: no kill landed mid-run ({counts})"
    final = subprocess.run(
        [sys.executable, str(script), str(lib_dir), str(index)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert final.returncode == 0, final.stderr
    done = final.stdout.split()
    indexed, skipped, failed = int(done[-3]), int(done[-2]), int(done[-1])
    assert failed == n_bad and indexed + skipped == n_good
    assert skipped == counts[-1]  # resumed: nothing already stored was redone
    payloads = _points(index)
    paths = sorted(p["path"] for p in payloads)
    expected = sorted(str(p.resolve()) for p in lib_dir.rglob("clip*.wav"))
    assert paths == expected  # exactly one point per readable file
    # and the CLI agrees, in one more (no-op) run
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "voice_router.cli",
            "index-audio",
            str(lib_dir),
            "--collection",
            "lib",
            "--model",
            "hash",
            "--index",
            str(index),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    rep = json.loads(out.stdout)
    assert out.returncode == 0 and rep["points"] == n_good
    assert rep["indexed"] == 0 and rep["skipped"] == n_good and len(rep["failed"]) == n_bad


def test_sigkill_during_index_audio_then_restart(tmp_path):
    _kill_and_restart(tmp_path, n_files=300, n_kills=2, seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 3, 4])
def test_sigkill_many_times_during_index_audio(tmp_path, seed):
    _kill_and_restart(tmp_path, n_files=400, n_kills=6, seed=seed)


def test_changed_file_keeps_exactly_one_point(tmp_path):
    lib_dir = tmp_path / "audio"
    _make_library(lib_dir, 4)
    lib = AudioLibrary(HashEmbeddingModel(32), "lib", EdgeBackend(tmp_path / "index"))
    assert lib.index_dir(lib_dir).indexed == 4
    target = lib_dir / "part1" / "clip0001.wav"
    sf.write(target, 0.3 * np.sin(np.arange(4000) / 5).astype(np.float32), 16000)
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
    rep = lib.index_dir(lib_dir)
    assert (rep.indexed, rep.skipped, rep.removed) == (1, 3, 1)
    (lib_dir / "part2" / "clip0002.wav").unlink()
    rep = lib.index_dir(lib_dir)
    assert rep.removed == 1 and lib.count() == 3
    lib.close()
