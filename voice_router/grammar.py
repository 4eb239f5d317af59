"""A route's phrasings as an automaton that Whisper's decoder can be held to, token by token.

Why: pooled embeddings do not separate "twelve" from "twenty" or "latte" from "mocha"; a decoder
that may only follow the route's own phrasings gets slot values exactly (as Picovoice Rhino and
Home Assistant's speech-to-phrase do), never a free transcript. Nothing is enumerated: a
template with three lists of 50 values is an automaton of a few thousand states, not 125,000
sentences.

Two layers:
- `compile_phrasings`: a route's `sentences:` (hassil templates over `lists:`) and `examples:` ->
  `CharNFA`, an automaton over lower-case characters whose edges may carry tags (the slot value
  a list value sets, the route). A space is its own symbol (`SP`), so "[the] " skipped or taken
  leaves one space between words either way. Range values can be said as digits or words
  ("12", "twelve", "twenty-five"/"twenty five").
- `TokenMatcher`: which Whisper BPE tokens may come next from a set of NFA configurations.
  Tokens are matched character by character through a trie of the vocabulary (case-folded), so
  every tokenisation of an allowed text is allowed, with spoken-form leniency: the leading
  space Whisper puts before its first word, sentence punctuation (, . ? ! ; :) after a word, and
  a hyphen wherever the phrasing has a space. Moves and allowed tokens are memoised per
  configuration set: the same grammar state recurs across hypotheses and utterances.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from voice_router.errors import RoutesError

if TYPE_CHECKING:
    from voice_router.model.whisper_decoder import WhisperTokenizer

SP = " "
"""The space symbol: one or more grammar spaces in a row match exactly one spoken space."""
PUNCTUATION = ",.?!;:"
"""Characters the decoder may write after a word without the phrasing having them."""
FILLERS = ("please", "um", "uh")
"""Optional words at the start and end of every phrasing (spoken, not meant)."""

Tag = tuple[str, str, Any]
"""("slot", name, value) or ("route", name, None): what taking an edge means."""


@dataclass
class CharNFA:
    """A character automaton: edges[state] = [(symbol or None for epsilon, dst, tags)]."""

    edges: list[list[tuple[str | None, int, tuple[Tag, ...]]]] = field(default_factory=list)
    start: int = 0
    accept: int = 0

    def new(self) -> int:
        """A new state's id."""
        self.edges.append([])
        return len(self.edges) - 1

    def add(self, src: int, sym: str | None, dst: int, tags: tuple[Tag, ...] = ()) -> None:
        """An edge src -(sym)-> dst; sym None is an epsilon."""
        self.edges[src].append((sym, dst, tags))

    def text(self, src: int, text: str, tags: tuple[Tag, ...] = ()) -> int:
        """A chain spelling `text` from src (spaces become SP, other whitespace too);
        returns its end state. `tags` go on the first edge."""
        cur = src
        for ch in _normalise(text):
            nxt = self.new()
            self.add(cur, SP if ch == " " else ch, nxt, tags)
            tags = ()
            cur = nxt
        if tags:  # empty text with tags: an epsilon carries them
            nxt = self.new()
            self.add(cur, None, nxt, tags)
            cur = nxt
        return cur


def _normalise(text: str) -> str:
    """Lower case, whitespace runs as one space; punctuation that the matcher treats as
    optional anyway (PUNCTUATION) is dropped so a template's "?" never becomes required."""
    out = []
    for ch in text.lower():
        if ch.isspace():
            if out and out[-1] != " ":
                out.append(" ")
            elif not out:
                out.append(" ")
        elif ch not in PUNCTUATION:
            out.append(ch)
    return "".join(out)


# --------------------------------------------------------------------------- numbers

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()  # fmt: skip
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> list[str]:
    """English ways to say a whole number 0-999,999 in words: "twenty five", "twenty-five",
    "one hundred and five", "a hundred and five" (each spelling once, most common first)."""
    if n < 0:
        return ["minus " + w for w in number_words(-n)]
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        t, o = divmod(n, 10)
        return [_TENS[t]] if o == 0 else [f"{_TENS[t]} {_ONES[o]}", f"{_TENS[t]}-{_ONES[o]}"]
    if n < 1000:
        h, rest = divmod(n, 100)
        heads = [f"{_ONES[h]} hundred"] + (["a hundred"] if h == 1 else [])
        if rest == 0:
            return heads
        tails = number_words(rest)
        return [f"{hd}{sep}{t}" for hd in heads for sep in (" and ", " ") for t in tails]
    if n < 1_000_000:
        k, rest = divmod(n, 1000)
        heads = [f"{w} thousand" for w in number_words(k)]
        if rest == 0:
            return heads
        return [f"{hd}{sep}{t}" for hd in heads[:1] for sep in (" and ", " ")
                for t in number_words(rest)]  # fmt: skip
    return [str(n)]


def spoken_forms(said: str, value: Any) -> list[str]:
    """How a list value may be written by the decoder: as given; a number also in words (and
    with thousands separators)."""
    forms = [said]
    numeric = isinstance(value, int) and not isinstance(value, bool)
    if numeric and said.strip().lstrip("-").isdigit():
        forms += number_words(value)
        if abs(value) >= 1000:
            forms.append(f"{value:,}")
    return list(dict.fromkeys(forms))


# --------------------------------------------------------------------------- compiling


def _build(nfa: CharNFA, expr: Any, src: int, lists: Mapping[str, list[tuple[str, Any]]]) -> int:
    """Add `expr` (a hassil expression) from state src; returns its end state."""
    from hassil.expression import Alternative, ListReference, Permutation, TextChunk
    from hassil.expression import Sequence as Seq

    if isinstance(expr, TextChunk):
        return nfa.text(src, expr.original_text)
    if isinstance(expr, ListReference):
        if expr.list_name not in lists:
            raise RoutesError(f"the list {{{expr.list_name}}} is not defined in `lists:`")
        end = nfa.new()
        for said, value in lists[expr.list_name]:
            tag: tuple[Tag, ...] = (("slot", expr.slot_name, value),)
            for form in spoken_forms(said, value):
                nfa.add(nfa.text(src, form, tag), None, end)
        return end
    if isinstance(expr, Alternative):
        end = nfa.new()
        for item in expr.items:
            nfa.add(_build(nfa, item, src, lists), None, end)
        if getattr(expr, "is_optional", False):
            nfa.add(src, None, end)
        return end
    if isinstance(expr, Permutation):
        import itertools

        end = nfa.new()
        for order in itertools.permutations(expr.items):
            cur = src
            for item in order:
                cur = _build(nfa, item, cur, lists)
                nxt = nfa.new()
                nfa.add(cur, SP, nxt)
                cur = nxt
            nfa.add(cur, None, end)
        return end
    if isinstance(expr, Seq):
        cur = src
        for item in expr.items:
            cur = _build(nfa, item, cur, lists)
        return cur
    raise RoutesError(f"unsupported template part {type(expr).__name__}")


def compile_phrasings(
    templates: Sequence[str],
    examples: Sequence[str],
    lists: Mapping[str, Any],
    route: str,
    fillers: Iterable[str] = FILLERS,
) -> CharNFA:
    """One route's phrasings as a `CharNFA` whose first edge tags ("route", route, None).

    `lists` is a routes file's validated `lists:` (values with in/out, or ranges). Each
    template and each example is a branch from the start; optional filler words may come
    before and after any of them."""
    from voice_router.templates import _parse, check_template, list_values

    values = {name: list_values(spec) for name, spec in lists.items()}
    nfa = CharNFA()
    nfa.start = nfa.new()
    body = nfa.new()
    nfa.add(nfa.start, None, body, (("route", route, None),))
    fill = list(fillers)
    pre = nfa.new()  # optional fillers before
    nfa.add(body, None, pre)
    for w in fill:
        nfa.add(nfa.text(nfa.text(body, w), " "), None, pre)
    after = nfa.new()
    for template in templates:
        check_template(template, lists)
        nfa.add(_build(nfa, _parse(template).expression, pre, values), None, after)
    for example in examples:
        nfa.add(nfa.text(pre, example), None, after)
    nfa.accept = nfa.new()
    nfa.add(after, None, nfa.accept)
    for w in fill:
        nfa.add(nfa.text(after, " " + w), None, nfa.accept)
    if not templates and not examples:
        raise RoutesError(f"route {route!r} has no sentences or examples to compile")
    return nfa


#: Bump when compiling changes what a grammar is: old cache files are then ignored.
GRAMMAR_CACHE_VERSION = "1"


def _grammar_cache_file(key_parts: list[Any]) -> Any:
    """Where a compiled grammar is kept (None: VOICE_ROUTER_TEMPLATE_CACHE=0, as phrasings)."""
    import hashlib
    import json
    import os
    from pathlib import Path

    if os.environ.get("VOICE_ROUTER_TEMPLATE_CACHE", "1") == "0":
        return None
    from platformdirs import user_cache_dir

    blob = json.dumps([GRAMMAR_CACHE_VERSION, *key_parts], sort_keys=True, default=repr)
    key = hashlib.sha256(blob.encode()).hexdigest()[:24]
    return Path(user_cache_dir("voice-router")) / "grammars" / f"{key}.json"


def cached_compile_phrasings(
    templates: Sequence[str],
    examples: Sequence[str],
    lists: Mapping[str, Any],
    route: str,
    fillers: Iterable[str] = FILLERS,
) -> CharNFA:
    """`compile_phrasings` through a JSON file in the user cache folder, keyed by everything
    it reads: parsing templates needs hassil, whose import took 0.03-0.09 s of every start
    that reads slots (unicode_rbnf and its number rules come with it); a warm start reads the
    automaton back instead (its tags' values are JSON scalars, checked on writing; a damaged
    file is compiled again)."""
    import json
    import os

    fill = list(fillers)
    if not templates:  # examples only: no hassil, nothing to save
        return compile_phrasings(templates, examples, lists, route, fill)
    path = _grammar_cache_file([list(templates), list(examples), lists, route, fill])
    if path is not None and path.is_file():
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            nfa = CharNFA(start=int(d["start"]), accept=int(d["accept"]))
            nfa.edges = [
                [(sym, int(dst), tuple((k, n, v) for k, n, v in tags)) for sym, dst, tags in row]
                for row in d["edges"]
            ]
            return nfa
        except (OSError, ValueError, TypeError, KeyError):
            pass
    nfa = compile_phrasings(templates, examples, lists, route, fill)
    scalars = all(
        v is None or type(v) in (str, int, float, bool)
        for row in nfa.edges for _, _, tags in row for _, _, v in tags
    )  # fmt: skip  # JSON gives these back as they were (a tuple would come back a list)
    if path is not None and scalars:
        try:
            text = json.dumps({"start": nfa.start, "accept": nfa.accept, "edges": nfa.edges},
                              allow_nan=False)  # fmt: skip
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        except (OSError, TypeError, ValueError):
            pass  # a value JSON cannot hold, or an unwritable folder: compiled every time
    return nfa


# --------------------------------------------------------------------------- matching

Config = tuple[int, int, tuple[Tag, ...]]
"""(grammar index, NFA state, tags so far): one way the text so far fits a grammar."""
_EMPTY: frozenset[Config] = frozenset()


class _Trie:
    """A node of the trie of Whisper's text tokens by their (case-folded) characters: the ids
    of the tokens that end here, and its children by next character.

    Lazy: a node is the range of the sorted keys that share its prefix, and its children are
    made on first use (one bisection per next character). The constrained walk visits only the
    prefixes some phrasing allows, a few thousand of the ~300,000 nodes a full trie has, so
    the trie costs one sort of the vocabulary (built eagerly it took 0.3 s of the first read
    of every process). A plain slotted class: many are made."""

    __slots__ = ("_children", "_depth", "_hi", "_keys", "_lo", "_tids", "ids")

    def __init__(self, keys: list[str], tids: list[int], lo: int, hi: int, depth: int) -> None:
        ids: list[int] = []
        while lo < hi and len(keys[lo]) == depth:  # sorted: the keys that end here come first
            ids.append(tids[lo])
            lo += 1
        self.ids = ids
        self._keys, self._tids, self._lo, self._hi, self._depth = keys, tids, lo, hi, depth
        self._children: dict[str, _Trie] | None = None

    @property
    def more(self) -> bool:
        """Whether some token continues past this node (it has children)."""
        return self._lo < self._hi

    @property
    def children(self) -> dict[str, _Trie]:
        """Next character -> node."""
        if self._children is None:
            from bisect import bisect_left

            keys, lo, hi, d = self._keys, self._lo, self._hi, self._depth
            out: dict[str, _Trie] = {}
            while lo < hi:
                ch = keys[lo][d]
                nxt = ord(ch) + 1
                end = hi if nxt > 0x10FFFF else bisect_left(keys, keys[lo][:d] + chr(nxt), lo, hi)
                out[ch] = _Trie(keys, self._tids, lo, end, d + 1)
                lo = end
            self._children = out
        return self._children


def build_trie(token_texts: Sequence[tuple[int, str]]) -> _Trie:
    """A character trie over (token id, decoded text) pairs, keys lower-cased (lazy: see
    `_Trie`)."""
    pairs = sorted((text.lower(), tid) for tid, text in token_texts if text)
    keys = [k for k, _ in pairs]
    tids = [t for _, t in pairs]
    return _Trie(keys, tids, 0, len(keys), 0)


class TokenMatcher:
    """Next allowed tokens of configuration sets over several route grammars.

    A configuration set is a frozenset of `Config`; `start()` gives the set before any token,
    `allowed(configs, first)` maps each allowed token id to the set after it
    (`allowed_arrays`: the same as arrays, memoised, what the search uses), and
    `accepting(configs)` lists the tags of every configuration that may end there."""

    def __init__(self, grammars: Sequence[CharNFA], trie: _Trie) -> None:
        self.grammars = list(grammars)
        self.trie = trie
        self._eps: dict[tuple[int, int], list[tuple[int, tuple[Tag, ...]]]] = {}
        self._move_cache: dict[frozenset[Config], Any] = {}
        self._array_cache: dict[tuple[frozenset[Config], bool, bool], Any] = {}

    def _closure(self, g: int, state: int) -> list[tuple[int, tuple[Tag, ...]]]:
        """States reachable from `state` by epsilons, with the tags picked up on the way."""
        key = (g, state)
        got = self._eps.get(key)
        if got is not None:
            return got
        edges = self.grammars[g].edges
        out, seen, stack = [], {state}, [(state, ())]
        while stack:
            s, tags = stack.pop()
            out.append((s, tags))
            for sym, dst, t in edges[s]:
                if sym is None and dst not in seen:
                    seen.add(dst)
                    stack.append((dst, tags + t))
        self._eps[key] = out
        return out

    def _sp_closure(self, configs: Iterable[Config]) -> set[Config]:
        """Configurations after zero or more grammar spaces (and epsilons)."""
        out: set[Config] = set()
        stack = list(configs)
        while stack:
            g, s, tags = stack.pop()
            for s2, t2 in self._closure(g, s):
                c = (g, s2, tags + t2)
                if c in out:
                    continue
                out.add(c)
                for sym, dst, t in self.grammars[g].edges[s2]:
                    if sym == SP:
                        stack.append((g, dst, tags + t2 + t))
        return out

    def start(self) -> frozenset[Config]:
        """Every grammar at its start state."""
        return frozenset((g, nfa.start, ()) for g, nfa in enumerate(self.grammars))

    def _moves(self, configs: frozenset[Config]) -> tuple[dict[str, frozenset[Config]], bool]:
        """(symbol -> configurations after it, whether some configuration may end here) of a
        configuration set: its epsilon closures walked once, so each character a token tries
        is a dict lookup (memoised per set)."""
        got = self._move_cache.get(configs)
        if got is not None:
            return got
        moves: dict[str, set[Config]] = {}
        ends = False
        for g, s, tags in configs:
            nfa = self.grammars[g]
            for s2, t2 in self._closure(g, s):
                ends |= s2 == nfa.accept
                for sym, dst, t in nfa.edges[s2]:
                    if sym is not None:
                        moves.setdefault(sym, set()).add((g, dst, tags + t2 + t))
        out = {sym: frozenset(c) for sym, c in moves.items()}
        if SP in out:  # one spoken space = one or more grammar spaces
            out[SP] = frozenset(self._sp_closure(out[SP]))
        if len(self._move_cache) > 200_000:
            self._move_cache.clear()
        self._move_cache[configs] = (out, ends)
        return out, ends

    def _step(
        self, configs: frozenset[Config], ch: str, first: bool, prev_punct: bool = False
    ) -> frozenset[Config]:
        """Configurations after reading `ch` (lower case). `first`: nothing read yet;
        `prev_punct`: the character before was punctuation (one mark per word boundary)."""
        if first and ch == " ":
            return configs  # Whisper's leading space before the first word
        moves, ends = self._moves(configs)
        if ch == " " or ch == "-":
            return moves.get(SP, _EMPTY)
        if ch in PUNCTUATION:
            if first or prev_punct:
                return _EMPTY
            # after a word, where the phrasing has a space or may end: the same configurations
            return configs if SP in moves or ends else _EMPTY
        return moves.get(ch, _EMPTY)

    def _walk(
        self, configs: frozenset[Config], first: bool, after_punct: bool
    ) -> dict[int, tuple[frozenset[Config], bool]]:
        """Token id -> (configurations after it, whether its text ends in punctuation), for
        every token that keeps some configuration alive: one pass down the vocabulary trie."""
        out: dict[int, tuple[frozenset[Config], bool]] = {}
        stack = [(self.trie, configs, first, after_punct)]
        while stack:
            node, cfg, fst, prev = stack.pop()
            for ch, child in node.children.items():
                nxt = self._step(cfg, ch, fst, prev)
                if not nxt:
                    continue
                punct = ch in PUNCTUATION
                for tid in child.ids:
                    out[tid] = (nxt, punct)
                if child.more:
                    stack.append((child, nxt, fst and ch == " ", punct))
        return out

    def allowed(
        self, configs: frozenset[Config], first: bool, after_punct: bool = False
    ) -> dict[int, frozenset[Config]]:
        """Token id -> configurations after it, for every token that keeps some configuration
        alive. `after_punct`: the text so far ends with punctuation (no second mark follows
        it)."""
        return {t: cfg for t, (cfg, _) in self._walk(configs, first, after_punct).items()}

    def allowed_arrays(
        self, configs: frozenset[Config], first: bool, after_punct: bool = False
    ) -> tuple[Any, list[frozenset[Config]], list[bool]]:
        """`allowed` as (token ids (K,) int64 array, configurations after each, whether each
        token ends in punctuation): what the search gathers log-probabilities with and carries
        to its next step (memoised per configuration set)."""
        import numpy as np

        key = (configs, first, after_punct)
        got = self._array_cache.get(key)
        if got is None:
            walk = self._walk(configs, first, after_punct)
            got = (
                np.fromiter(walk.keys(), np.int64, len(walk)),
                [cfg for cfg, _ in walk.values()],
                [punct for _, punct in walk.values()],
            )
            if len(self._array_cache) > 50_000:
                self._array_cache.clear()
            self._array_cache[key] = got
        return got

    def accepting(self, configs: frozenset[Config]) -> list[tuple[Tag, ...]]:
        """Tags of the configurations that may end here (trailing spaces allowed)."""
        out = []
        for g, s, tags in self._sp_closure(configs):
            if s == self.grammars[g].accept:
                out.append(tags)
        return out


def _token_texts(tok: WhisperTokenizer) -> list[tuple[int, str]]:
    """(id, text) of every whole-UTF-8 text token (`WhisperTokenizer.text_tokens`)."""
    return tok.text_tokens()


_TRIES: dict[str, _Trie] = {}


def token_trie(tok: WhisperTokenizer) -> _Trie:
    """The trie of a Whisper tokenizer's text tokens (built once per process and tokenizer
    file, from the tokenizer already loaded)."""
    key = str(tok.path)
    trie = _TRIES.get(key)
    if trie is None:
        ids, texts = tok.text_token_lists()  # in (lower-cased text, id) order already
        keys = [text.lower() for text in texts]
        if all(map(operator.le, keys, keys[1:])):  # 3 ms; sorting pairs again took 0.05-0.1 s
            trie = _Trie(keys, list(ids), 0, len(keys), 0)
        else:
            trie = build_trie(tok.text_tokens())
        _TRIES[key] = trie
    return trie


def tags_to_parse(tags: Sequence[Tag]) -> tuple[str | None, dict[str, Any]]:
    """(route, slots) that a path's tags say."""
    route, slots = None, {}
    for kind, name, value in tags:
        if kind == "route":
            route = name
        elif kind == "slot":
            slots[name] = value
    return route, slots
