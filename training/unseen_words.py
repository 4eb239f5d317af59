"""The unseen-word protocol (issue #22, item 4): 500 English words no training sentence may hold.

Why: a head trained on a fixed text set can learn to map the sounds of ITS words and nothing
else. Routing sentences whose words the model never heard in training is the only way to show
that it hears words rather than its training vocabulary. So, before any corpus is built, a
seeded random draw sets aside 500 words, and every training text is checked against them (with
all their inflections) by `UnseenFilter`.

How the words are drawn (the file's header repeats it):
- Frequency: `wordfreq` (top_n_list("en"), its "best" list: a blend of subtitles, Wikipedia,
  books, web text, Twitter and Reddit). Entries that are not plain words (digits, "u.s",
  symbols) are skipped; a word's rank is its 1-based position among the rest.
- Candidates: ranks 2,000-20,000 inclusive, letters only, >= 3 letters, and the word is its own
  lemma as a NOUN or VERB in lemminflect's lexicon (lemminflect ships its lexicon in the wheel,
  MIT; nothing is downloaded). Words of the project's routing vocabulary
  (`training.texts.ESSENTIAL_WORDS` and its wake-like phrases: the words the short-word sources
  train on, the Speech Commands words among them) are not candidates, so the existing
  regression sets keep their training words.
- Draw: `random.Random(SEED).sample(candidates in rank order, 500)`, written sorted by rank.

No word is picked by hand. `python -m training.unseen_words build` rewrites the file;
`python -m training.unseen_words check` verifies the committed file equals a fresh draw.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
UNSEEN_FILE = DATA / "unseen_words.txt"
SEED = 22  # the number
N_WORDS = 500
RANK_LO, RANK_HI = 2000, 20000
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
_LETTERS = re.compile(r"[a-z]{3,}")


def frequency_list(n: int) -> list[str]:
    """The `n` most frequent English words by wordfreq, best first, plain words only
    (lower-case letters with inner apostrophes: "don't" stays, "1st", "u.s" and symbols go)."""
    from wordfreq import top_n_list

    k = 2 * n
    while True:
        words = [w for w in top_n_list("en", k) if _WORD.fullmatch(w)]
        if len(words) >= n or k > 50 * n:
            return words[:n]
        k *= 2


def protected_words() -> frozenset[str]:
    """Words never held out: the project's routing vocabulary (training/texts.py)."""
    from training.texts import _WAKE_LIKE, ESSENTIAL_WORDS

    return frozenset(ESSENTIAL_WORDS) | frozenset(w for t in _WAKE_LIKE for w in t.split())


def noun_verb_pos(word: str) -> str:
    """ "NOUN", "VERB", "NOUN+VERB" if `word` is its own lemma as such in lemminflect's lexicon,
    else ""."""
    from lemminflect import getAllLemmas

    lemmas = getAllLemmas(word)
    tags = [p for p in ("NOUN", "VERB") if word in lemmas.get(p, ())]
    return "+".join(tags)


def candidates(
    freq: list[str] | None = None,
    rank_lo: int = RANK_LO,
    rank_hi: int = RANK_HI,
    protected: frozenset[str] | None = None,
) -> list[tuple[int, str, str]]:
    """(rank, word, pos) of every eligible word, in rank order (see the module docstring)."""
    freq = freq if freq is not None else frequency_list(rank_hi)
    banned = protected_words() if protected is None else protected
    out = []
    for rank, w in enumerate(freq, start=1):
        if rank < rank_lo or rank > rank_hi or not _LETTERS.fullmatch(w) or w in banned:
            continue
        pos = noun_verb_pos(w)
        if pos:
            out.append((rank, w, pos))
    return out


def draw(
    cands: list[tuple[int, str, str]], n: int = N_WORDS, seed: int = SEED
) -> list[tuple[int, str, str]]:
    """`n` of `cands` drawn uniformly with `seed`, sorted by rank."""
    if len(cands) < n:
        raise ValueError(f"only {len(cands)} candidates for {n} words")
    return sorted(random.Random(seed).sample(cands, n))


def _versions() -> str:
    from importlib.metadata import version

    return f"wordfreq {version('wordfreq')}, lemminflect {version('lemminflect')}"


def render(words: list[tuple[int, str, str]], n_candidates: int) -> str:
    """The file text: a header saying how it was made, then `word<TAB>rank<TAB>pos` lines."""
    head = [
        "# Unseen-word protocol (issue #22): no training sentence may contain these words",
        "# or any of their inflections (training.unseen_words.UnseenFilter).",
        f"# Made by `python -m training.unseen_words build` with {_versions()}:",
        f"# wordfreq top_n_list('en') plain words, ranks {RANK_LO:,}-{RANK_HI:,}, letters only,",
        "# >= 3 letters, own lemma as NOUN or VERB in lemminflect's lexicon, not in",
        "# training.texts' routing vocabulary: "
        f"{n_candidates:,} candidates; random.Random({SEED}).sample(., {len(words)}),",
        "# sorted by rank. Not hand-picked. Columns: word, rank, pos.",
    ]
    return "\n".join(head + [f"{w}\t{r}\t{p}" for r, w, p in words]) + "\n"


def build(path: Path = UNSEEN_FILE) -> list[tuple[int, str, str]]:
    """Draw the words and write `path`."""
    cands = candidates()
    words = draw(cands)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(words, len(cands)))
    return words


def read_unseen_words(path: Path = UNSEEN_FILE) -> list[str]:
    """The held-out words of `path` (comment lines skipped), in file order."""
    out = []
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            out.append(line.split("\t")[0])
    return out


# ------------------------------------------------------------------ the filter


@lru_cache(maxsize=1 << 18)
def _lemmas(token: str) -> frozenset[str]:
    from lemminflect import getAllLemmas

    return frozenset(lem for lems in getAllLemmas(token).values() for lem in lems)


def inflections(word: str) -> frozenset[str]:
    """`word` and every inflected form lemminflect knows for it (all parts of speech), plus the
    regular noun and verb forms its rules give (so "lattes" is caught even where a word is not
    in the lexicon)."""
    from lemminflect import getAllInflections, getAllInflectionsOOV

    forms = {word}
    for fs in getAllInflections(word).values():
        forms.update(fs)
    for upos in ("NOUN", "VERB"):
        for fs in getAllInflectionsOOV(word, upos).values():
            forms.update(fs)
    return frozenset(f.lower() for f in forms)


def _variants(token: str) -> list[str]:
    """A token and its possessive/contraction-stripped forms ("latte's" -> "latte")."""
    out = [token]
    if "'" in token:
        out += [p for p in token.split("'") if p]
    return out


class UnseenFilter:
    """Tells whether a text contains a held-out word, in any inflection.

    A token hits when it (or its part before an apostrophe) is a form of a held-out word
    (`inflections`), or when lemminflect lists a held-out word among its lemmas ("mice" ->
    "mouse", "ran" -> "run"). Texts are normalised as training.texts.normalise does.
    """

    def __init__(self, words: Iterable[str]) -> None:
        self.words = frozenset(w.lower() for w in words)
        self.form_to_word: dict[str, str] = {}
        for w in sorted(self.words):
            for f in inflections(w):
                self.form_to_word.setdefault(f, w)

    def hits(self, text: str) -> list[str]:
        """The held-out words `text` contains (sorted, without repeats)."""
        from training.texts import normalise

        found: set[str] = set()
        for tok in normalise(text).split():
            for t in _variants(tok):
                w = self.form_to_word.get(t)
                if w is not None:
                    found.add(w)
                found.update(self.words & _lemmas(t))
        return sorted(found)

    def contains(self, text: str) -> bool:
        """True when `text` contains any held-out word."""
        return bool(self.hits(text))


def load_filter(path: Path = UNSEEN_FILE) -> UnseenFilter:
    """The filter for the committed held-out list."""
    return UnseenFilter(read_unseen_words(path))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.unseen_words",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("cmd", choices=("build", "check"))
    ap.add_argument("--out", type=Path, default=UNSEEN_FILE)
    args = ap.parse_args(argv)
    if args.cmd == "build":
        words = build(args.out)
        print(f"{len(words)} words -> {args.out}")
        return 0
    cands = candidates()
    want = render(draw(cands), len(cands))
    if args.out.read_text() != want:
        print(f"{args.out} differs from a fresh draw (versions: {_versions()})", file=sys.stderr)
        return 1
    print(f"{args.out}: equals a fresh draw ({len(cands):,} candidates)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
