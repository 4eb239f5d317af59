"""The slot stage: Whisper's decoder reads an utterance, held to the phrasings of a few routes.

Why: the embedding decides WHICH route (in Qdrant); it cannot tell "twelve" from "twenty". Here
the decoder, fed the encoder frames the router already computed, may only follow the candidate
routes' own phrasings (voice_router.grammar): the best phrasing gives the route, every slot value
exactly, and a confidence (mean full-vocabulary log-probability per token). Speech that fits no
phrasing scores low and is "not understood" (Rhino's `understood: false`): no tool is called
rather than a wrong one. There is never a free transcript.

Search: Whisper's beam search (its end-of-text and length rule: hypotheses that end are
collected until `beam` have, and ranked by log-probability / length), with each hypothesis's
candidate tokens limited to those the grammar allows and scored with the FULL-vocabulary
log-softmax (renormalising over the allowed tokens makes forced continuations free and wrong
branches win).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from voice_router.grammar import (
    CharNFA,
    TokenMatcher,
    cached_compile_phrasings,
    tags_to_parse,
    token_trie,
)

if TYPE_CHECKING:
    from voice_router.model.whisper_decoder import WhisperDecoder, WhisperTokenizer
    from voice_router.routes import Route, RouteSet

DEFAULT_BEAM = 5
#: Mean log-probability per token below which a reading is "not understood": the lowest
#: threshold at which at most 1% of the dev-half negatives (real non-speech, read
#: speechocean762 sentences) were understood against the 35 imported Home Assistant intents
#: (benchmarks/slot_reader_eval.py; README, "The slot stage"). Right readings of real commands
#: score about -0.2 to -1.8, espeak-ng voices lower (-1 to -2.5), negatives -3.4 to -5.
DEFAULT_MIN_CONFIDENCE = -2.25
MAX_TOKENS = 64
#: A hypothesis whose mean log-probability per token falls below this (after PRUNE_AFTER
#: tokens) is dropped: no phrasing that bad ends up understood, and speech outside every
#: phrasing would otherwise be searched to MAX_TOKENS.
PRUNE_BELOW = -4.0
PRUNE_AFTER = 4
#: Whisper's no-speech probability (of <|nocaptions|> right after <|startoftranscript|>) at
#: or above which a reading heard no speech: no route, whatever the embedding decided, unless
#: a phrasing was understood. Real non-speech that Silero VAD lets through (insects, a toilet
#: flushing, snoring) scores 0.56-0.95 on the bundled tiny.en, multi-word commands mostly under
#: 0.5, single words higher (Speech Commands: 0.8% of its words reach 0.85, 2.6% reach 0.8).
#: Chosen on the FIT half of real non-speech and dev speech (benchmarks/gate_variants.py: the
#: fewest non-speech triggers through routes/home.yaml, 2 of 109 from 0.7 to 0.85, then the
#: fewest speech clips marked no speech); README, "The speech gate".
DEFAULT_MAX_NO_SPEECH = 0.85


@dataclass
class Reading:
    """What the constrained decoder heard.

    understood: a phrasing was found and its confidence >= the reader's minimum.
    route / slots: the phrasing's route and slot values (also when not understood, for
        debugging; never acted on then). text: the phrasing as the decoder wrote it.
    confidence: mean log-probability per token (end-of-text included), full vocabulary.
    no_speech: Whisper's no-speech probability of the utterance (None when the vocabulary
        has no such token). speech: False when it reached the reader's `max_no_speech`.
    """

    understood: bool
    route: str | None
    slots: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    confidence: float = float("-inf")
    candidates: list[str] = field(default_factory=list)
    latency_ms: float = 0.0
    no_speech: float | None = None
    speech: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "understood": self.understood,
            "route": self.route,
            "phrasing": self.text,
            "slots": dict(self.slots),
            "confidence": None if not np.isfinite(self.confidence) else round(self.confidence, 4),
            "candidates": list(self.candidates),
            "latency_ms": round(self.latency_ms, 3),
            "no_speech": None if self.no_speech is None else round(self.no_speech, 4),
            "speech": self.speech,
        }


@dataclass
class _Hyp:
    tokens: list[int]
    logp: float
    configs: frozenset
    after_punct: bool = False  # its text ends in punctuation (no second mark may follow)


def has_phrasings(route: Route) -> bool:
    """Routes the slot stage reads: those with `sentences:` (templates; their examples join
    them). Routes with a description and examples only keep the embedding decision."""
    return bool(route.sentences)


class SlotReader:
    """Reads utterances against a route set's phrasings with Whisper's decoder.

    Args:
        routes: the route set (its routes with `sentences:` are compiled, once, lazily).
        decoder / tokenizer: a `WhisperDecoder` and its `WhisperTokenizer` (None = the bundled
            tiny.en ones, loaded on first use).
        beam: beam width (1 = greedy).
        min_confidence: the "understood" threshold on mean log-probability per token.
        max_no_speech: Whisper's no-speech probability at or above which a reading heard no
            speech (`Reading.speech` False); 1.0 or more turns it off.
    """

    def __init__(
        self,
        routes: RouteSet,
        decoder: WhisperDecoder | None = None,
        tokenizer: WhisperTokenizer | None = None,
        *,
        beam: int = DEFAULT_BEAM,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        max_no_speech: float = DEFAULT_MAX_NO_SPEECH,
    ) -> None:
        if beam < 1:
            raise ValueError(f"beam must be >= 1, got {beam}")
        self.routes = routes
        self.beam = beam
        self.min_confidence = float(min_confidence)
        self.max_no_speech = float(max_no_speech)
        self._decoder = decoder
        self._tokenizer = tokenizer
        self._grammars: dict[str, CharNFA] = {}
        self._matchers: dict[tuple[str, ...], TokenMatcher] = {}
        self.readable = [r.name for r in routes.routes if has_phrasings(r)]

    # ---- parts ------------------------------------------------------------------------------

    @property
    def decoder(self) -> WhisperDecoder:
        """The decoder (loaded on first use)."""
        if self._decoder is None:
            from voice_router.model.whisper_decoder import WhisperDecoder

            self._decoder = WhisperDecoder.load()
        return self._decoder

    @property
    def tokenizer(self) -> WhisperTokenizer:
        """The tokenizer (loaded on first use)."""
        if self._tokenizer is None:
            from voice_router.model.whisper_decoder import WhisperTokenizer

            self._tokenizer = WhisperTokenizer()
        return self._tokenizer

    def _grammar(self, name: str) -> CharNFA:
        g = self._grammars.get(name)
        if g is None:
            r = self.routes.get(name)
            g = cached_compile_phrasings(r.sentences, r.examples, self.routes.lists, r.name)
            self._grammars[name] = g
        return g

    def matcher(self, names: Sequence[str]) -> TokenMatcher:
        """The token matcher over these routes' grammars (kept per set of routes)."""
        key = tuple(names)
        m = self._matchers.get(key)
        if m is None:
            m = TokenMatcher([self._grammar(n) for n in key], token_trie(self.tokenizer))
            if len(self._matchers) > 64:
                self._matchers.clear()
            self._matchers[key] = m
        return m

    # ---- reading ----------------------------------------------------------------------------

    def read(self, frames: np.ndarray, candidates: Sequence[str]) -> Reading:
        """The best phrasing of the `candidates` routes (those with phrasings) in `frames`
        (T', D) of one utterance."""
        t0 = time.perf_counter()
        names = [n for n in candidates if n in self.readable]
        if not names:
            return Reading(understood=False, route=None, candidates=list(candidates))
        matcher = self.matcher(names)
        tokens, logp, tags, no_speech = self._search(frames, matcher)
        route, slots = tags_to_parse(tags) if tags is not None else (None, {})
        conf = logp / max(len(tokens) + 1, 1) if tags is not None else logp
        return Reading(
            no_speech=no_speech,
            speech=no_speech is None or no_speech < self.max_no_speech,
            understood=tags is not None and conf >= self.min_confidence,
            route=route,
            slots=slots,
            text=self.tokenizer.decode(tokens).strip(),
            confidence=float(conf),
            candidates=names,
            latency_ms=(time.perf_counter() - t0) * 1e3,
        )

    def _search(
        self, frames: np.ndarray, matcher: TokenMatcher
    ) -> tuple[list[int], float, tuple | None, float | None]:
        """Constrained beam search -> (tokens, summed log-prob incl. end-of-text, tags of the
        path, Whisper's no-speech probability). When no phrasing was completed: ([], the best
        pruned mean log-prob, None, no-speech probability)."""
        dec, tok = self.decoder, self.tokenizer
        cross = dec.cross(frames)
        cache = None
        no_speech = None
        for t in tok.prompt:  # <|startoftranscript|> <|notimestamps|>, one step each
            lp, cache = dec.next_log_probs(np.array([[t]], dtype=np.int64), cross, cache)
            if t == tok.sot and tok.no_speech is not None:  # Whisper's no-speech probability
                no_speech = float(np.exp(lp[0, tok.no_speech]))
        live = [_Hyp([], 0.0, matcher.start())]  # hypothesis i is row i of lp and the cache
        finished: list[tuple[float, list[int], float, tuple]] = []  # (rank, tokens, logp, tags)
        best_pruned = float("-inf")  # mean log-prob of the best dropped hypothesis
        for _ in range(MAX_TOKENS):  # lp: (B, V) full-vocabulary log-probs of each live row
            # (logp, hyp index, token, configs after it, whether it ends in punctuation)
            cands: list[tuple[float, int, int, Any, bool]] = []
            for i, h in enumerate(live):
                ids, after, punct = matcher.allowed_arrays(h.configs, not h.tokens, h.after_punct)
                ends = matcher.accepting(h.configs)
                if ends:  # end-of-text competes with the other tokens, as in Whisper
                    ids, after, punct = np.append(ids, tok.eot), [*after, ends[0]], [*punct, False]
                scores = h.logp + lp[i, ids]  # (K,)
                keep = self.beam + 1  # Whisper considers beam + 1 tokens per hypothesis
                if len(ids) > keep:
                    top = np.argpartition(-scores, keep)[:keep]
                else:
                    top = np.arange(len(ids))
                cands += [(float(scores[j]), i, int(ids[j]), after[j], punct[j]) for j in top]
            cands.sort(key=lambda c: -c[0])
            nxt: list[_Hyp] = []
            parents: list[int] = []  # each survivor's hypothesis index = its cache row
            for score, i, t, cfg, ends_punct in cands:
                h = live[i]
                if t == tok.eot:
                    if len(finished) < self.beam:
                        n = len(h.tokens)
                        finished.append((score / max(n, 1), h.tokens, score, cfg))
                elif len(nxt) < self.beam:
                    n = len(h.tokens) + 1
                    if n >= PRUNE_AFTER and score / n < PRUNE_BELOW:
                        best_pruned = max(best_pruned, score / n)
                        continue
                    nxt.append(_Hyp(h.tokens + [t], score, cfg, ends_punct))
                    parents.append(i)
            if len(finished) >= self.beam or not nxt:
                break
            cache = cache.select(parents)
            live = nxt
            step = np.array([[h.tokens[-1]] for h in live], dtype=np.int64)  # (B, 1)
            lp, cache = dec.next_log_probs(step, cross, cache)
        if not finished:
            return [], best_pruned, None, no_speech
        finished.sort(key=lambda f: -f[0])
        _, tokens, logp, tags = finished[0]
        return tokens, logp, tags, no_speech
