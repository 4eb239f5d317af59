"""Fuzz harness for the audio decoder: `load_audio(bytes)` must return valid audio or raise
AudioError, for ANY input. Anything else (another exception, a hang, a crash) is a bug.

Two ways to run it:

1. Plain loop (no extra packages): mutates real seed files (FLAC, WAV 8/16/24/32-bit and float,
   multi-channel, OGG Vorbis/Opus, MP3 with ID3 tags) and pure random bytes::

       .venv/bin/python tests/reliability/fuzz_decoder.py --seconds 60
       .venv/bin/python tests/reliability/fuzz_decoder.py --iterations 5000 --seed 7

   Mutations: bit flips, byte overwrites with boundary values (0x00 0x7F 0x80 0xFF), random
   32-bit values written over header fields (rates, channel counts, chunk sizes), truncation,
   inserted and deleted runs, splices of two seeds. Every failing input is saved under
   `--crash-dir` (default fuzz-crashes/) as `<sha1>.bin`; the input being decoded is also written
   to `last-input.bin` first, so a hard crash inside libsndfile (which kills the process) leaves
   the culprit behind. Exit status 1 if any failure was found.

2. Coverage-guided with atheris (optional: `pip install atheris`), libFuzzer's engine::

       .venv/bin/python tests/reliability/fuzz_decoder.py --atheris -max_total_time=300 corpus/

   Remaining arguments go to libFuzzer; seeds are written to the corpus folder if it is empty.

A short plain-loop run is part of the test suite (test_fuzz_harness_runs in
test_audio_inputs.py); the property tests there (hypothesis) cover the same contract.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import soundfile as sf  # noqa: E402

from voice_router.audio.io import load_audio  # noqa: E402
from voice_router.errors import AudioError  # noqa: E402

DATA = ROOT / "tests" / "data" / "audio"
BOUNDARY = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)


def seeds() -> list[bytes]:
    """Real, valid encodings to mutate: the test clip in every format and layout we support."""
    audio, rate = sf.read(DATA / "on_022cd682.flac", dtype="float64")
    out = [(DATA / "on_022cd682.flac").read_bytes(), (DATA / "on_id3.mp3").read_bytes()]
    variants = [
        ("WAV", "PCM_U8", 1, 16000),
        ("WAV", "PCM_16", 2, 44100),
        ("WAV", "PCM_24", 6, 48000),
        ("WAV", "PCM_32", 1, 8000),
        ("WAV", "FLOAT", 3, 22050),
        ("FLAC", "PCM_24", 2, 96000),
        ("OGG", "VORBIS", 1, 16000),
        ("OGG", "OPUS", 2, 48000),
        ("AIFF", "PCM_16", 1, 16000),
    ]
    short = audio[:4000]
    for fmt, subtype, channels, sr in variants:
        x = np.repeat(short[:, None], channels, axis=1)  # (n, channels)
        buf = io.BytesIO()
        sf.write(buf, x, sr, format=fmt, subtype=subtype)
        out.append(buf.getvalue())
    return out


def mutate(data: bytes, rng: np.random.Generator, pool: list[bytes]) -> bytes:
    """Apply 1-4 random mutations to `data`."""
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        if not b:
            b = bytearray(rng.bytes(int(rng.integers(1, 64))))
        op = int(rng.integers(0, 7))
        i = int(rng.integers(0, len(b)))
        if op == 0:  # bit flip
            b[i] ^= 1 << int(rng.integers(0, 8))
        elif op == 1:  # boundary byte
            b[i] = BOUNDARY[int(rng.integers(0, len(BOUNDARY)))]
        elif op == 2:  # 32-bit field overwrite, biased to the header
            j = int(rng.integers(0, min(len(b), 128)))
            b[j : j + 4] = int(rng.integers(0, 2**32)).to_bytes(4, "little")
        elif op == 3:  # truncate
            del b[i:]
        elif op == 4:  # insert random run
            b[i:i] = rng.bytes(int(rng.integers(1, 64)))
        elif op == 5:  # delete run
            del b[i : i + int(rng.integers(1, 256))]
        else:  # splice with another seed
            other = pool[int(rng.integers(0, len(pool)))]
            b = b[:i] + bytearray(other[int(rng.integers(0, len(other))) :])
    return bytes(b)


def check(data: bytes) -> str | None:
    """Decode one input; None if the contract held, else a description of the failure."""
    try:
        out = load_audio(data)
    except AudioError:
        return None
    except Exception:
        return traceback.format_exc()
    if not (isinstance(out, np.ndarray) and out.dtype == np.float32 and out.ndim == 1):
        return f"bad output type/shape: {type(out)} {getattr(out, 'dtype', None)}"
    if out.size < 1 or not np.isfinite(out).all() or np.abs(out).max() > 1.0:
        return f"bad output values: size {out.size}, max {np.abs(out).max() if out.size else None}"
    return None


def run_loop(iterations: int | None, seconds: float | None, seed: int, crash_dir: Path) -> int:
    """The plain mutation loop; returns the number of failures found."""
    rng = np.random.default_rng(seed)
    pool = seeds()
    crash_dir.mkdir(parents=True, exist_ok=True)
    last = crash_dir / "last-input.bin"
    failures = done = 0
    t0 = time.monotonic()
    while True:
        if iterations is not None and done >= iterations:
            break
        if seconds is not None and time.monotonic() - t0 >= seconds:
            break
        if rng.random() < 0.1:
            data = rng.bytes(int(rng.integers(0, 4096)))
        else:
            data = mutate(pool[int(rng.integers(0, len(pool)))], rng, pool)
        last.write_bytes(data)
        problem = check(data)
        done += 1
        if problem is not None:
            failures += 1
            name = crash_dir / f"{hashlib.sha1(data).hexdigest()}.bin"
            name.write_bytes(data)
            print(f"FAILURE ({name}):\n{problem}", file=sys.stderr)
    last.unlink(missing_ok=True)
    rate = done / max(time.monotonic() - t0, 1e-9)
    print(f"{done} inputs, {failures} failures, {rate:.0f} inputs/s (seed {seed})")
    return failures


def run_atheris(argv: list[str]) -> None:  # pragma: no cover - optional dependency
    """Coverage-guided fuzzing with atheris/libFuzzer."""
    import atheris

    corpus = next((Path(a) for a in argv if not a.startswith("-")), None)
    if corpus is not None:
        corpus.mkdir(parents=True, exist_ok=True)
        if not any(corpus.iterdir()):
            for k, s in enumerate(seeds()):
                (corpus / f"seed{k}.bin").write_bytes(s)

    def one_input(data: bytes) -> None:
        problem = check(data)
        if problem is not None:
            raise RuntimeError(problem)

    atheris.Setup([sys.argv[0], *argv], one_input)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=None, help="stop after N inputs")
    parser.add_argument("--seconds", type=float, default=None, help="stop after S seconds")
    parser.add_argument("--seed", type=int, default=0, help="random seed (reproducible runs)")
    parser.add_argument("--crash-dir", type=Path, default=Path("fuzz-crashes"))
    parser.add_argument("--atheris", action="store_true", help="coverage-guided (needs atheris)")
    args, rest = parser.parse_known_args(argv)
    if args.atheris:
        run_atheris(rest)
        return 0
    if args.iterations is None and args.seconds is None:
        args.iterations = 1000
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return 1 if run_loop(args.iterations, args.seconds, args.seed, args.crash_dir) else 0


if __name__ == "__main__":
    sys.exit(main())
