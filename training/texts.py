"""Text side of the synthetic corpus: what the synthetic voices say.

Why: the compact model learns to put spoken audio next to the text that was said. The texts
must cover (a) whole commands as people phrase them (SLURP, HWU64, CLINC150, Home Assistant
tests), (b) short words and phrases, because routes are often one or two words ("stop",
"lights on"), and (c) minimal pairs that differ in one word ("turn on"/"turn off"), so the
model learns that small words matter.

Real recordings in ../shared/data are NEVER used here: they are for evaluation only. Whole
texts are held out for validation (`split == "val"`), chosen by a hash of the text so the split
is stable when the text list grows.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = (
    Path(
        os.environ.get("VR_DATA", Path(__file__).resolve().parent.parent.parent / "shared" / "data")
    )
    / "text_intents"
)
MAX_WORDS = 12

#: Words that routes are made of, spoken by many voices each. Includes the opposites whose
#: confusion the untrained model showed (yes/no, up/down, left/right, on/off, stop/go).
ESSENTIAL_WORDS: tuple[str, ...] = tuple(
    """yes no up down left right on off stop go start pause play next previous back forward
    open close lock unlock louder quieter mute unmute cancel confirm help repeat again skip
    zero one two three four five six seven eight nine ten eleven twelve twenty thirty fifty
    hundred thousand first second third half quarter bed bird cat dog happy house marvin sheila
    tree wow learn follow visual backward alexa computer jarvis siri assistant hello hi hey
    goodbye thanks okay sure maybe never always enable disable increase decrease raise lower
    brighter dimmer warmer cooler faster slower bigger smaller more less light lights music
    volume timer alarm weather time temperature kitchen bedroom garage door window fan heater
    red green blue yellow white orange purple pink""".split()
)

#: Opposite pairs used to make minimal-pair texts.
OPPOSITES: tuple[tuple[str, str], ...] = (
    ("on", "off"),
    ("up", "down"),
    ("left", "right"),
    ("yes", "no"),
    ("start", "stop"),
    ("open", "close"),
    ("lock", "unlock"),
    ("increase", "decrease"),
    ("raise", "lower"),
    ("next", "previous"),
    ("play", "pause"),
    ("enable", "disable"),
    ("louder", "quieter"),
    ("brighter", "dimmer"),
    ("warmer", "cooler"),
    ("mute", "unmute"),
    ("hot", "cold"),
    ("show", "hide"),
)

_DEVICES = (
    "light",
    "lights",
    "kitchen light",
    "bedroom lights",
    "living room lights",
    "fan",
    "heater",
    "tv",
    "radio",
    "music",
    "garage door",
    "front door",
    "alarm",
    "coffee machine",
    "air conditioning",
    "porch light",
)

_TEMPLATES = (
    "turn {a} the {d}",
    "switch {a} the {d}",
    "{d} {a}",
    "turn the {d} {a}",
)

_WAKE_LIKE = (
    "hey computer",
    "ok computer",
    "hey jarvis",
    "hey alexa",
    "hey siri",
    "ok google",
    "hey google",
    "hey mycroft",
    "hey assistant",
    "wake up",
    "go to sleep",
    "what time is it",
    "what is the temperature",
    "set a timer",
    "turn on the lights",
    "turn off the lights",
)


@dataclass(frozen=True)
class TextItem:
    """One corpus text: normalised text, its kind, an intent label (or ""), and split."""

    text: str
    kind: str  # "command" | "ngram" | "essential" | "pair"
    intent: str
    split: str  # "train" | "val"

    @property
    def text_id(self) -> str:
        """Stable id of the text (first 12 hex chars of its sha1)."""
        return hashlib.sha1(self.text.encode()).hexdigest()[:12]


_KEEP = re.compile(r"[^a-z0-9' ]+")


def normalise(text: str) -> str:
    """Lower-case, drop punctuation except apostrophes, collapse spaces."""
    text = text.lower().replace("&", " and ")
    text = _KEEP.sub(" ", text)
    return " ".join(w.strip("'") for w in text.split() if w.strip("'"))


def _stable_unit(text: str, salt: str) -> float:
    """A deterministic number in [0, 1) from `text` (for splits and sampling)."""
    h = hashlib.sha1((salt + text).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def read_command_texts(data_dir: Path = DATA_DIR) -> list[tuple[str, str]]:
    """(text, intent) rows from SLURP, HWU64, CLINC150 and Home Assistant tests, normalised,
    deduplicated (first intent wins), 1..MAX_WORDS words. Out-of-scope CLINC rows are dropped."""
    sources = (
        ("slurp_text.csv", "slurp"),
        ("hwu64.csv", "hwu64"),
        ("clinc150.csv", "clinc150"),
        ("home_assistant_tests_en.csv", "ha"),
    )
    seen: dict[str, str] = {}
    for name, tag in sources:
        path = data_dir / name
        if not path.exists():
            continue
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                intent = (row.get("intent") or "").strip()
                if intent == "oos":
                    continue
                text = normalise(row.get("text") or "")
                n = len(text.split())
                if 1 <= n <= MAX_WORDS and text not in seen:
                    seen[text] = f"{tag}:{intent}"
    return sorted(seen.items())


def ngrams(texts: list[str], n: int, top: int, min_count: int = 2) -> list[str]:
    """The `top` most frequent n-word sequences of `texts` (ties broken alphabetically)."""
    counts: Counter[str] = Counter()
    for t in texts:
        w = t.split()
        for i in range(len(w) - n + 1):
            counts[" ".join(w[i : i + n])] += 1
    items = sorted(((-c, g) for g, c in counts.items() if c >= min_count))
    return [g for _, g in items[:top]]


def minimal_pair_texts() -> list[tuple[str, str]]:
    """(text, group) for templated commands that differ in one word, e.g. "turn on the fan" /
    "turn off the fan" share group "turn _ the fan". Groups let the trainer put both in a batch."""
    out: list[tuple[str, str]] = []
    for a, b in (("on", "off"),):
        for d in _DEVICES:
            for tpl in _TEMPLATES:
                group = tpl.format(a="_", d=d)
                out += [(tpl.format(a=a, d=d), group), (tpl.format(a=b, d=d), group)]
    for a, b in OPPOSITES:
        for tpl in ("{a}", "{a} please", "go {a}", "turn it {a}", "move {a}", "volume {a}"):
            group = f"{tpl.format(a='_')} ({a}/{b})"
            out += [(tpl.format(a=a), group), (tpl.format(a=b), group)]
    seen: set[str] = set()
    uniq = []
    for t, g in out:
        if t not in seen:
            seen.add(t)
            uniq.append((t, g))
    return uniq


def swap_opposite(text: str) -> str | None:
    """`text` with its first opposite word swapped ("turn on x" -> "turn off x"), else None."""
    words = text.split()
    table = {a: b for a, b in OPPOSITES} | {b: a for a, b in OPPOSITES}
    for i, w in enumerate(words):
        if w in table:
            return " ".join(words[:i] + [table[w]] + words[i + 1 :])
    return None


def build_text_items(
    *,
    n_commands: int = 7000,
    n_unigrams: int = 2500,
    n_bigrams: int = 1500,
    n_trigrams: int = 1000,
    val_fraction: float = 0.06,
    data_dir: Path = DATA_DIR,
) -> list[TextItem]:
    """The corpus texts, deterministic for given arguments.

    Commands are sampled by a stable hash (so a larger `n_commands` is a superset). Each command
    that contains an opposite word also gets its swapped twin (a hard negative). Essential words
    and minimal-pair templates are always train (routes use them); commands and n-grams are
    split train/val by a hash of the text.
    """
    rows = read_command_texts(data_dir)
    cmd_texts = [t for t, _ in rows]
    ranked = sorted(rows, key=lambda r: _stable_unit(r[0], "cmd"))[:n_commands]
    items: dict[str, TextItem] = {}

    def add(text: str, kind: str, intent: str, split: str | None = None) -> None:
        text = normalise(text)
        if not text or text in items:
            return
        if split is None:
            split = "val" if _stable_unit(text, "split") < val_fraction else "train"
        items[text] = TextItem(text, kind, intent, split)

    for w in ESSENTIAL_WORDS:
        add(w, "essential", "", "train")
    for t in _WAKE_LIKE:
        add(t, "essential", "", "train")
    for t, g in minimal_pair_texts():
        add(t, "pair", f"pair:{g}", "train")
    for t, intent in ranked:
        add(t, "command", intent)
        twin = swap_opposite(t)
        if twin is not None and twin not in items:
            # the twin shares the original's split so a val text never has a train twin
            add(twin, "pair", f"pair:{t}", items[t].split if t in items else None)
    for n, top in ((1, n_unigrams), (2, n_bigrams), (3, n_trigrams)):
        for g in ngrams(cmd_texts, n, top):
            add(g, "ngram", "")
    return list(items.values())
