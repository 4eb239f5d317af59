"""Fusion: the matrix form the router's oracle, eval and training probes use equals the
per-route form the router uses on each utterance."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voice_router.decision import Fusion
from voice_router.errors import VoiceRouterError

SPECS = ["weighted", "weighted:0.2,0.8", "weighted:1,0", "max", "text", "audio;k=5"]


@settings(max_examples=50, deadline=None)
@given(
    spec=st.sampled_from(SPECS),
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 5),
    r=st.integers(1, 6),
)
def test_combine_matrix_equals_combine_per_route(spec, seed, n, r):
    rng = np.random.default_rng(seed)
    text = rng.uniform(-1, 1, (n, r))
    audio = rng.uniform(-1, 1, (n, r))
    audio[:, rng.random(r) < 0.3] = np.nan  # routes without exemplars
    f = Fusion.parse(spec)
    got = f.combine_matrix(text, audio)
    for i in range(n):
        for j in range(r):
            a = None if np.isnan(audio[i, j]) else float(audio[i, j])
            assert got[i, j] == pytest.approx(f.combine(float(text[i, j]), a), abs=1e-12)


def test_without_exemplars_the_text_score_is_the_score():
    text = np.array([[0.3, 0.9]])
    np.testing.assert_allclose(Fusion.parse("audio").combine_matrix(text, None), text)


def test_bad_specs_say_what_to_write():
    with pytest.raises(VoiceRouterError, match="weighted:0.3,0.7"):
        Fusion.parse("weighted:a")
    with pytest.raises(VoiceRouterError, match="unknown fusion 'mean'"):
        Fusion.parse("mean")


def test_overrule_gives_the_slot_stage_the_last_word_on_routes_with_phrasings():
    from voice_router.decision import overrule

    readable = np.array([True, True, False])  # routes 0 and 1 have phrasings, 2 does not
    pred = np.array([0, 1, 2, -1, 0, -1])
    read = np.array([True, True, True, True, False, True])
    understood = np.array([1, -1, -1, 0, -1, -1])
    got = overrule(pred, read, understood, readable)
    # understood -> its route; not understood vetoes a readable route but not route 2;
    # an understood reading rescues a no-match; no reading -> the embedding decision
    assert got.tolist() == [1, -1, 2, 0, 0, -1]
    assert pred.tolist() == [0, 1, 2, -1, 0, -1]  # not modified in place


def test_a_reading_that_heard_no_speech_vetoes_every_route_unless_it_understood():
    from voice_router.decision import overrule

    readable = np.array([True, False])  # route 1 has no phrasings: only silence vetoes it
    pred = np.array([1, 1, 0, 1, 1])
    read = np.array([True, True, True, True, False])
    understood = np.array([-1, -1, 0, 0, -1])
    silent = np.array([True, False, True, True, True])
    got = overrule(pred, read, understood, readable, silent)
    # silent + not understood -> no route, even for route 1; not silent -> route 1 stands;
    # an understood phrasing wins over silence; no reading -> the embedding decision
    assert got.tolist() == [-1, 1, 0, 0, 1]
    assert overrule(pred, read, understood, readable).tolist() == [1, 1, 0, 0, 1]
