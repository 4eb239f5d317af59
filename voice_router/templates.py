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
which slot it varies (`varies`), which is what scoring a slot's value separately needs. Each
pass is capped (MAX_PER_PASS phrasings, in hassil's order).

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
"""Phrasings kept per expansion pass (the carriers, or one slot's values) of one template."""

__all__ = ["MAX_PER_PASS", "Phrasing", "check_template", "expand_templates", "list_values"]


@dataclass(frozen=True)
class Phrasing:
    """One expanded sentence: its text, the slot values it carries and the slot it varies."""

    text: str
    slots: dict[str, Any] = field(default_factory=dict)
    varies: str = ""  # "" for a carrier


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
    expr: Any, lists: Mapping[str, list[tuple[str, Any]]], varying: str | None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(text, slots) of `expr`; lists other than `varying` take their first value only."""
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
        for item in expr.items:
            yield from _expand(item, lists, varying)
    elif isinstance(expr, Permutation):
        for order in itertools.permutations(expr.items):
            yield from _product(order, lists, varying, sep=" ")
    elif isinstance(expr, Seq):
        yield from _product(expr.items, lists, varying, sep="")
    else:  # a rule reference: refused by check_template
        raise RoutesError(f"unsupported template part {type(expr).__name__}")


def _product(
    items: Sequence[Any], lists: Mapping[str, list[tuple[str, Any]]], varying: str | None, sep: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    parts = [list(itertools.islice(_expand(i, lists, varying), MAX_PER_PASS)) for i in items]
    for combo in itertools.product(*parts):
        slots: dict[str, Any] = {}
        for _, s in combo:
            slots.update(s)
        yield sep.join(text for text, _ in combo), slots


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def expand_templates(templates: Sequence[str], lists: Mapping[str, Any]) -> list[Phrasing]:
    """The phrasings of `templates` (see the module docstring), without duplicates, in a
    stable order: per template its carriers, then one pass per slot."""
    from hassil.expression import ListReference

    values = {name: list_values(spec) for name, spec in lists.items()}
    out: list[Phrasing] = []
    seen: set[str] = set()
    for template in templates:
        check_template(template, lists)
        expr = _parse(template).expression
        names = list(
            dict.fromkeys(n.list_name for n in _walk(expr) if isinstance(n, ListReference))
        )
        passes: list[str | None] = [None, *names]
        for varying in passes:
            for text, slots in itertools.islice(_expand(expr, values, varying), MAX_PER_PASS):
                text = _clean(text)
                if not text or text in seen:
                    continue
                seen.add(text)
                out.append(Phrasing(text, slots, varying or ""))
    return out
