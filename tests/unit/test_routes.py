"""Unit tests of voice_router.routes: schema, defaults, lookups, file loading and round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from voice_router.errors import RoutesError
from voice_router.routes import (
    DEFAULT_MARGIN,
    DEFAULT_THRESHOLD,
    Route,
    RouteSet,
    dump_routes,
    load_routes,
    parse_routes,
    validate_routes,
)

REPO = Path(__file__).resolve().parent.parent.parent

MINIMAL = """\
routes:
  - name: lights_on
    description: Turn the lights on.
"""

FULL = """\
threshold: 0.4
margin: 0.1
routes:
  - name: lights_on
    description: "  Turn the lights on.  "
    examples: [turn on the lights, "lights on"]
    tool: examples.home_tools:lights_on
    args: {room: kitchen, level: 80, dim: false}
    threshold: 0.6
  - name: weather.today
    description: Tell me the weather.
    tool: get_weather
"""


def test_minimal_file_gets_the_documented_defaults():
    rs = parse_routes(MINIMAL)
    assert rs.threshold == DEFAULT_THRESHOLD == 0.7
    assert rs.margin == DEFAULT_MARGIN == 0.01
    r = rs.routes[0]
    assert (r.name, r.description, r.examples, r.examples_audio) == (
        "lights_on",
        "Turn the lights on.",
        [],
        [],
    )
    assert r.tool is None and r.args == {} and r.threshold is None
    assert rs.source is None


def test_full_file_values():
    rs = parse_routes(FULL)
    assert rs.threshold == 0.4 and rs.margin == 0.1
    on = rs.get("lights_on")
    assert on.description == "Turn the lights on."  # stripped
    assert on.examples == ["turn on the lights", "lights on"]
    assert on.args == {"room": "kitchen", "level": 80, "dim": False}
    assert on.texts() == ["Turn the lights on.", "turn on the lights", "lights on"]
    assert rs.route_threshold(on) == 0.6
    assert rs.route_threshold("weather.today") == 0.4  # falls back to the set's
    assert rs.names == ["lights_on", "weather.today"]


def test_get_unknown_route_lists_the_known_ones():
    rs = parse_routes(FULL)
    with pytest.raises(RoutesError, match="no route named 'nope'; routes are: lights_on"):
        rs.get("nope")


def test_python_construction_is_validated_too():
    with pytest.raises(RoutesError, match="duplicate route name"):
        RouteSet(routes=[Route(name="a", description="x"), Route(name="a", description="y")])
    with pytest.raises(RoutesError, match="route 'a': description: is empty"):
        Route(name="a", description="   ")
    with pytest.raises(RoutesError, match="route 'a': unknown: unknown key 'unknown'"):
        Route(name="a", description="x", unknown=1)
    with pytest.raises(RoutesError, match="route 'a': missing required key 'description'"):
        Route(name="a")
    with pytest.raises(RoutesError, match="routes: routes.1: must be a mapping"):
        RouteSet(routes=[{"name": "a", "description": "x"}, "b"])


def test_assignment_is_validated_and_copies_are_independent():
    rs = RouteSet(routes=[{"name": "a", "description": "x", "args": {"room": "hall"}}])
    with pytest.raises(RoutesError, match="route 'a': threshold: must be between -1 and 1"):
        rs.routes[0].threshold = 3
    with pytest.raises(RoutesError, match="routes: margin: must be a number, not a boolean"):
        rs.margin = True
    with pytest.raises(AttributeError, match="no field 'nme'"):
        rs.routes[0].nme = "b"
    copy = rs.replace(threshold=0.5)
    copy.routes[0].args["room"] = "office"
    copy.routes[0].examples = ["hi"]
    assert rs.routes[0].args == {"room": "hall"} and rs.routes[0].examples == []
    assert copy.threshold == 0.5 and rs.threshold != 0.5 and copy != rs
    assert rs.replace() == rs


def test_validate_routes_from_a_dict():
    rs = validate_routes({"routes": [{"name": "a", "description": "x"}]})
    assert rs.get("a").description == "x"
    with pytest.raises(RoutesError, match="<dict>: route 'a': bogus: unknown key 'bogus'"):
        validate_routes({"routes": [{"name": "a", "description": "x", "bogus": 1}]})


def test_load_routes_sets_source_and_resolves_audio_relative_to_the_file(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.wav").write_bytes(b"RIFF")  # existence is all loading checks
    p = tmp_path / "r.yaml"
    p.write_text(MINIMAL + "    examples_audio: [clips/a.wav]\n", encoding="utf-8")
    rs = load_routes(p)
    assert rs.source == p
    assert rs.routes[0].examples_audio == [str(tmp_path.resolve() / "clips" / "a.wav")]


def test_missing_examples_audio_is_reported_with_its_line(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(MINIMAL + "    examples_audio:\n      - nope.wav\n", encoding="utf-8")
    with pytest.raises(RoutesError) as e:
        load_routes(p)
    assert f"{p}:5: route 'lights_on': examples_audio: file not found" in str(e.value)


def test_dump_then_load_gives_an_equal_route_set(tmp_path):
    rs = parse_routes(FULL)
    rs.routes[0].examples.extend(["on", "off", "yes", "7:30", "0755", "null", "1e3", "~", "café"])
    rs.routes[0].args["when"] = "on"
    out = tmp_path / "out.yaml"
    dump_routes(rs, out)
    back = load_routes(out)
    assert back == rs
    assert back.routes[0].examples[-9:] == [
        "on",
        "off",
        "yes",
        "7:30",
        "0755",
        "null",
        "1e3",
        "~",
        "café",
    ]
    assert back.source == out


def test_dump_writes_audio_paths_relative_to_the_destination(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    p = tmp_path / "r.yaml"
    p.write_text(MINIMAL + "    examples_audio: [a.wav]\n", encoding="utf-8")
    rs = load_routes(p)
    dump_routes(rs, tmp_path / "copy.yaml")
    text = (tmp_path / "copy.yaml").read_text(encoding="utf-8")
    assert "- a.wav" in text and str(tmp_path) not in text
    assert load_routes(tmp_path / "copy.yaml") == rs


def test_dump_leaves_no_temporary_files(tmp_path):
    dump_routes(parse_routes(MINIMAL), tmp_path / "r.yaml")
    assert [f.name for f in tmp_path.iterdir()] == ["r.yaml"]


def test_home_yaml_is_valid_and_complete():
    rs = load_routes(REPO / "routes" / "home.yaml")
    tools = {r.tool for r in rs.routes}
    expected = {
        "lights_on",
        "lights_off",
        "set_thermostat",
        "media_control",
        "set_timer",
        "cancel_timer",
        "get_weather",
        "add_to_shopping_list",
        "get_time",
        "lock_door",
    }
    assert tools == {f"examples.home_tools:{t}" for t in expected}
    for r in rs.routes:
        assert 3 <= len(r.examples) <= 6, r.name
        assert r.description.endswith("."), r.name
    actions = {r.args["action"] for r in rs.routes if r.tool.endswith(":media_control")}
    assert actions == {"play", "pause", "next", "volume_up", "volume_down"}
    changes = {r.args["change"] for r in rs.routes if r.tool.endswith(":set_thermostat")}
    assert changes == {"up", "down"}


def test_home_yaml_slots_are_arguments_of_their_tools():
    """routes/home.yaml's templates name lists of the file, and every slot is an argument of
    the route's tool (so the value said reaches it): the lights' room, the timer's minutes,
    shopping items."""
    import inspect

    from examples import home_tools
    from voice_router.templates import template_slots

    rs = load_routes(REPO / "routes" / "home.yaml")
    assert set(rs.lists) == {"minutes", "room", "item"}
    slotted = {}
    for r in rs.routes:
        if not r.sentences:
            continue
        slots = template_slots(r.sentences)
        tool = getattr(home_tools, r.tool.split(":")[1])  # a plain typed function
        assert set(slots) <= set(inspect.signature(tool).parameters), (r.name, slots)
        slotted[r.name] = slots
    assert slotted == {
        "lights_on": {"room": "room"},
        "lights_off": {"room": "room"},
        "set_timer": {"minutes": "minutes"},
        "shopping_list": {"item": "item"},
    }


def test_a_file_without_threshold_or_margin_leaves_them_to_the_model(tmp_path):
    """`given` says which decision fields the file set; dumping keeps the others out, so a
    file nobody calibrated stays one (the router fills in its model's defaults)."""
    bare = parse_routes("routes:\n  - {name: a, description: alpha}\n")
    assert bare.given == frozenset() and bare.threshold == DEFAULT_THRESHOLD
    dump_routes(bare, tmp_path / "bare.yaml")
    text = (tmp_path / "bare.yaml").read_text()
    assert "threshold" not in text and "margin" not in text
    assert load_routes(tmp_path / "bare.yaml").given == frozenset()
    set_ = parse_routes("threshold: 0.6\nroutes:\n  - {name: a, description: alpha}\n")
    assert set_.given == {"threshold"} and set_.replace(margin=0.1).given == {"threshold", "margin"}
    bare.margin = 0.2
    assert bare.given == {"margin"}
    with pytest.raises(AttributeError):
        bare.given = frozenset()
