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
        passes: list[tuple[str | None, bool, int]] = [(None, False, MAX_PER_PASS)]
        for name in names:  # a slot: every value once, then other wordings
            passes += [(name, True, MAX_SWEEP), (name, False, MAX_PER_PASS)]
        for varying, first, cap in passes:
            for text, slots in itertools.islice(_expand(expr, values, varying, first), cap):
                text = _clean(text)
                if not text or text in seen:
                    continue
                seen.add(text)
                out.append(Phrasing(text, slots, varying or ""))
    return out
