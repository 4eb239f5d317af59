"""cvR@k and R@k from voice_router.metrics against cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from voice_router.metrics import recall_at_k, retrieval_metrics


def test_recall_hand_computed() -> None:
    # 3 text queries x 4 clips. Rankings (best first):
    # q0: c2 c0 c1 c3  relevant {0}   -> rank 2
    # q1: c3 c1 c2 c0  relevant {0}   -> rank 4
    # q2: c1 c3 c0 c2  relevant {1}   -> rank 1
    sim = np.array(
        [
            [0.8, 0.1, 0.9, 0.0],
            [0.1, 0.5, 0.3, 0.9],
            [0.3, 0.9, 0.1, 0.4],
        ]
    )
    got = recall_at_k(sim, [{0}, {0}, {1}], ks=(1, 2, 3, 4))
    assert got == {
        1: pytest.approx(1 / 3),
        2: pytest.approx(2 / 3),
        3: pytest.approx(2 / 3),
        4: pytest.approx(1.0),
    }


def test_any_relevant_clip_counts_and_empty_query_is_miss() -> None:
    # cvR@k: 1 if ANY correct clip is in the top k.
    sim = np.array([[0.9, 0.8, 0.1], [0.2, 0.1, 0.3]])
    got = recall_at_k(sim, [{1, 2}, set()], ks=(1, 2))
    # q0 ranks c0, c1, c2: c1 at rank 2 -> miss@1, hit@2; q1 has nothing relevant: always a miss
    assert got == {1: 0.0, 2: 0.5}


def test_ties_broken_by_index() -> None:
    sim = np.array([[0.5, 0.5, 0.5]])
    assert recall_at_k(sim, [{0}], ks=(1,)) == {1: 1.0}
    assert recall_at_k(sim, [{2}], ks=(1, 2)) == {1: 0.0, 2: 0.0}


def test_retrieval_metrics_both_directions() -> None:
    # Two clips; captions 0,1 describe clip 0, caption 2 describes clip 1 (Clotho-style).
    audio = np.eye(2)
    text = np.array([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6]])
    m = retrieval_metrics(text, audio, [{0}, {0}, {1}])
    # text->audio: t0 -> c0 (hit); t1 sims (0.6, 0.8) -> c1 first (miss@1); t2 (0.8, 0.6) -> miss@1
    assert m["R@1"] == pytest.approx(1 / 3)
    assert m["cvR@5"] == 1.0 and m["R@10"] == 1.0  # only 2 clips: everything in the top 5
    # audio->text: c0 sims over texts (1.0, 0.6, 0.8) -> t0 first (hit);
    # c1 sims (0.0, 0.8, 0.6) -> t1 first, but c1's caption is t2 -> miss@1, hit@5
    assert m["a2t_R@1"] == pytest.approx(0.5)
    assert m["a2t_R@5"] == 1.0


def test_relevance_matrix_shape_checked() -> None:
    with pytest.raises(ValueError):
        recall_at_k(np.zeros((2, 3)), np.zeros((3, 2), dtype=bool))
