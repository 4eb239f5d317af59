"""Route sets people already have, as voice-router routes.

Each importer reads another tool's file and returns a validated `RouteSet` plus notes: every
part of the source that has no voice-router equivalent is named in a note, never dropped
silently. The CLI writes the result with `dump_routes` (`voice-router routes import`).

Formats:
- `semantic-router`: a semantic-router route layer (`RouterConfig.to_file`, JSON or YAML:
  `encoder_type`, `encoder_name`, `routes: [{name, utterances, description, function_schemas,
  llm, score_threshold, metadata}]`). Each route keeps its name (made a valid route name),
  its description (else its first utterance) and its utterances as `examples`. Score
  thresholds are not carried over: they are cosines of another encoder (calibrate instead).
- `rhino`: a Picovoice Rhino context (YAML: `context:` with `expressions:` per intent,
  `slots:` lists and `macros:`). Each intent becomes a route whose `sentences:` are its
  expressions translated to hassil syntax (`[a, b]` -> `(a|b)`, `(optional)` -> `[optional]`,
  `$type:name` -> `{type:name}`, `@macro` -> its alternatives); each slot type becomes a list
  whose values keep their text. Rhino's built-in number slots become numeric ranges
  (`pv.SingleDigitInteger` 0-9, `pv.TwoDigitInteger` 0-99, `pv.Percent` 0-100); an expression
  that uses another built-in slot is skipped, with a note.
- `home-assistant`: the intents of the installed `home-assistant-intents` package (Home
  Assistant Assist's English sentences, hassil templates). Each intent becomes a route with
  its templates as `sentences:` (expansion rules such as `<turn>` written out), the package's
  lists as `lists:`, and the entity lists Home Assistant fills at run time (`name`, `area`,
  `floor`) from `--lists` (a YAML file with a `lists:` mapping in the routes-file format) or
  small defaults. Templates that need a wildcard list (free text such as a shopping-list item
  or a search query) cannot be said against fixed phrasings: they are skipped and counted in
  the notes, as are each intent's fixed slots and context requirements.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from voice_router.errors import RoutesError
from voice_router.routes import MAX_FILE_BYTES, RouteSet, validate_lists, validate_routes

__all__ = ["FORMATS", "Imported", "import_rhino", "import_routes", "import_semantic_router"]


@dataclass
class Imported:
    """An imported route set and what could not be carried over (one line each)."""

    routes: RouteSet
    notes: list[str] = field(default_factory=list)


def _read_structured(path: Path) -> Any:
    """A JSON or YAML file (by its extension; YAML otherwise) as plain data."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise RoutesError(f"{path}: {size} bytes; files over {MAX_FILE_BYTES} are refused")
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise RoutesError(f"{path}: file not found: check the path") from None
    except UnicodeDecodeError:
        raise RoutesError(f"{path}: not UTF-8 text: is this the right file?") from None
    except OSError as e:
        raise RoutesError(f"{path}: cannot read it ({e.strerror})") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        raise RoutesError(f"{path}: not valid {kind}: {e}") from None


def _route_name(name: str, taken: set[str]) -> str:
    """`name` as a valid, unused route name (invalid characters become '_')."""
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", name.strip()).lstrip(".-")[:120] or "route"
    out, n = clean, 2
    while out in taken:
        out, n = f"{clean}_{n}", n + 1
    return out


def import_semantic_router(path: str | os.PathLike[str]) -> Imported:
    """A semantic-router route layer file -> routes (see the module docstring)."""
    p = Path(path)
    data = _read_structured(p)
    if not isinstance(data, dict) or not isinstance(data.get("routes"), list):
        raise RoutesError(
            f"{p}: not a semantic-router layer: expected a mapping with a `routes:` list "
            "(as RouterConfig.to_file writes)"
        )
    notes: list[str] = []
    if data.get("encoder_name") or data.get("encoder_type"):
        notes.append(
            f"encoder {data.get('encoder_type')}/{data.get('encoder_name')}: not used; "
            "voice-router embeds speech and route texts with its own model"
        )
    routes: list[dict[str, Any]] = []
    taken: set[str] = set()
    for i, r in enumerate(data["routes"]):
        where = f"{p}: route #{i + 1}"
        if not isinstance(r, dict) or not isinstance(r.get("name"), str) or not r["name"].strip():
            raise RoutesError(f"{where}: needs a `name` string")
        name = _route_name(r["name"], taken)
        taken.add(name)
        if name != r["name"]:
            notes.append(f"route {r['name']!r}: renamed {name!r} (route names are letters, "
                         "digits, _ - .)")  # fmt: skip
        said = r.get("utterances") or []
        if not isinstance(said, list):
            raise RoutesError(f"{where} ({r['name']!r}): `utterances` must be a list")
        texts = [u.strip() for u in said if isinstance(u, str) and u.strip()]
        if len(texts) < len(said):
            notes.append(f"route {name!r}: {len(said) - len(texts)} utterance(s) that are not "
                         "text skipped")  # fmt: skip
        description = r.get("description")
        if isinstance(description, str) and description.strip():
            description = description.strip()
        elif texts:
            description = texts.pop(0)
        else:
            raise RoutesError(f"{where} ({r['name']!r}): has neither a description nor utterances")
        if r.get("score_threshold") is not None:
            notes.append(f"route {name!r}: score_threshold {r['score_threshold']} not kept "
                         "(another encoder's cosine); run `voice-router calibrate`")  # fmt: skip
        if r.get("function_schemas"):
            fns = [f.get("function", f).get("name", "?") for f in r["function_schemas"]
                   if isinstance(f, dict)]  # fmt: skip
            notes.append(f"route {name!r}: function schemas ({', '.join(map(str, fns))}) not "
                         "imported; give the route a `tool:`")  # fmt: skip
        if r.get("llm"):
            notes.append(f"route {name!r}: its llm is not used")
        if r.get("metadata"):
            notes.append(f"route {name!r}: metadata not imported")
        routes.append({"name": name, "description": description, "examples": texts})
    if not routes:
        raise RoutesError(f"{p}: the layer has no routes")
    # no `name:`: the set is known by the file it is written to
    rs = validate_routes({"routes": routes}, str(p))
    return Imported(rs, notes)


_RHINO_NUMBERS = {
    "pv.SingleDigitInteger": ("pv_single_digit_integer", 0, 9),
    "pv.TwoDigitInteger": ("pv_two_digit_integer", 0, 99),
    "pv.Percent": ("pv_percent", 0, 100),
}
_RHINO_TOKEN = re.compile(
    r"\$([A-Za-z0-9_.]+):([A-Za-z0-9_]+)|@([A-Za-z0-9_]+)|([\[\](),])|([^\[\](),$@]+)"
)


class _Unsupported(Exception):
    """An expression part with no voice-router equivalent (the expression is skipped)."""


def _rhino_to_hassil(
    expression: str, macros: dict[str, list[str]], slot_types: dict[str, str], depth: int = 0
) -> str:
    """One Rhino expression in hassil template syntax (see the module docstring)."""
    if depth > 5:
        raise _Unsupported("macros nested more than 5 deep")
    out: list[str] = []
    stack: list[str] = []  # open brackets: "[" (choice) or "(" (optional)
    for m in _RHINO_TOKEN.finditer(expression):
        slot_type, slot_name, macro, punct, text = m.groups()
        if slot_type is not None:
            if slot_type.startswith("pv."):
                if slot_type not in _RHINO_NUMBERS:
                    raise _Unsupported(f"built-in slot {slot_type}")
                slot_types[slot_type] = _RHINO_NUMBERS[slot_type][0]
            else:
                slot_types[slot_type] = slot_type
            out.append(f"{{{slot_types[slot_type]}:{slot_name}}}")
        elif macro is not None:
            if macro not in macros:
                raise _Unsupported(f"macro @{macro} is not defined")
            alts = [_rhino_to_hassil(a, macros, slot_types, depth + 1) for a in macros[macro]]
            out.append("(" + "|".join(alts) + ")")
        elif punct == "[":
            stack.append("[")
            out.append("(")
        elif punct == "(":
            stack.append("(")
            out.append("[")
        elif punct in ("]", ")"):
            if not stack or stack.pop() != ("[" if punct == "]" else "("):
                raise _Unsupported(f"unbalanced {punct!r}")
            out.append(")" if punct == "]" else "]")
        elif punct == ",":
            if not stack or stack[-1] != "[":
                raise _Unsupported("',' outside a [choice]")
            out.append("|")
        else:
            out.append(text)
    if stack:
        raise _Unsupported("unclosed bracket")
    return re.sub(r"\s*\|\s*", "|", "".join(out)).strip()


def import_rhino(path: str | os.PathLike[str]) -> Imported:
    """A Picovoice Rhino context file -> routes with templates and lists (module docstring)."""
    p = Path(path)
    data = _read_structured(p)
    ctx = data.get("context") if isinstance(data, dict) else None
    if not isinstance(ctx, dict) or not isinstance(ctx.get("expressions"), dict):
        raise RoutesError(
            f"{p}: not a Rhino context: expected `context:` with an `expressions:` mapping of "
            "intents to expression lists"
        )
    slots = ctx.get("slots") or {}
    macros = ctx.get("macros") or {}
    if not isinstance(slots, dict) or not isinstance(macros, dict):
        raise RoutesError(f"{p}: `slots:` and `macros:` must be mappings of names to lists")
    for kind, table in (("slot", slots), ("macro", macros)):
        for name, values in table.items():
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise RoutesError(f"{p}: {kind} {name!r} must be a list of phrases")
    notes: list[str] = []
    used: dict[str, str] = {}  # Rhino slot type -> list name
    routes: list[dict[str, Any]] = []
    taken: set[str] = set()
    for intent, expressions in ctx["expressions"].items():
        if not isinstance(expressions, list) or not expressions:
            raise RoutesError(f"{p}: intent {intent!r} needs a list of expressions")
        sentences = []
        for e in expressions:
            try:
                sentences.append(_rhino_to_hassil(str(e), macros, used))
            except _Unsupported as why:
                notes.append(f"intent {intent!r}: expression {e!r} skipped ({why})")
        if not sentences:
            notes.append(f"intent {intent!r}: skipped (no expression could be imported)")
            continue
        name = _route_name(str(intent), taken)
        taken.add(name)
        routes.append({"name": name, "sentences": sentences})
    lists: dict[str, Any] = {}
    for slot_type, list_name in sorted(used.items()):
        if slot_type in _RHINO_NUMBERS:
            _, lo, hi = _RHINO_NUMBERS[slot_type]
            lists[list_name] = {"range": {"from": lo, "to": hi}}
        elif slot_type not in slots:
            raise RoutesError(f"{p}: slot type {slot_type!r} is used but not defined in slots:")
        else:
            lists[list_name] = {"values": list(slots[slot_type])}
    if not routes:
        raise RoutesError(f"{p}: no intent could be imported")
    return Imported(_with_descriptions(routes, lists, str(p)), notes)


def _with_descriptions(routes: list[dict[str, Any]], lists: Any, source: str) -> RouteSet:
    """The imported routes, each described by its first phrasing in plain words, validated."""
    from voice_router.templates import expand_templates

    checked = validate_lists(lists, source)
    for r in routes:
        r["description"] = expand_templates(r["sentences"][:1], checked, budget=1)[0].text
    return validate_routes({"lists": checked, "routes": routes}, source)


#: Home Assistant fills these from the user's devices and areas at run time.
HA_ENTITY_LISTS: dict[str, list[str]] = {
    "area": ["living room", "kitchen", "bedroom", "office", "garage"],
    "floor": ["upstairs", "downstairs", "ground floor"],
    "name": ["ceiling light", "standing light", "tv", "front door", "garage door"],
}


def _ha_value_text(said: str) -> str:
    """A list value's spoken form (values may themselves be templates: their first wording)."""
    if not re.search(r"[\[\](){}<>|]", said):
        return said
    from voice_router.templates import expand_templates

    return expand_templates([said], {})[0].text


def import_home_assistant(
    source: str | os.PathLike[str] = "en", lists: str | os.PathLike[str] | None = None
) -> Imported:
    """Home Assistant's intents for a language (`source`: a language code such as "en") ->
    routes with templates and lists (see the module docstring); `lists`: a YAML file of the
    user's entity lists."""
    from voice_router.routes import MAX_RANGE_VALUES

    try:
        import home_assistant_intents as hai
    except ImportError:
        raise RoutesError(
            "the home-assistant-intents package is not installed: pip install "
            "home-assistant-intents"
        ) from None
    language = str(source)
    data = hai.get_intents(language)
    if not data:
        raise RoutesError(f"home-assistant-intents has no language {language!r}")
    rules: dict[str, str] = data.get("expansion_rules", {})
    notes: list[str] = []
    user_lists: dict[str, Any] = {}
    if lists is not None:
        raw = _read_structured(Path(lists))
        if not isinstance(raw, dict) or not isinstance(raw.get("lists", raw), dict):
            raise RoutesError(f"{lists}: expected a `lists:` mapping of names to values")
        user_lists = raw.get("lists", raw)
    out_lists: dict[str, Any] = {}
    wildcards = set()
    for name, spec in data.get("lists", {}).items():
        if spec.get("wildcard"):
            wildcards.add(name)
        elif "range" in spec:
            r = spec["range"]
            lo, hi, step = int(r["from"]), int(r["to"]), int(r.get("step", 1))
            while (hi - lo) // step + 1 > MAX_RANGE_VALUES:
                step *= 2
            if step != r.get("step", 1):
                notes.append(f"list {name!r}: range {lo}-{hi} in steps of {step}")
            out_lists[name] = {"range": {"from": lo, "to": hi, "step": step}}
        elif "values" in spec:
            vals = []
            for v in spec["values"]:
                said = v["in"] if isinstance(v, dict) else str(v)
                out = v.get("out", said) if isinstance(v, dict) else said
                vals.append({"in": _ha_value_text(said), "out": out})
            out_lists[name] = {"values": vals}
    for name, default in HA_ENTITY_LISTS.items():
        if name in user_lists:
            out_lists[name] = user_lists[name]
        else:
            out_lists[name] = list(default)
            notes.append(f"list {name!r}: default values {default} (pass --lists for yours)")
    for name, values in user_lists.items():
        out_lists.setdefault(name, values)

    def write_rules(t: str, depth: int = 0) -> str:
        if depth > 10:
            raise _Unsupported("expansion rules nested more than 10 deep")

        def one(m: re.Match[str]) -> str:
            if m.group(1) not in rules:
                raise _Unsupported(f"unknown rule <{m.group(1)}>")
            return "(" + write_rules(rules[m.group(1)], depth + 1) + ")"

        return re.sub(r"<([A-Za-z0-9_]+)>", one, t)

    routes: list[dict[str, Any]] = []
    for intent, body in data["intents"].items():
        sentences: list[str] = []
        skipped_wild = 0
        fixed = False
        for block in body.get("data", []):
            fixed |= bool(block.get("slots") or block.get("requires_context")
                          or block.get("excludes_context"))  # fmt: skip
            for s in block.get("sentences", []):
                used = set(re.findall(r"\{([A-Za-z0-9_]+)", s))
                if used & wildcards:
                    skipped_wild += 1
                    continue
                try:
                    sentences.append(write_rules(s))
                except _Unsupported as why:
                    notes.append(f"intent {intent!r}: sentence {s!r} skipped ({why})")
        if skipped_wild:
            notes.append(f"intent {intent!r}: {skipped_wild} sentence(s) with a wildcard list "
                         "skipped (free text cannot be matched without a transcript)")  # fmt: skip
        if fixed:
            notes.append(f"intent {intent!r}: fixed slots and context requirements not kept")
        if not sentences:
            notes.append(f"intent {intent!r}: skipped (every sentence needs a wildcard)")
            continue
        routes.append({"name": intent, "sentences": list(dict.fromkeys(sentences))})
    return Imported(_with_descriptions(routes, out_lists, "home-assistant"), notes)


FORMATS: dict[str, Callable[[str | os.PathLike[str]], Imported]] = {
    "semantic-router": import_semantic_router,
    "rhino": import_rhino,
    "home-assistant": import_home_assistant,
}
"""Importer per format name (`voice-router routes import FORMAT SOURCE`)."""


def import_routes(fmt: str, source: str | os.PathLike[str]) -> Imported:
    """Import `source` written in format `fmt` (a key of FORMATS)."""
    if fmt not in FORMATS:
        raise RoutesError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    return FORMATS[fmt](source)
