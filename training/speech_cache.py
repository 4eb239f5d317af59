"""Feature cache for the Whisper-tower model: frozen encoder frames of real and synthetic speech.

Why: the Whisper tiny.en encoder is frozen, so it runs once per clip here and never in a
training step; a step then runs only the small head (training/speech_head.py). On 2 shared CPU
cores that is the difference between hours and minutes.

Sources (each a list of clip specs, in chunk files of `--chunk` clips, resumable):
- `so762-train` / `so762-test`: REAL read English from ../shared/data/speechocean762, 250
  speakers (children and adults), the corpus's own speaker-disjoint train/test split. Train
  clips get one clean and `--n-aug` augmented versions; test clips are cached clean, for
  evaluation only.
- `tts`: command text (SLURP, HWU64, CLINC150, Home Assistant tests; training/texts.py), some
  with spoken carriers and fillers ("could you", "please", "um"), spoken by espeak-ng (8
  accents x 71 variants), flite and festival voices, each clean + `--n-aug` augmented versions
  (training/augment.py: speed, pitch, room, noise 0-30 dB, band-limiting). Texts of the real
  evaluation sets (ha_commands_en, rhasspy_en) are removed, so those stay zero-shot.
- `tts-short`: single words and wake-like phrases (training/texts.py), 8 voices each.
- `tts-phrases`: random short phrases of command-text words ("paper window", "hey tulip",
  "sunbox"), 2 voices each: routes are often names of one or two words, and a head trained on
  a few hundred short texts maps an unseen one poorly. No phrase shares a word with a wake
  phrase of the evaluation set, or equals one of its Speech Commands words.

- `vocab`: the broad-vocabulary training text (training/vocab.py, issue #22: ~140k sentences,
  none with a word of the unseen-word protocol), one TRAINING voice each (`VOCAB_TRAIN_VOICES`).
- `vocab-test-seen` / `vocab-test-unseen`: its test sentences (never trained on; the second
  holds the held-out words), one TEST voice each (`VOCAB_TEST_VOICES`: voices no `vocab`
  clip uses), split "test". The voice of a sentence is drawn from a hash of its text, so a
  sentence keeps its voice whatever else the set holds.

Each chunk stores per sample: clip id, version (0 = clean), text, source, speaker, split, and
the encoder frames (T, 384) float16 at 50 frames/s, concatenated.

Usage (augmentation needs the `train` extra; see training/README.md):
    python -m training.speech_cache build --sources so762-train,so762-test,tts --workers 2
    python -m training.speech_cache info
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from training.corpus import (
    CACHE,
    ESPEAK_ACCENTS,
    ESPEAK_VARIANTS,
    FLITE_VOICES,
    HOLDOUT_VARIANTS,
    ClipSpec,
    synthesize_clean,
)
from training.texts import normalise, read_command_texts

DATA = Path(
    os.environ.get("VR_DATA", Path(__file__).resolve().parent.parent.parent / "shared" / "data")
)
SPEECH_CACHE = CACHE / "speech"
SOURCES = (
    "so762-train",
    "so762-test",
    "tts-short",
    "tts",
    "tts-phrases",
    "vocab",
    "vocab-test-seen",
    "vocab-test-unseen",
)

CARRIERS = (
    "please {t}",
    "{t} please",
    "can you {t}",
    "could you {t}",
    "could you please {t}",
    "i want to {t}",
    "i'd like to {t}",
    "hey {t}",
    "um {t}",
    "uh {t}",
    "okay {t}",
    "so {t}",
    "{t} thanks",
    "can you please {t} for me",
)


@dataclass(frozen=True)
class Item:
    """One clip to cache: a real file (`path`) or a TTS spec (`spec`)."""

    clip_id: str
    text: str
    source: str
    speaker: str
    split: str  # train | test | val
    path: str = ""
    spec: dict | None = None


def _h(s: str) -> float:
    return int.from_bytes(hashlib.sha1(s.encode()).digest()[:8], "big") / 2**64


def manifest_texts(name: str) -> set[str]:
    """Normalised, non-empty transcripts of one evaluation set under ../shared/data (empty
    when the set is not there)."""
    p = DATA / name / "manifest.csv"
    if not p.exists():
        return set()
    with p.open(newline="", encoding="utf-8") as f:
        return {normalise(r["text"]) for r in csv.DictReader(f) if r["text"].strip()}


def eval_texts() -> set[str]:
    """Normalised transcripts of the real evaluation sets that must stay unseen."""
    return manifest_texts("ha_commands_en") | manifest_texts("rhasspy_en")


def so762_items(split: str) -> list[Item]:
    """speechocean762 clips of one split (real speech, speaker-disjoint splits)."""
    root = DATA / "speechocean762"
    with (root / "manifest.csv").open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split]
    return [
        Item(
            clip_id=f"so762/{r['path']}",
            text=normalise(r["text"]),
            source=f"so762-{split}",
            speaker=f"so762:{r['speaker']}",
            split="train" if split == "train" else "test",
            path=str(root / r["path"]),
        )
        for r in rows
    ]


def _voice(rng: random.Random) -> tuple[str, str, float, float]:
    """A random TTS voice: (engine, voice, rate, pitch) as training.corpus.ClipSpec wants."""
    engine = rng.choices(["espeak", "flite", "festival"], [0.75, 0.17, 0.08])[0]
    if engine == "espeak":
        voice = f"{rng.choice(ESPEAK_ACCENTS)}+{rng.choice(ESPEAK_VARIANTS)}"
        return engine, voice, float(rng.randint(120, 210)), float(rng.randint(25, 75))
    if engine == "flite":
        return engine, rng.choice(FLITE_VOICES), rng.uniform(0.8, 1.25), rng.uniform(90, 210)
    return engine, "kal_diphone", rng.uniform(0.85, 1.2), rng.uniform(90, 150)


def short_items(voices: int = 8, seed: int = 1) -> list[Item]:
    """Single words and wake-like phrases (training/texts.py), `voices` voices each: routes are
    often one or two words, and those must not regress."""
    from training.texts import _WAKE_LIKE, ESSENTIAL_WORDS

    rng = random.Random(seed)
    texts = sorted((set(ESSENTIAL_WORDS) | set(_WAKE_LIKE)) - eval_texts())
    return _voiced_items(texts, voices, rng, "short-{k:04d}", "essential", "tts-short")


def _voiced_items(
    texts: list[str], voices: int, rng: random.Random, group: str, kind: str, source: str
) -> list[Item]:
    """Every text in `voices` random voices; a clip's split follows its voice (held-out
    espeak-ng variants are "val"). `group` formats the text's number k into its group id."""
    items = []
    for k, text in enumerate(texts):
        gid = group.format(k=k)
        for v in range(voices):
            engine, voice, rate, pitch = _voice(rng)
            split = "val" if voice.split("+")[-1] in HOLDOUT_VARIANTS else "train"
            cid = f"{gid}-{v}"
            spec = ClipSpec(cid, text, gid, kind, "", engine, voice, rate, pitch, split)
            items.append(Item(cid, text, source, f"{engine}:{voice}", split, spec=asdict(spec)))
    return items


# Words too common to name anything; left out of the phrase vocabulary.
_STOPWORDS = frozenset(
    """the and for you your are was what with from that this can please have how there
    when will about which would could should them they their its it's into than then also
    any some just not but our out get got did does yes""".split()
)


def phrase_vocabulary(min_count: int = 3) -> list[str]:
    """Content words of the command texts (>= 3 letters, >= `min_count` uses), sorted."""
    counts: dict[str, int] = {}
    for text, _ in read_command_texts():
        for w in text.split():
            if len(w) >= 3 and w.isalpha() and w not in _STOPWORDS:
                counts[w] = counts.get(w, 0) + 1
    return sorted(w for w, c in counts.items() if c >= min_count)


def phrase_items(n_texts: int = 4000, voices: int = 2, seed: int = 2) -> list[Item]:
    """`n_texts` random short phrases of command-text words, `voices` voices each: one word
    (30%), two words (40%), three words (10%), "hey"/"okay" + a word (10%), or two short words
    run together as a made-up name (10%). No phrase shares a word with a wake phrase of the
    evaluation set or equals a Speech Commands word, so those sets stay zero-shot."""
    rng = random.Random(seed)
    wake, words = manifest_texts("wake_phrases"), manifest_texts("speech_commands_dev")
    wake_words = {w for t in wake for w in t.split()}
    vocab = [w for w in phrase_vocabulary() if w not in wake_words]
    little = [w for w in vocab if len(w) <= 5]
    banned = eval_texts() | wake | words
    if len(vocab) < 3 or len(little) < 2:
        raise SystemExit(
            f"phrase vocabulary too small ({len(vocab)} words, {len(little)} of <= 5 letters): "
            "are the command texts in ../shared/data/text_intents?"
        )
    texts: list[str] = []
    seen: set[str] = set()
    for _ in range(50 * n_texts):  # bounded: a small vocabulary may not have n_texts phrases
        if len(texts) == n_texts:
            break
        r = rng.random()
        if r < 0.3:
            t = rng.choice(vocab)
        elif r < 0.7:
            t = " ".join(rng.sample(vocab, 2))
        elif r < 0.8:
            t = " ".join(rng.sample(vocab, 3))
        elif r < 0.9:
            t = f"{rng.choice(('hey', 'okay'))} {rng.choice(vocab)}"
        else:
            t = "".join(rng.sample(little, 2))
        if t in seen or t in banned:
            continue
        seen.add(t)
        texts.append(t)
    return _voiced_items(texts, voices, rng, "phrase-{k:05d}", "phrase", "tts-phrases")


def tts_items(n_texts: int, seed: int = 0, p_carrier: float = 0.35) -> list[Item]:
    """`n_texts` command texts (eval texts removed), some with a carrier, one voice each."""
    rng = random.Random(seed)
    banned = eval_texts()
    rows = [(t, i) for t, i in read_command_texts() if t not in banned and len(t.split()) >= 2]
    rng.shuffle(rows)
    rows = rows[:n_texts]
    items = []
    for k, (text, intent) in enumerate(rows):
        if rng.random() < p_carrier:
            said = normalise(rng.choice(CARRIERS).format(t=text))
            if said in banned:
                said = text
        else:
            said = text
        engine, voice, rate, pitch = _voice(rng)
        variant = voice.split("+")[-1]
        split = "val" if variant in HOLDOUT_VARIANTS or _h(text) < 0.03 else "train"
        cid = f"tts-{k:06d}"
        spec = ClipSpec(cid, said, cid, "command", intent, engine, voice, rate, pitch, split)
        items.append(Item(cid, said, "tts", f"{engine}:{voice}", split, spec=asdict(spec)))
    return items


# ------------------------------------------------------------------ the vocab sources

#: Voice rules of the unseen-word protocol (issue #22). Training: espeak-ng (every English
#: accent) with the variants that are not held out, flite's voices but slt, festival's
#: kal_diphone. Test: espeak-ng's held-out variants (training.corpus.HOLDOUT_VARIANTS) in every
#: accent, and flite's slt. (The older `tts` source of this cache did use slt: a training mix
#: that includes it makes slt a seen voice.)
VOCAB_TRAIN_VOICES: dict[str, tuple[str, ...]] = {
    "espeak": tuple(
        f"{a}+{v}" for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS if v not in HOLDOUT_VARIANTS
    ),
    "flite": tuple(v for v in FLITE_VOICES if v != "slt"),
    "festival": ("kal_diphone",),
}
VOCAB_TEST_VOICES: dict[str, tuple[str, ...]] = {
    "espeak": tuple(
        f"{a}+{v}" for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS if v in HOLDOUT_VARIANTS
    ),
    "flite": ("slt",),
}
VOCAB_ENGINE_WEIGHTS = {"espeak": 0.7, "flite": 0.2, "festival": 0.1}


def available_engines() -> set[str]:
    """The TTS engines installed here (espeak-ng, flite, festival: Debian packages)."""
    import shutil

    names = {"espeak": "espeak-ng", "flite": "flite", "festival": "festival"}
    return {e for e, exe in names.items() if shutil.which(exe)}


def vocab_voice(
    text: str, voices: dict[str, tuple[str, ...]], engines: set[str], salt: str = "vocab-voice"
) -> tuple[str, str, float, float]:
    """(engine, voice, rate, pitch) for `text`, drawn from a hash of the text among `voices`
    of the installed `engines` (weights VOCAB_ENGINE_WEIGHTS), as ClipSpec wants them."""
    rng = random.Random(int.from_bytes(hashlib.sha1((salt + text).encode()).digest()[:8], "big"))
    names = [e for e in VOCAB_ENGINE_WEIGHTS if e in voices and e in engines]
    if not names:
        raise SystemExit(f"no TTS engine for these voices is installed ({sorted(voices)})")
    engine = rng.choices(names, [VOCAB_ENGINE_WEIGHTS[e] for e in names])[0]
    voice = rng.choice(voices[engine])
    if engine == "espeak":
        return engine, voice, float(rng.randint(120, 210)), float(rng.randint(25, 75))
    if engine == "flite":
        return engine, voice, rng.uniform(0.8, 1.25), rng.uniform(90, 210)
    return engine, voice, rng.uniform(0.85, 1.2), rng.uniform(90, 150)


def vocab_items(which: str = "train", engines: set[str] | None = None) -> list[Item]:
    """Clip specs of the vocab text set (training/vocab.py's written files): `train` with
    training voices, `test-seen` / `test-unseen` with test voices. Order: the file's."""
    from training.vocab import read_test, read_train

    engines = available_engines() if engines is None else engines
    if which == "train":
        rows = read_train()
        voices, split, source, tag = VOCAB_TRAIN_VOICES, "train", "vocab", "vocab"
    else:
        rows = read_test(which=which.split("-")[1])
        voices, split, source, tag = VOCAB_TEST_VOICES, "test", f"vocab-{which}", f"v{which}"
    items = []
    for k, row in enumerate(rows):
        text, origin = row[0], row[1]
        engine, voice, rate, pitch = vocab_voice(text, voices, engines)
        cid = f"{tag}-{k:06d}"
        spec = ClipSpec(cid, text, cid, "sentence", origin, engine, voice, rate, pitch, split)
        items.append(Item(cid, text, source, f"{engine}:{voice}", split, spec=asdict(spec)))
    return items


# ------------------------------------------------------------------ encoding


_ENCODER = None


def _encoder():  # noqa: ANN202 - process-local cache
    global _ENCODER
    if _ENCODER is None:
        import torch

        torch.set_num_threads(1)
        from voice_router.model.whisper import load_bundled_whisper

        _ENCODER = load_bundled_whisper().eval()
    return _ENCODER


def encode(waves: list[np.ndarray], batch: int = 8) -> list[np.ndarray]:
    """Clips -> frozen Whisper tiny.en frames, (T', 384) float16 each (batched by length)."""
    import torch

    from voice_router.model.whisper import log_mel

    enc = _encoder()
    out: list[np.ndarray | None] = [None] * len(waves)
    order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
    with torch.inference_mode():
        for s in range(0, len(order), batch):
            idx = order[s : s + batch]
            mel, frames = log_mel([waves[i] for i in idx])  # (B, 80, T)
            hidden, mask = enc(mel, frames)  # (B, T', 384)
            lens = mask.sum(-1).tolist()
            for j, i in enumerate(idx):
                out[i] = hidden[j, : lens[j]].numpy().astype(np.float16)
    return out  # type: ignore[return-value]


def _load(item: Item) -> np.ndarray:
    from voice_router.audio.io import load_audio

    return load_audio(item.path)


def process_chunk(
    name: str, items: list[Item], n_aug: int, out_dir: Path
) -> tuple[str, int, float]:
    """Load/synthesise, augment, encode and write one chunk (atomic rename)."""
    t0 = time.time()
    real = [it for it in items if it.path]
    clean: dict[str, np.ndarray] = {it.clip_id: _load(it) for it in real}
    tts = [it for it in items if it.spec]
    if tts:
        specs = [ClipSpec(**it.spec) for it in tts]  # type: ignore[arg-type]
        clean.update(synthesize_clean(specs))
    rows, waves = [], []
    others = list(clean.values())
    for it in items:
        if it.clip_id not in clean:
            continue
        a = clean[it.clip_id]
        rows.append((it, 0))
        waves.append(a)
        if it.split == "test":
            continue
        if n_aug:
            from training.augment import augment

            rng = np.random.default_rng(int(_h("aug" + it.clip_id) * 2**32))
            for v in range(1, n_aug + 1):
                rows.append((it, v))
                waves.append(augment(a, rng, others))
    feats = encode(waves)
    lens = np.array([f.shape[0] for f in feats], np.int32)
    meta = [
        {
            "clip_id": it.clip_id,
            "version": v,
            "text": it.text,
            "source": it.source,
            "speaker": it.speaker,
            "split": it.split,
        }
        for it, v in rows
    ]
    tmp = out_dir / f"{name}.tmp.npz"
    np.savez(
        tmp,
        frames=np.concatenate(feats) if feats else np.zeros((0, 384), np.float16),
        f_len=lens,
        meta=np.array(json.dumps(meta)),
    )
    tmp.replace(out_dir / f"{name}.npz")
    return name, len(rows), time.time() - t0


def build(sources: list[str], n_tts: int, n_aug: int, workers: int, chunk: int, out: Path) -> None:
    """Build (or resume) the cache: chunks that exist are skipped."""
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[str, list[Item]]] = []
    for src in sources:
        if src == "so762-train":
            items = so762_items("train")
        elif src == "so762-test":
            items = so762_items("test")
        elif src == "tts":
            items = tts_items(n_tts)
        elif src == "tts-short":
            items = short_items()
        elif src == "tts-phrases":
            items = phrase_items()
        elif src == "vocab":
            items = vocab_items("train")
        elif src in ("vocab-test-seen", "vocab-test-unseen"):
            items = vocab_items(src.removeprefix("vocab-"))
        else:
            raise SystemExit(f"unknown source {src!r}; known: {', '.join(SOURCES)}")
        for k in range(0, len(items), chunk):
            jobs.append((f"{src}-{k // chunk:04d}", items[k : k + chunk]))
    todo = [(n, it) for n, it in jobs if not (out / f"{n}.npz").exists()]
    print(f"{len(jobs)} chunks, {len(todo)} to build -> {out}", file=sys.stderr)
    if not todo:
        return
    total_clips = sum(len(it) for _, it in todo)
    done_clips, t0 = 0, time.time()
    with ProcessPoolExecutor(workers) as pool:
        futs = {pool.submit(process_chunk, n, it, n_aug, out): len(it) for n, it in todo}
        bar = tqdm(as_completed(futs), total=len(futs), unit="chunk")
        for f in bar:
            name, n, secs = f.result()
            done_clips += futs[f]
            rate = done_clips / max(time.time() - t0, 1e-9) * 60  # clips per minute
            eta_h = (total_clips - done_clips) / max(rate, 1e-9) / 60
            bar.set_postfix_str(f"{name}: {n} samples in {secs:.0f}s")
            _log_progress(out, name, n, secs, done_clips, total_clips, rate, eta_h)


def _log_progress(
    out: Path,
    name: str,
    n: int,
    secs: float,
    done: int,
    total: int,
    rate: float,
    eta_h: float,
) -> None:
    """One JSON line per finished chunk in `out/progress.jsonl` (this run's clips/min and the
    time left for its remaining chunks): a long background build can be watched with `tail`."""
    row = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "chunk": name,
        "samples": n,
        "chunk_s": round(secs, 1),
        "run_clips_done": done,
        "run_clips_total": total,
        "clips_per_min": round(rate, 1),
        "eta_h": round(eta_h, 2),
    }
    with (out / "progress.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")


@dataclass
class SpeechCache:
    """The whole cache in RAM: frames concatenated, per-sample metadata columns."""

    frames: np.ndarray  # (F, 384) float16
    f_off: np.ndarray  # (N,) int64
    f_len: np.ndarray  # (N,) int32
    meta: list[dict]

    def sample(self, i: int) -> np.ndarray:
        return self.frames[self.f_off[i] : self.f_off[i] + self.f_len[i]]


def load_cache(out: Path = SPEECH_CACHE, sources: tuple[str, ...] = SOURCES) -> SpeechCache:
    """Load every finished chunk of `sources`."""
    frames, lens, meta = [], [], []
    for f in sorted(out.glob("*.npz")):
        source = f.name.rsplit("-", 1)[0]  # "<source>-<chunk number>.npz"
        if f.name.endswith(".tmp.npz") or source not in sources:
            continue
        z = np.load(f)
        frames.append(z["frames"])
        lens.append(z["f_len"])
        meta += json.loads(str(z["meta"]))
    if not frames:
        raise SystemExit(f"no cache chunks in {out}; run `python -m training.speech_cache build`")
    f_len = np.concatenate(lens)
    f_off = np.concatenate([[0], np.cumsum(f_len)[:-1]]).astype(np.int64)
    return SpeechCache(np.concatenate(frames), f_off, f_len, meta)


def cache_summary(
    out: Path = SPEECH_CACHE, sources: tuple[str, ...] = SOURCES
) -> tuple[dict[tuple[str, str], int], int]:
    """Samples per (source, split) and total frames of the finished chunks, read from each
    chunk's metadata and lengths only: the frames of a full vocab cache (~13 GB) are never
    loaded, as `load_cache` would."""
    by: dict[tuple[str, str], int] = {}
    n_frames = 0
    for f in sorted(out.glob("*.npz")):
        if f.name.endswith(".tmp.npz") or f.name.rsplit("-", 1)[0] not in sources:
            continue
        with np.load(f) as z:
            n_frames += int(z["f_len"].sum())
            for m in json.loads(str(z["meta"])):
                by[(m["source"], m["split"])] = by.get((m["source"], m["split"]), 0) + 1
    return by, n_frames


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.speech_cache",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build or resume the cache")
    b.add_argument("--sources", default=",".join(SOURCES), help="comma list of %(default)s")
    b.add_argument("--tts-texts", type=int, default=12000, help="TTS texts (one voice each)")
    b.add_argument("--n-aug", type=int, default=1, help="augmented versions per training clip")
    b.add_argument("--workers", type=int, default=2, help="processes (one torch thread each)")
    b.add_argument("--chunk", type=int, default=200, help="clips per chunk file")
    b.add_argument("--out", type=Path, default=SPEECH_CACHE, help="cache folder")
    i = sub.add_parser("info", help="what the cache holds")
    i.add_argument("--out", type=Path, default=SPEECH_CACHE)
    args = ap.parse_args(argv)
    if args.cmd == "build":
        build(
            args.sources.split(","), args.tts_texts, args.n_aug, args.workers, args.chunk, args.out
        )
    else:
        by, n_frames = cache_summary(args.out)
        for (src, split), n in sorted(by.items()):
            print(f"{src:17s} {split:5s} {n:7d} samples")
        print(f"frames ({n_frames}, 384), {n_frames / 50 / 3600:.2f} h")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
