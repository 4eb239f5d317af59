"""Route phrasings compiled into a token automaton over Whisper's BPE: texts the phrasings allow
(in any case, with or without punctuation, numbers as digits or words, optional and filler words)
are accepted token by token with their route and slot values; texts they do not allow are cut
off at the first token that leaves them; nothing is enumerated."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from voice_router.grammar import (
    CharNFA,
    TokenMatcher,
    build_trie,
    compile_phrasings,
    number_words,
    spoken_forms,
    tags_to_parse,
    token_trie,
)
from voice_router.model.whisper_decoder import WhisperTokenizer
from voice_router.routes import parse_routes

ROUTES = parse_routes("""\
lists:
  room: [kitchen, {in: living room, out: living_room}]
  minutes: {range: {from: 1, to: 90}}
  drink: [latte, mocha, {in: flat white, out: flat_white}]
routes:
  - name: lights_on
    description: turn the lights on
    sentences: ["(turn|switch) on [the] {room} light[s]"]
    examples: ["it's too dark in here"]
  - name: timer
    description: start a timer
    sentences: ["set a timer for {minutes} minutes", "(start|set) a {minutes} minute timer"]
  - name: order
    description: order a drink
    sentences: ["(can|could) I (have|get) a {drink} [please]"]
""")


@pytest.fixture(scope="module")
def tok() -> WhisperTokenizer:
    return WhisperTokenizer()


@pytest.fixture(scope="module")
def matcher(tok: WhisperTokenizer) -> TokenMatcher:
    grammars = [
        compile_phrasings(r.sentences, r.examples, ROUTES.lists, r.name) for r in ROUTES.routes
    ]
    return TokenMatcher(grammars, token_trie(tok))


def _parse(matcher: TokenMatcher, tok: WhisperTokenizer, text: str):
    """Feed `text`'s Whisper tokens; (route, slots) when it may end there, "cut" when a token
    is refused, "open" when it fits so far but may not end."""
    configs = matcher.start()
    for i, t in enumerate(tok.encode(text)):
        nxt = matcher.allowed(configs, i == 0)
        if t not in nxt:
            return "cut"
        configs = nxt[t]
    ends = matcher.accepting(configs)
    return tags_to_parse(ends[0]) if ends else "open"


@pytest.mark.parametrize(
    ("text", "route", "slots"),
    [
        (" Turn on the Living Room lights.", "lights_on", {"room": "living_room"}),
        (" switch on kitchen light", "lights_on", {"room": "kitchen"}),
        (" It's too dark in here.", "lights_on", {}),
        (" Set a timer for 12 minutes.", "timer", {"minutes": 12}),
        (" Set a timer for twelve minutes", "timer", {"minutes": 12}),
        (" set a timer for twenty-five minutes", "timer", {"minutes": 25}),
        (" Set a timer for twenty five minutes?", "timer", {"minutes": 25}),
        (" Start a 90 minute timer.", "timer", {"minutes": 90}),
        (" Could I get a flat white, please?", "order", {"drink": "flat_white"}),
        (" Um, can I have a mocha?", "order", {"drink": "mocha"}),
        ("Can I have a latte", "order", {"drink": "latte"}),  # no leading space
    ],
)
def test_allowed_texts_parse_to_their_route_and_slots(matcher, tok, text, route, slots):
    assert _parse(matcher, tok, text) == (route, slots)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (" Turn on the garage lights.", "cut"),  # not a listed room
        (" Set a timer for 91 minutes.", "cut"),  # outside the range
        (" Can I have a cappuccino?", "cut"),
        (" What's the weather like?", "cut"),
        (" Set a timer for", "open"),  # fits so far, may not end
        (" Turn on the the kitchen lights", "cut"),
    ],
)
def test_texts_outside_the_phrasings_are_refused(matcher, tok, text, why):
    assert _parse(matcher, tok, text) == why


def test_the_first_token_may_not_be_punctuation_and_specials_never_appear(matcher, tok):
    first = matcher.allowed(matcher.start(), True)
    assert first and all(t < tok.first_special for t in first)
    assert tok.encode(",")[0] not in first


def test_lists_are_not_enumerated():
    """Three lists of 100 values in one template: states grow with the sum, not the product
    (10^6 sentences)."""
    lists = {n: {"values": [{"in": f"{n}{i}", "out": i} for i in range(100)]} for n in "abc"}
    nfa = compile_phrasings(["{a} and {b} or {c}"], [], lists, "r", fillers=())
    assert len(nfa.edges) < 3 * 100 * 6 + 50


def test_number_words_cover_the_ways_numbers_are_written():
    assert number_words(7) == ["seven"]
    assert number_words(40) == ["forty"]
    assert number_words(25) == ["twenty five", "twenty-five"]
    assert "one hundred and five" in number_words(105)
    assert "a hundred and five" in number_words(105)
    assert number_words(2000) == ["two thousand"]
    assert spoken_forms("12", 12) == ["12", "twelve"]
    assert spoken_forms("kitchen", "kitchen") == ["kitchen"]


def test_matching_is_case_insensitive_over_a_small_trie():
    nfa = CharNFA()
    nfa.start = nfa.new()
    end = nfa.text(nfa.start, "ab c", (("route", "r", None),))
    nfa.accept = nfa.new()
    nfa.add(end, None, nfa.accept)
    trie = build_trie([(1, " A"), (2, "b"), (3, " c"), (4, "B C"), (5, "x")])
    m = TokenMatcher([nfa], trie)
    first = m.allowed(m.start(), True)
    assert set(first) == {1}  # " A"; "x" is refused, "B C" cannot start
    second = m.allowed(first[1], False)
    assert set(second) == {2, 4}  # "b", or "B C" (any tokenisation of the text is allowed)
    assert m.accepting(second[4]) == [(("route", "r", None),)]
    third = m.allowed(second[2], False)
    assert set(third) == {3}
    assert m.accepting(third[3]) == [(("route", "r", None),)]


def test_compiled_grammars_are_cached_and_read_back_without_hassil(tmp_path, monkeypatch):
    """A route's automaton is kept in the user cache folder: read back it equals the compiled
    one edge for edge, a warm process does not import hassil to get it, and a damaged file is
    compiled again."""
    import subprocess
    import sys

    from voice_router.grammar import cached_compile_phrasings

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("VOICE_ROUTER_TEMPLATE_CACHE", raising=False)
    for r in ROUTES.routes:
        fresh = compile_phrasings(r.sentences, r.examples, ROUTES.lists, r.name)
        for _ in range(2):  # compiled and written, then read back
            got = cached_compile_phrasings(r.sentences, r.examples, ROUTES.lists, r.name)
            assert (got.edges, got.start, got.accept) == (fresh.edges, fresh.start, fresh.accept)
    files = list((tmp_path / "voice-router" / "grammars").iterdir())
    assert len(files) == sum(1 for r in ROUTES.routes if r.sentences) >= 1
    code = (
        "import runpy, sys\n"
        "from voice_router.grammar import cached_compile_phrasings\n"
        f"ROUTES = runpy.run_path({__file__!r})['ROUTES']\n"
        "for m in [m for m in sys.modules if m.split('.')[0] == 'hassil']:\n"
        "    del sys.modules[m]  # (checking the routes' templates imported it)\n"
        "for r in ROUTES.routes:\n"
        "    cached_compile_phrasings(r.sentences, r.examples, ROUTES.lists, r.name)\n"
        "print('hassil' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=root, env=env, timeout=120)  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
    for f in files:
        f.write_text('{"start": 0, "edges": [[["a"')  # damaged
    r = next(r for r in ROUTES.routes if r.sentences)
    got = cached_compile_phrasings(r.sentences, r.examples, ROUTES.lists, r.name)
    fresh = compile_phrasings(r.sentences, r.examples, ROUTES.lists, r.name)
    assert got.edges == fresh.edges


def test_the_lazy_vocabulary_trie_holds_every_text_token(tok):
    """token_trie (lazy, from the tokenizer's table in key order) has exactly the nodes and
    ids an eager character trie of every text token has."""
    import sys

    def flat(node, prefix: str, out: dict) -> dict:
        if node.ids:
            out[prefix] = sorted(node.ids)
        for ch, child in node.children.items():
            flat(child, prefix + ch, out)
        return out

    expected: dict[str, list[int]] = {}
    for tid, text in tok.text_tokens():
        expected.setdefault(text.lower(), []).append(tid)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        got = flat(token_trie(tok), "", {})
        shuffled = flat(build_trie(list(reversed(tok.text_tokens()))), "", {})
    finally:
        sys.setrecursionlimit(limit)
    assert got == {k: sorted(v) for k, v in expected.items()} == shuffled
    assert len(got) > 39_000
