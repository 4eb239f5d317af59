"""Contrastive losses of the recipe."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(
    audio: torch.Tensor, text: torch.Tensor, temperature: float | torch.Tensor = 0.05
) -> torch.Tensor:
    """Bidirectional InfoNCE over a batch of aligned pairs.

    Row i of `audio` and row i of `text` are a positive pair; every other row in the batch is a
    negative. `loss = (CE(sim, arange) + CE(sim.T, arange)) / 2` with
    `sim = audio @ text.T / temperature`: audio->text and text->audio retrieval, averaged.

    Args:
        audio: (B, D) L2-normalised audio embeddings.
        text: (B, D) L2-normalised text embeddings.
        temperature: softmax temperature (a float or a learnable scalar tensor).
    """
    sim = audio @ text.T / temperature  # (B, B)
    target = torch.arange(sim.shape[0], device=sim.device)  # (B,)
    return (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target)) / 2


def multi_positive_info_nce(
    query: torch.Tensor,
    keys: torch.Tensor,
    labels_q: torch.Tensor,
    labels_k: torch.Tensor,
    temperature: float | torch.Tensor = 0.05,
) -> torch.Tensor:
    """InfoNCE where several keys may share a query's label (e.g. many voices of one text).

    Each query's loss is -log(sum of softmax mass on keys with its label). Used for audio-audio
    contrast between voices of the same text, where in-batch duplicates are positives, not
    negatives.

    Args:
        query: (B, D) normalised; keys: (K, D) normalised; labels_q: (B,); labels_k: (K,).
    """
    sim = query @ keys.T / temperature  # (B, K)
    pos = labels_q[:, None] == labels_k[None, :]  # (B, K)
    log_all = torch.logsumexp(sim, dim=1)  # (B,)
    log_pos = torch.logsumexp(sim.masked_fill(~pos, float("-inf")), dim=1)  # (B,)
    valid = pos.any(dim=1)
    return (log_all - log_pos)[valid].mean()
