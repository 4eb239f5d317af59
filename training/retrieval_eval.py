"""Retrieval evaluation: `python -m training eval --model DIR --data MANIFEST`.

cvR@k exactly as the seed and MTEB define it (voice_router.metrics.retrieval_metrics): for each
text query, 1 if ANY correct clip is among the top k clips by cosine similarity, averaged over
queries (text -> audio); plus R@1, R@10 and the audio -> text recalls. A clip with several
captions (Clotho: 5) is one candidate, correct for each of its captions.

Clips that fail to decode are counted (`bad_files`) and left out, with the captions that had
no other clip; the evaluation never crashes on a bad file. For text-pair data (the text-only
transfer) the same metrics are computed text -> paired text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training import data as D
from voice_router.errors import AudioError
from voice_router.metrics import retrieval_metrics
from voice_router.model.base import EmbeddingModel


def _embed_audio_batched(
    model: EmbeddingModel, audios: Sequence[np.ndarray], batch: int = 16
) -> np.ndarray:
    parts = [model.embed_audio(list(audios[i : i + batch])) for i in range(0, len(audios), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, model.dim), np.float32)


def evaluate_embedding_model(
    model: EmbeddingModel, pairs: Sequence[D.Pair], batch_size: int = 16
) -> dict[str, Any]:
    """cvR@5, R@1, R@10 (+ a2t_R@k) of any EmbeddingModel on evaluation pairs.

    Returns the metrics plus n_queries, n_clips and bad_files.
    """
    if pairs and all(p.audio is None for p in pairs):
        queries = [p.text for p in pairs]
        keys = sorted({p.text2 or "" for p in pairs})
        index = {k: i for i, k in enumerate(keys)}
        rel = [{index[p.text2 or ""]} for p in pairs]
        m = retrieval_metrics(model.embed_text(queries), model.embed_text(keys), rel)
        return {**m, "n_queries": len(queries), "n_clips": len(keys), "bad_files": 0}
    clips, texts, rel = D.relevance(pairs)
    decoded: list[np.ndarray] = []
    keep: dict[int, int] = {}
    bad = 0
    for i, path in enumerate(clips):
        try:
            decoded.append(D._decode(path))
        except (AudioError, OSError, ValueError, RuntimeError):
            bad += 1
            continue
        keep[i] = len(decoded) - 1
    q_texts, q_rel = [], []
    for t, r in zip(texts, rel, strict=True):
        kept = {keep[c] for c in r if c in keep}
        if kept:
            q_texts.append(t)
            q_rel.append(kept)
    if not q_texts:
        raise D.DataError("no evaluation clip could be decoded; check the manifest paths.")
    audio_emb = _embed_audio_batched(model, decoded, batch_size)  # (C, D)
    text_emb = model.embed_text(q_texts)  # (Q, D)
    m = retrieval_metrics(text_emb, audio_emb, q_rel)
    return {**m, "n_queries": len(q_texts), "n_clips": len(decoded), "bad_files": bad}


def run_eval(
    model: str,
    data: str,
    fmt: str | None = None,
    split: str | None = None,
    out: str | None = None,
) -> dict[str, Any]:
    """Load `model` (`voice_router.model.loader.load_model`: folder, "tiny", ...), evaluate it.

    `data` is a generic CSV/JSONL manifest, or a dataset root with `fmt` (audiocaps, clotho,
    ...) and `split`. Writes the metrics as JSON to `out` when given.
    """
    from training import towers  # noqa: F401 - a trained folder may name the hub towers
    from voice_router.model.loader import load_model

    fmt = fmt or ("jsonl" if data.endswith(".jsonl") else "csv")
    spec: dict[str, Any] = {"format": fmt, "path": data}
    if split:
        spec["split"] = split
    pairs, stats = D.read_source(spec)
    result = evaluate_embedding_model(load_model(model), pairs)
    result["missing_files"] = stats.missing
    if out:
        Path(out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result
