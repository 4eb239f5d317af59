"""Text-to-audio retrieval metrics of a model on captioned clips (`voice-router eval-search`):
each distinct caption is a text query whose relevant clips are the clips with that caption."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from voice_router.errors import AudioError, ManifestError
from voice_router.evaluate import ManifestRow, progress_bar, rounded
from voice_router.metrics import retrieval_metrics

if TYPE_CHECKING:
    from voice_router.model.base import EmbeddingModel

# --------------------------------------------------------------------------------------------
# Text-to-audio retrieval


def _caption(text: str) -> str:
    return " ".join(text.lower().split())


def caption_retrieval(
    model: EmbeddingModel, clip_vectors: np.ndarray, captions: Sequence[str]
) -> dict[str, Any]:
    """Text-to-audio retrieval metrics over clips with known captions.

    Each distinct non-empty caption (case- and space-insensitive) is one text query; its
    relevant clips are those with that caption; clips with an empty caption are distractors
    for text->audio and are not audio->text queries.

    Args:
        model: embeds the caption queries (`embed_text`).
        clip_vectors: (C, D) L2-normalised clip embeddings.
        captions: the C clips' captions.
    """
    norm = [_caption(c) for c in captions]
    queries = sorted({c for c in norm if c})
    if not queries:
        raise ManifestError("no clip has a non-empty caption: retrieval needs captioned clips")
    text_emb = np.asarray(model.embed_text(queries), dtype=np.float32)  # (Q, D)
    clips = np.asarray(clip_vectors, np.float32)  # (C, D)
    relevant = [{i for i, c in enumerate(norm) if c == q} for q in queries]
    metrics = retrieval_metrics(text_emb, clips, relevant)  # text->audio over every clip
    captioned = [i for i, c in enumerate(norm) if c]
    if len(captioned) < len(norm):  # audio->text only from clips that have a caption
        where = {i: j for j, i in enumerate(captioned)}
        sub = retrieval_metrics(
            text_emb, clips[captioned], [{where[i] for i in rel} for rel in relevant]
        )
        metrics.update({k: v for k, v in sub.items() if k.startswith("a2t_")})
    return {
        "n_clips": len(norm),
        "n_captioned_clips": len(captioned),
        "n_queries": len(queries),
        **{k: rounded(v) for k, v in metrics.items()},
    }


def search_report(
    model: EmbeddingModel,
    rows: Sequence[ManifestRow],
    *,
    column: str = "text",
    collection: Mapping[str, np.ndarray] | None = None,
    progress: bool = False,
    loader: Callable[[Path], np.ndarray] | None = None,
) -> dict[str, Any]:
    """cvR@5, R@1, R@10 (text->audio) and audio->text R@k for a manifest of captioned clips.

    Args:
        model: the embedding model.
        rows: manifest rows; the caption is the `text` (or `label`) column.
        column: "text" or "label".
        collection: vectors of a `search` collection by absolute file path (from
            `voice-router index-audio`). When given, the candidates are ALL the collection's
            clips (those not in the manifest act as distractors, as in a real search) and the
            manifest only supplies captions; no audio is decoded. Otherwise every manifest clip
            is decoded and embedded here.
        progress: show a progress bar on stderr.
        loader: decodes a clip path (default `load_audio` at the model's rate).
    """
    from voice_router.model.base import embed_audio_pooled

    unreadable: list[dict[str, str]] = []
    if collection is not None:
        paths = sorted(collection)
        where = {p: i for i, p in enumerate(paths)}
        captions = [""] * len(paths)
        missing = 0
        for row in rows:
            i = where.get(str(row.path.resolve()))
            if i is None:
                missing += 1
            else:
                captions[i] = row.text if column == "text" else row.label
        if not paths:
            raise ManifestError("the collection is empty: index audio into it first")
        vectors = np.stack([collection[p] for p in paths])  # (C, D)
        rep = caption_retrieval(model, vectors, captions)
        rep["manifest_rows_not_in_collection"] = missing
    else:
        if loader is None:
            from voice_router.audio.io import load_audio

            def loader(path: Path) -> np.ndarray:
                return load_audio(path, target_rate=model.sample_rate)

        vecs, captions = [], []
        for row in progress_bar(rows, progress, "embedding clips"):
            try:
                clip = loader(row.path)
            except AudioError as e:
                unreadable.append({"path": row.display, "error": str(e)})
                continue
            vecs.append(embed_audio_pooled(model, clip))  # (D,)
            captions.append(row.text if column == "text" else row.label)
        if not vecs:
            raise ManifestError("no clip of the manifest could be read")
        rep = caption_retrieval(model, np.stack(vecs), captions)  # (C, D)
    rep.update(caption_column=column, n_unreadable=len(unreadable), unreadable=unreadable)
    return rep
