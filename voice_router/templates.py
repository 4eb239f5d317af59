"""Sentence templates in Home Assistant's hassil syntax, expanded into a bounded set of phrasings.

A route may give `sentences:` such as `(turn|switch) on [the] {area} lights`: `(a|b)`
alternatives, `[optional]` words, `{list}` references to the route set's `lists:` (values with
`in` (what is said) and `out` (the value), or a numeric range). hassil parses every template;
this module walks hassil's expression tree to produce phrasings together with the slot values
they carry.

A template with several slots has a product of values (`{area}` x `{device}` x `{minutes}`:
thousands of sentences), so it is never enumerated. Expansion is one slot at a time:
- carriers: every slot at its first value, alternatives and optionals expanded;
- for each slot: the slot through all its values, every other slot at its first value.
So the phrasings grow with the SUM of the list sizes, not their product, and each phrasing says
which slot it varies (`varies`), which is what scoring a slot's value separately needs. A slot's
pass first sweeps every value of its list (up to MAX_SWEEP) in the template's first wording,
then adds other wordings (alternatives, optionals) up to MAX_PER_PASS phrasings; the carrier
pass is capped at MAX_PER_PASS too.

hassil is imported only when a route set has templates (its import costs ~0.2 s).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from voice_router.errors import RoutesError

MAX_PER_PASS = 48
"""Phrasings per expansion pass of one template, besides a slot's sweep of its values."""
MAX_SWEEP = 500
"""Most values of one list swept per template (longer lists are cut, with the first values)."""
MAX_ROUTE_PHRASINGS = 400
"""Most phrasings one route's templates give (in priority order: see `expand_templates`)."""

__all__ = [
    "MAX_PER_PASS",
    "Phrasing",
    "cached_phrasings",
    "check_template",
    "expand_templates",
    "list_values",
    "phrasings",
]


@dataclass(frozen=True)
class Phrasing:
    """One expanded sentence: its text, the slot values it carries and the slot it varies."""

    text: str
    slots: dict[str, Any] = field(default_factory=dict)
    varies: str = ""  # the list this phrasing's pass varies; "" for a carrier


def _parse(template: str) -> Any:
    from hassil import parse_sentence

    try:
        return parse_sentence(template)
    except Exception as e:  # noqa: BLE001 - hassil raises several parse error types
        raise RoutesError(f"template {template!r} does not parse: {e}") from None


def check_template(template: str, lists: Mapping[str, Any]) -> None:
    """RoutesError when `template` does not parse or names a list that `lists` lacks."""
    from hassil.expression import ListReference, RuleReference

    sentence = _parse(template)
    for node in _walk(sentence.expression):
        if isinstance(node, ListReference) and node.list_name not in lists:
            known = ", ".join(sorted(lists)) or "none"
            raise RoutesError(
                f"template {template!r} uses {{{node.list_name}}}, which `lists:` does not "
                f"define (lists: {known})"
            )
        if isinstance(node, RuleReference):
            raise RoutesError(
                f"template {template!r} uses the rule <{node.rule_name}>: expansion rules are not "
                "supported; write the alternatives out"
            )


def template_slots(templates: Sequence[str]) -> dict[str, str]:
    """Slot name -> list name of every `{list}` (or `{list:slot}`) reference in `templates`, in
    order of first use: what a route's tool can receive as arguments."""
    from hassil.expression import ListReference

    out: dict[str, str] = {}
    for template in templates:
        for node in _walk(_parse(template).expression):
            if isinstance(node, ListReference):
                out.setdefault(node.slot_name, node.list_name)
    return out


def _walk(expr: Any) -> Iterator[Any]:
    yield expr
    for item in getattr(expr, "items", ()) or ():
        yield from _walk(item)


def list_values(spec: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(spoken text, value) of a validated list spec (`values` or `range`)."""
    if "range" in spec:
        r = spec["range"]
        return [(str(n), n) for n in range(r["from"], r["to"] + 1, r.get("step", 1))]
    return [(v["in"], v["out"]) for v in spec["values"]]


def _expand(
    expr: Any, lists: Mapping[str, list[tuple[str, Any]]], varying: str | None, first: bool = False
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(text, slots) of `expr`; lists other than `varying` take their first value only, and with
    `first` every alternative and optional takes its first wording."""
    from hassil.expression import (
        Alternative,
        ListReference,
        Permutation,
        TextChunk,
    )
    from hassil.expression import (
        Sequence as Seq,
    )

    if isinstance(expr, TextChunk):
        yield expr.original_text, {}
    elif isinstance(expr, ListReference):
        values = lists[expr.list_name]
        slot = expr.slot_name
        for said, value in values if expr.list_name == varying else values[:1]:
            yield said, {slot: value}
    elif isinstance(expr, Alternative):
        for item in expr.items[:1] if first else expr.items:
            yield from _expand(item, lists, varying, first)
    elif isinstance(expr, Permutation):
        orders = itertools.permutations(expr.items)
        for order in itertools.islice(orders, 1) if first else orders:
            yield from _product(order, lists, varying, " ", first)
    elif isinstance(expr, Seq):
        yield from _product(expr.items, lists, varying, "", first)
    else:  # a rule reference: refused by check_template
        raise RoutesError(f"unsupported template part {type(expr).__name__}")


def _product(
    items: Sequence[Any],
    lists: Mapping[str, list[tuple[str, Any]]],
    varying: str | None,
    sep: str,
    first: bool,
) -> Iterator[tuple[str, dict[str, Any]]]:
    cap = MAX_SWEEP if first else MAX_PER_PASS
    parts = [list(itertools.islice(_expand(i, lists, varying, first), cap)) for i in items]
    for combo in itertools.product(*parts):
        slots: dict[str, Any] = {}
        for _, s in combo:
            slots.update(s)
        yield sep.join(text for text, _ in combo), slots


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _run(
    expr: Any, values: Mapping[str, list[tuple[str, Any]]], varying: str | None, first: bool,
    cap: int,
) -> list[Phrasing]:  # fmt: skip
    """One expansion pass of a parsed template (see the module docstring)."""
    out = []
    for text, slots in itertools.islice(_expand(expr, values, varying, first), cap):
        out.append(Phrasing(_clean(text), slots, varying or ""))
    return out


def expand_templates(
    templates: Sequence[str], lists: Mapping[str, Any], budget: int | None = MAX_ROUTE_PHRASINGS
) -> list[Phrasing]:
    """The phrasings of `templates` (see the module docstring), without duplicates.

    With many templates (an imported intent has dozens) the phrasings are kept in priority
    order up to `budget`, taking the templates in turn within each tier: each template's first
    carrier; each value of each slot once (from whichever template reaches it first); the other
    carriers; the other phrasings of the slot sweeps; the other wordings of each slot. So a
    budget cut loses wordings before it loses a template or a slot value.
    """
    from hassil.expression import ListReference

    values = {name: list_values(spec) for name, spec in lists.items()}
    tiers: list[list[list[Phrasing]]] = [[], [], [], []]  # tier -> per template -> phrasings
    for template in templates:
        check_template(template, lists)
        expr = _parse(template).expression
        names = list(
            dict.fromkeys(n.list_name for n in _walk(expr) if isinstance(n, ListReference))
        )

        carriers = _run(expr, values, None, False, MAX_PER_PASS)
        tiers[0].append(carriers[:1])
        tiers[2].append(carriers[1:])
        tiers[1].append([p for n in names for p in _run(expr, values, n, True, MAX_SWEEP)])
        tiers[3].append([p for n in names for p in _run(expr, values, n, False, MAX_PER_PASS)])

    def turns(tier: list[list[Phrasing]]) -> Iterator[Phrasing]:
        for group in itertools.zip_longest(*tier):  # the templates in turn
            yield from (p for p in group if p is not None)

    covered: set[tuple[str, str]] = set()  # (slot, value) phrased at least once
    first_values, rest = [], []
    for p in turns(tiers[1]):
        key = (p.varies, repr(sorted(p.slots.items())))
        (rest if key in covered else first_values).append(p)
        covered.add(key)
    order = itertools.chain(turns(tiers[0]), first_values, turns(tiers[2]), rest, turns(tiers[3]))
    out: list[Phrasing] = []
    seen: set[str] = set()
    for p in order:
        if not p.text or p.text in seen:
            continue
        if budget is not None and len(out) >= budget:
            break
        seen.add(p.text)
        out.append(p)
    return out


# --------------------------------------------------------------------------- cache
#
# Expanding templates needs hassil (~0.2 s to import) and some milliseconds per template; a
# routes file's templates rarely change, and every `voice-router route` call plans its points.
# The phrasings are kept in the user cache folder, keyed by the templates, the lists and the
# expansion rules' version: a warm start reads a JSON file and never imports hassil.

_CACHE_VERSION = "1"


def _cache_file(templates: Sequence[str], lists: Mapping[str, Any], budget: int | None) -> Any:
    import hashlib
    import json
    import os
    from pathlib import Path

    if os.environ.get("VOICE_ROUTER_TEMPLATE_CACHE", "1") == "0":
        return None
    from platformdirs import user_cache_dir

    blob = json.dumps([_CACHE_VERSION, MAX_PER_PASS, MAX_SWEEP, budget, list(templates), lists],
                      sort_keys=True, default=str)  # fmt: skip
    key = hashlib.sha256(blob.encode()).hexdigest()[:24]
    return Path(user_cache_dir("voice-router")) / "phrasings" / f"{key}.json"


def cached_phrasings(
    templates: Sequence[str], lists: Mapping[str, Any], budget: int | None = MAX_ROUTE_PHRASINGS
) -> list[Phrasing] | None:
    """The phrasings `expand_templates` gave these templates and lists before, or None."""
    import json

    path = _cache_file(templates, lists, budget)
    if path is None or not path.is_file():
        return None
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        return [Phrasing(t, dict(s), v) for t, s, v in rows]
    except (OSError, ValueError, TypeError):
        return None  # unreadable or damaged: expanded again


def phrasings(
    templates: Sequence[str], lists: Mapping[str, Any], budget: int | None = MAX_ROUTE_PHRASINGS
) -> list[Phrasing]:
    """`expand_templates`, through the cache (a damaged or unwritable cache only costs time)."""
    import json
    import os

    got = cached_phrasings(templates, lists, budget)
    if got is not None:
        return got
    out = expand_templates(templates, lists, budget)
    path = _cache_file(templates, lists, budget)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps([[p.text, p.slots, p.varies] for p in out], default=str),
                           encoding="utf-8")  # fmt: skip
            tmp.replace(path)
        except OSError:
            pass
    return out
