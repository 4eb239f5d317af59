"""Retrieval metrics shared by `voice-router eval`, the search evaluation and `training/`.

cvR@k (as in the seed paper and MTEB's audio retrieval): for each text query, 1 if ANY audio
clip relevant to it is among the top k clips by cosine similarity, averaged over queries.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def recall_at_k(
    sim: np.ndarray, relevant: Sequence[set[int]] | np.ndarray, ks: Sequence[int] = (1, 5, 10)
) -> dict[int, float]:
    """Recall@k for a query x candidate similarity matrix.

    Args:
        sim: (Q, C) similarities, higher is better.
        relevant: for each query, the set of candidate indices that count as correct; or a
            (Q, C) boolean matrix.
        ks: cut-offs.

    Returns:
        {k: fraction of queries with at least one relevant candidate in their top k}.
        Queries with no relevant candidate count as misses.
    """
    sim = np.asarray(sim, dtype=np.float64)
    q, c = sim.shape
    if isinstance(relevant, np.ndarray):
        rel = relevant.astype(bool)
    else:
        rel = np.zeros((q, c), dtype=bool)
        for i, s in enumerate(relevant):
            rel[i, list(s)] = True
    if rel.shape != (q, c):
        raise ValueError(f"relevant has shape {rel.shape}, expected {(q, c)}")
    # Stable ranking; ties broken by candidate index so results are deterministic.
    order = np.argsort(-sim, axis=1, kind="stable")  # (Q, C)
    hits = np.take_along_axis(rel, order, axis=1)  # (Q, C) relevance in rank order
    out: dict[int, float] = {}
    for k in ks:
        out[k] = float(hits[:, : min(k, c)].any(axis=1).mean()) if q else 0.0
    return out


def retrieval_metrics(
    text_emb: np.ndarray, audio_emb: np.ndarray, text_to_audio: Sequence[set[int]]
) -> dict[str, float]:
    """cvR@5, R@1, R@10 (text->audio) and the audio->text R@1/R@5/R@10.

    Args:
        text_emb: (Q, D) L2-normalised caption embeddings.
        audio_emb: (C, D) L2-normalised clip embeddings.
        text_to_audio: for each caption, the indices of its correct clips.
    """
    sim = text_emb @ audio_emb.T  # (Q, C)
    t2a = recall_at_k(sim, text_to_audio, (1, 5, 10))
    a2t_rel: list[set[int]] = [set() for _ in range(audio_emb.shape[0])]
    for qi, clips in enumerate(text_to_audio):
        for ci in clips:
            a2t_rel[ci].add(qi)
    a2t = recall_at_k(sim.T, a2t_rel, (1, 5, 10))
    return {
        "cvR@5": t2a[5],
        "R@1": t2a[1],
        "R@10": t2a[10],
        "a2t_R@1": a2t[1],
        "a2t_R@5": a2t[5],
        "a2t_R@10": a2t[10],
    }
