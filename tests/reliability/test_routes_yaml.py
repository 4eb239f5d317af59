"""Bad routes files: every one gets a RoutesError "FILE:LINE: ..." that says what to fix.

Covers issue 7's routes list: every schema error, duplicate keys, a huge file, alias bombs,
non-UTF-8 bytes, unquoted on/off/yes/no, plus code-execution tags (never run), and
property-based tests over random route dicts, random text and dump/load round trips.
"""

from __future__ import annotations

import os
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voice_router.errors import RoutesError
from voice_router.routes import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_NODES,
    RouteSet,
    dump_routes,
    load_routes,
    parse_routes,
    validate_routes,
)

PROPERTY = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

HEAD = "routes:\n  - name: lights_on\n    description: Turn the lights on.\n"


def _error(tmp_path, text: str | bytes) -> tuple[str, str]:
    """Write text to a file, load it, return (file path, error message)."""
    p = tmp_path / "routes.yaml"
    p.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    with pytest.raises(RoutesError) as e:
        load_routes(p)
    return str(p), str(e.value)


# ----------------------------------------------------------------------------- schema errors

SCHEMA_CASES = [
    # (yaml text, expected line, words in the message)
    (HEAD + "    exmples: [a]\n", 4, "route 'lights_on': exmples: unknown key 'exmples' (allowed:"),
    ("threshhold: 0.5\n" + HEAD, 1, "threshhold: unknown key 'threshhold'"),
    ("routes:\n  - description: x\n", 2, "route #1: missing required key 'name'"),
    ("routes:\n  - name: a\n", 2, "route 'a': missing required key 'description'"),
    ("routes:\n  - name: a\n    description: ''\n", 3, "route 'a': description: is empty"),
    ("routes:\n  - name: a\n    description: '   '\n", 3, "description: is empty"),
    ("routes:\n  - name: a b\n    description: x\n", 2, "name: 'a b' is not a valid route name"),
    ("routes:\n  - name: -a\n    description: x\n", 2, "is not a valid route name"),
    ("routes:\n  - name: 12\n    description: x\n", 2, "name: must be a string, not int"),
    ("routes:\n  - name: a\n    description: [x]\n", 3, "description: must be a string, not list"),
    (HEAD + "    examples: turn on\n", 4, "examples: must be a list of strings, not string"),
    (HEAD + "    examples: [ok, 3]\n", 4, "examples.1: must be a string, not int"),
    (HEAD + "    examples: [ok, '  ']\n", 4, "examples: item 1 is empty"),
    (HEAD + "    tool: 'os; rm -rf /'\n", 4, "tool: 'os; rm -rf /' is neither an import path"),
    (HEAD + "    tool: [a]\n", 4, "tool: must be a string, not list"),
    (HEAD + "    args: [a]\n", 4, "args: must be a mapping of argument names to values, not list"),
    (HEAD + "    threshold: 1.5\n", 4, "threshold: must be between -1 and 1 (got 1.5)"),
    (HEAD + "    threshold: -2\n", 4, "threshold: must be between -1 and 1 (got -2)"),
    (HEAD + "    threshold: true\n", 4, "threshold: must be a number, not a boolean"),
    (HEAD + "    threshold: high\n", 4, "threshold: must be a number, not string"),
    (HEAD + "    threshold: .nan\n", 4, "threshold: must be a finite number"),
    ("margin: -0.1\n" + HEAD, 1, "margin: must be between 0 and 2 (got -0.1)"),
    ("margin: 3\n" + HEAD, 1, "margin: must be between 0 and 2 (got 3)"),
    ("threshold: 2\n" + HEAD, 1, "threshold: must be between -1 and 1 (got 2)"),
    ("threshold: 0.5\n", 1, "missing required key 'routes'"),
    ("routes: []\n", 1, "routes: needs at least one route"),
    ("routes: lights_on\n", 1, "routes: must be a list of routes, not string"),
    ("routes:\n  - lights_on\n", 2, "route #1: must be a mapping with a name and a description"),
    ("- name: a\n  description: x\n", 1, "the top level must be a mapping with a `routes:` list"),
    ("source: /etc/passwd\n" + HEAD, 1, "unknown key 'source'"),
    (HEAD + "  - name: lights_on\n    description: again\n", 4, "duplicate route name"),
]


@pytest.mark.parametrize(("text", "line", "words"), SCHEMA_CASES)
def test_schema_errors_name_file_line_route_and_field(tmp_path, text, line, words):
    path, msg = _error(tmp_path, text)
    assert msg.startswith(f"{path}:{line}: "), msg
    assert words in msg, msg


def test_every_problem_is_reported_at_once(tmp_path):
    text = "routes:\n  - name: a\n    description: ''\n  - name: b\n    bogus: 1\n"
    path, msg = _error(tmp_path, text)
    lines = msg.splitlines()
    assert f"{path}:3: route 'a': description: is empty" in lines[0]
    assert any(line.startswith(f"{path}:4: route 'b': missing required key") for line in lines)
    assert any(line.startswith(f"{path}:5: route 'b': bogus: unknown key") for line in lines)


def test_duplicate_route_names_name_both_lines(tmp_path):
    text = HEAD + "  - name: other\n    description: x\n  - name: lights_on\n    description: y\n"
    path, msg = _error(tmp_path, text)
    assert msg == (
        f"{path}:6: route 'lights_on': name: duplicate route name (first on line 2): "
        "route names must be unique"
    )


def test_empty_and_comment_only_files(tmp_path):
    for text in ("", "# nothing here\n", "---\n"):
        path, msg = _error(tmp_path, text)
        assert msg.startswith(path) and "empty" in msg


def test_missing_file_directory_and_non_regular_files(tmp_path):
    with pytest.raises(RoutesError, match=r"nope.yaml: routes file not found"):
        load_routes(tmp_path / "nope.yaml")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RoutesError, match=r"routes file not found"):
        load_routes(tmp_path / "file" / "r.yaml")  # a parent is a file
    with pytest.raises(RoutesError, match="is a directory"):
        load_routes(tmp_path)
    os.mkfifo(tmp_path / "pipe.yaml")  # reading it would block forever
    with pytest.raises(RoutesError, match="not a regular file"):
        load_routes(tmp_path / "pipe.yaml")
    with pytest.raises(RoutesError, match="not a regular file"):
        load_routes("/dev/zero")


# ----------------------------------------------------------------------------- YAML level


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("threshold: 0.5\nthreshold: 0.6\n" + HEAD, 2, "threshold"),
        ("routes:\n  - name: a\n    description: x\n    description: y\n", 4, "description"),
        (HEAD + "    args:\n      room: kitchen\n      room: hall\n", 6, "room"),
    ],
)
def test_duplicate_yaml_keys(tmp_path, text, line, key):
    path, msg = _error(tmp_path, text)
    assert msg.startswith(f"{path}:{line}: duplicate key '{key}' (first on line {line - 1})")


def test_merge_keys_may_override_without_being_duplicates():
    text = (
        "routes:\n"
        "  - &play {name: play, description: Play music., tool: 'm:media', args: {action: play}}\n"
        "  - {<<: *play, name: pause, description: Pause music., args: {action: pause}}\n"
    )
    rs = parse_routes(text)
    assert rs.get("pause").tool == "m:media" and rs.get("pause").args == {"action": "pause"}
    assert rs.get("play").args == {"action": "play"}


@pytest.mark.parametrize("word", ["on", "off", "yes", "no", "On", "OFF", "Yes", "NO"])
def test_unquoted_yaml11_booleans_are_refused(tmp_path, word):
    path, msg = _error(tmp_path, HEAD + f"    examples: [turn it, {word}]\n")
    assert msg == (
        f'{path}:4: unquoted `{word}` is read by YAML as a boolean; write "{word}" in quotes '
        "(or true/false if you mean a boolean)"
    )


def test_yaml11_booleans_in_args_and_keys_are_refused(tmp_path):
    _, msg = _error(tmp_path, HEAD + "    args: {state: on}\n")
    assert ":4: unquoted `on`" in msg
    _, msg = _error(tmp_path, HEAD + "    args:\n      off: 1\n")
    assert ":5: unquoted `off`" in msg


def test_quoted_words_and_real_booleans_are_fine():
    rs = parse_routes(
        HEAD + "    examples: ['on', \"off\", yes please, y, n]\n    args: {a: true}\n"
    )
    assert rs.routes[0].examples == ["on", "off", "yes please", "y", "n"]
    assert rs.routes[0].args == {"a": True}


@pytest.mark.parametrize(("value", "number"), [("7:30", 450), ("1:02:03", 3723), ("0755", 493)])
def test_yaml11_base60_and_octal_numbers_are_refused(tmp_path, value, number):
    _, msg = _error(tmp_path, HEAD + f"    args: {{at: {value}}}\n")
    assert f'unquoted `{value}` is read by YAML as the number {number}; write "{value}"' in msg


def test_code_execution_tags_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    text = f"routes: !!python/object/apply:os.system ['touch {marker}']\n"
    path, msg = _error(tmp_path, text)
    assert msg.startswith(f"{path}:1: the tag ") and "is not allowed" in msg
    assert not marker.exists()
    _, msg = _error(tmp_path, HEAD + "    args: !custom {a: 1}\n")
    assert "the tag '!custom' is not allowed" in msg


def test_invalid_yaml_syntax_has_a_line(tmp_path):
    path, msg = _error(tmp_path, HEAD + "    examples: [unclosed\n")
    assert re.match(rf"{re.escape(path)}:\d+: invalid YAML: ", msg), msg


def test_two_documents_are_refused(tmp_path):
    path, msg = _error(tmp_path, HEAD + "---\n" + HEAD)
    assert msg.startswith(f"{path}:") and "single document" in msg


def test_control_characters_are_refused(tmp_path):
    path, msg = _error(tmp_path, HEAD + "    examples: [bell\x07]\n")
    assert msg == (
        f"{path}:4: invalid YAML: character U+0007 is not allowed: remove it (control "
        "characters cannot appear in YAML)"
    )


# ----------------------------------------------------------------------------- size bounds


def test_huge_file_is_refused_before_parsing(tmp_path):
    p = tmp_path / "huge.yaml"
    example = "      - turn on the lights in the living room please\n"
    p.write_text(HEAD + "    examples:\n" + example * (MAX_FILE_BYTES // len(example) + 10))
    t0 = time.perf_counter()
    with pytest.raises(RoutesError) as e:
        load_routes(p)
    assert time.perf_counter() - t0 < 1.0
    assert str(e.value).startswith(f"{p}: the file is ") and "limited to 1000000 bytes" in str(
        e.value
    )


def test_huge_text_is_refused():
    with pytest.raises(RoutesError, match="over 1000000 bytes"):
        parse_routes(HEAD + "#" * MAX_FILE_BYTES)


def test_billion_laughs_alias_bomb_is_refused_quickly(tmp_path):
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 10):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    text = "\n".join(lines) + "\nroutes: *a9\n"  # 9**10 = 3.5 billion strings when expanded
    t0 = time.perf_counter()
    path, msg = _error(tmp_path, text)
    assert time.perf_counter() - t0 < 2.0
    assert f"expands to more than {MAX_NODES} nodes" in msg and "alias bomb" in msg
    assert re.match(rf"{re.escape(path)}:\d+: ", msg)


def test_recursive_alias_is_refused(tmp_path):
    path, msg = _error(tmp_path, "routes: &r [*r]\n")
    assert msg.startswith(f"{path}:1: recursive alias")


def test_modest_aliases_are_allowed():
    text = (
        "routes:\n  - name: a\n    description: x\n    args: &shared {room: kitchen}\n"
        "  - name: b\n    description: y\n    args: *shared\n"
    )
    rs = parse_routes(text)
    assert rs.get("b").args == {"room": "kitchen"}


@pytest.mark.parametrize("depth", [60, 20000])
def test_deep_nesting_is_an_error_not_a_crash(tmp_path, depth):
    t0 = time.perf_counter()
    path, msg = _error(tmp_path, HEAD + "    args: {a: " + "[" * depth + "]" * depth + "}\n")
    assert time.perf_counter() - t0 < 1.0
    assert msg == f"{path}:4: the YAML is nested more than {MAX_DEPTH} levels deep: simplify it"


# ----------------------------------------------------------------------------- encodings


def test_non_utf8_bytes_name_line_and_byte(tmp_path):
    text = HEAD.encode() + "    examples: [caf\xe9]\n".encode("latin-1")
    path, msg = _error(tmp_path, text)
    assert msg.startswith(f"{path}:4: not valid UTF-8 (byte 0xe9 at offset ")
    assert msg.endswith("save the file as UTF-8")


def test_utf16_file_is_refused_with_the_utf8_hint(tmp_path):
    path, msg = _error(tmp_path, HEAD.encode("utf-16"))
    assert msg.startswith(f"{path}:1: not valid UTF-8")


def test_utf8_bom_and_unicode_text_are_fine(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_bytes(
        b"\xef\xbb\xbf" + (HEAD + "    examples: [allume la lumière, 電気をつけて]\n").encode()
    )
    assert load_routes(p).routes[0].examples == ["allume la lumière", "電気をつけて"]


# ----------------------------------------------------------------------------- properties

_KEYS = st.sampled_from(
    ["name", "description", "examples", "examples_audio", "tool", "args", "threshold", "bogus"]
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["lights_on", "pkg.mod:attr", "Turn it on.", "on", "", "  "]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@PROPERTY
@given(
    routes=st.lists(st.dictionaries(_KEYS, _VALUES, max_size=8), max_size=4),
    top=st.dictionaries(st.sampled_from(["threshold", "margin", "extra"]), _VALUES, max_size=3),
)
def test_random_route_dicts_validate_or_raise_routes_error(routes, top):
    data = {**top, "routes": routes}
    try:
        rs = validate_routes(data)
    except RoutesError as e:
        assert str(e).startswith("<dict>")
        return
    assert isinstance(rs, RouteSet) and len(rs.routes) == len(routes) >= 1
    assert len(set(rs.names)) == len(rs.names)
    assert all(r.description.strip() for r in rs.routes)


@PROPERTY
@given(st.text(max_size=300))
def test_random_text_parses_or_raises_routes_error(text):
    try:
        rs = parse_routes(text, source="random.yaml")
    except RoutesError as e:
        assert str(e).startswith("random.yaml")
        return
    assert isinstance(rs, RouteSet)


_NAMES = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,10}", fullmatch=True)
_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20).filter(
    lambda s: s.strip() == s and s
)
_TRICKY = st.sampled_from(["on", "off", "yes", "No", "7:30", "0755", "null", "~", "1e3", "true"])


@PROPERTY
@given(
    names=st.lists(_NAMES, min_size=1, max_size=4, unique=True),
    texts=st.lists(st.one_of(_TEXT, _TRICKY), min_size=1, max_size=6),
    threshold=st.floats(-1, 1),
    margin=st.floats(0, 2),
    args=st.dictionaries(
        st.sampled_from(["action", "room", "n"]),
        st.one_of(_TEXT, _TRICKY, st.integers(), st.booleans()),
    ),
    set_name=st.one_of(st.none(), st.sampled_from(["home", "kitchen.v2", "on", "0755"])),
)
def test_dump_then_load_round_trips(tmp_path, names, texts, threshold, margin, args, set_name):
    rs = RouteSet(
        name=set_name,
        threshold=threshold,
        margin=margin,
        routes=[
            {"name": n, "description": texts[0], "examples": texts[1:], "args": args} for n in names
        ],
    )
    p = tmp_path / "rt.yaml"
    dump_routes(rs, p)
    assert load_routes(p) == rs
