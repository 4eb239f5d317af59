"""The unseen-word protocol (training/unseen_words.py): the draw, the committed list, the filter."""

from __future__ import annotations

import pytest

pytest.importorskip("lemminflect")

from training import unseen_words as uw  # noqa: E402


def test_draw_is_seeded_sorted_and_a_subset():
    cands = [(r, f"w{r}", "NOUN") for r in range(100, 400)]
    a = uw.draw(cands, n=50, seed=7)
    assert a == uw.draw(cands, n=50, seed=7)
    assert a != uw.draw(cands, n=50, seed=8)
    assert a == sorted(a) and len({w for _, w, _ in a}) == 50
    assert set(a) <= set(cands)
    with pytest.raises(ValueError):
        uw.draw(cands[:10], n=50)


def test_candidates_keep_rank_window_nouns_and_verbs_and_skip_protected():
    freq = ["the", "of", "table", "run", "quickly", "beautiful", "x1", "ab", "garden", "door"]
    got = uw.candidates(freq, rank_lo=3, rank_hi=9, protected=frozenset({"door", "garden"}))
    words = [w for _, w, _ in got]
    # "the"/"of" are outside the window, "quickly"/"beautiful" are neither noun nor verb,
    # "x1" is not letters, "ab" has < 3 letters, "garden" is protected, "door" past rank 9
    assert words == ["table", "run"]
    assert [r for r, _, _ in got] == [3, 4]
    assert "VERB" in dict((w, p) for _, w, p in got)["run"]


def test_filter_catches_inflections_and_lemmas():
    f = uw.UnseenFilter(["mouse", "run", "latte", "leaf"])
    assert f.hits("Two MICE ran home") == ["mouse", "run"]
    assert f.contains("she is running late")
    assert f.contains("the latte's foam") and f.contains("two lattes please")
    assert f.contains("the leaves fell")
    assert not f.contains("the ruin of the house")
    assert not f.contains("a morning walk")


@pytest.fixture(scope="module")
def committed() -> list[str]:
    return uw.read_unseen_words()


def test_committed_list_is_500_distinct_words_in_the_window(committed):
    assert len(committed) == uw.N_WORDS == len(set(committed))
    rows = [
        line.split("\t")
        for line in uw.UNSEEN_FILE.read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert all(uw.RANK_LO <= int(r[1]) <= uw.RANK_HI for r in rows)
    assert not set(committed) & uw.protected_words()


def test_committed_list_equals_a_fresh_draw(committed):
    pytest.importorskip("wordfreq")
    cands = uw.candidates()
    assert uw.UNSEEN_FILE.read_text() == uw.render(uw.draw(cands), len(cands))
