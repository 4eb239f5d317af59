"""Importers: another tool's route set becomes a valid routes file; what has no equivalent is
named in a note, never dropped silently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from voice_router.cli import main
from voice_router.errors import RoutesError
from voice_router.importers import import_routes, import_semantic_router
from voice_router.routes import load_routes

LAYER = Path(__file__).resolve().parents[1] / "data" / "semantic_router_layer.json"


def test_semantic_router_layer_becomes_routes_with_examples():
    got = import_semantic_router(LAYER)
    rs = got.routes
    assert rs.names == ["chitchat", "get_time", "politics"]
    chit = rs.get("chitchat")  # no description: the first utterance describes it
    assert chit.description == "how's the weather today?"
    assert chit.examples == ["how are things going?", "lovely weather today",
                             "the weather is horrendous"]  # fmt: skip
    t = rs.get("get_time")
    assert t.description == "Tell the current time, optionally in another city."
    assert t.examples[0] == "what time is it?" and len(t.examples) == 3
    assert rs.name is None and all(r.threshold is None for r in rs.routes)
    notes = "\n".join(got.notes)
    for words in ("renamed 'get_time'", "score_threshold 0.3", "function schemas (get_time)",
                  "'get_time': metadata", "encoder huggingface"):  # fmt: skip
        assert words in notes, words


def test_yaml_layers_read_like_json_ones(tmp_path):
    p = tmp_path / "layer.yaml"
    p.write_text(yaml.safe_dump(json.loads(LAYER.read_text())), encoding="utf-8")
    assert import_routes("semantic-router", p).routes == import_semantic_router(LAYER).routes


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ('{"routes": "x"}', "not a semantic-router layer"),
        ("[1, 2]", "not a semantic-router layer"),
        ('{"routes": [{"utterances": ["hi"]}]}', "route #1: needs a `name`"),
        ('{"routes": [{"name": "a", "utterances": []}]}', "neither a description nor utterances"),
        ('{"routes": [{"name": "a", "utterances": "hi"}]}', "`utterances` must be a list"),
        ('{"routes": []}', "has no routes"),
        ('{"routes": [', "not valid JSON"),
    ],
)
def test_bad_layers_say_what_is_wrong(tmp_path, content, words):
    p = tmp_path / "layer.json"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(RoutesError, match="layer.json") as e:
        import_semantic_router(p)
    assert words in str(e.value)


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(RoutesError, match="unknown format 'rasa'; formats: semantic-router"):
        import_routes("rasa", LAYER)
    with pytest.raises(RoutesError, match="file not found"):
        import_semantic_router(tmp_path / "none.json")


def test_cli_writes_a_routes_file_that_loads_and_never_overwrites(tmp_path, capsys):
    out = tmp_path / "assistant.yaml"
    argv = ["routes", "import", "semantic-router", str(LAYER), "--out", str(out), "--json"]
    assert main(argv) == 0
    io = capsys.readouterr()
    summary = json.loads(io.out)
    assert summary["routes"] == ["chitchat", "get_time", "politics"]
    assert "note: route 'get time': renamed 'get_time'" in io.err
    assert load_routes(out) == import_semantic_router(LAYER).routes
    assert main(["routes", "check", str(out)]) == 0
    before = out.read_bytes()
    assert main(argv) == 4  # exists: refused, untouched
    assert "pass --force" in capsys.readouterr().err and out.read_bytes() == before
    assert main([*argv, "--force"]) == 0


RHINO = Path(__file__).resolve().parents[1] / "data" / "rhino_smart_lighting.yml"


def test_rhino_context_becomes_routes_with_templates_and_lists():
    from voice_router.importers import import_rhino

    got = import_rhino(RHINO)
    rs = got.routes
    assert rs.names == ["changeColor", "changeBrightness", "setTemperature", "turnOff", "setScene"]
    color = rs.get("changeColor")
    assert color.sentences[0] == "(turn|make) [the] {location:location} lights {color:color}"
    assert color.sentences[2].endswith("(please|thanks)")  # the @please macro
    assert color.description == "turn the kitchen lights blue"
    assert rs.lists["location"]["values"][1] == {"in": "living room", "out": "living room"}
    assert rs.lists["pv_two_digit_integer"] == {"range": {"from": 0, "to": 99, "step": 1}}
    assert got.notes == []


def test_rhino_routes_fill_their_slots(hash_model):
    from voice_router.importers import import_rhino
    from voice_router.runnable import VoiceRouter

    r = VoiceRouter(import_rhino(RHINO).routes, model=hash_model, index=":memory:",
                    exemplar_voices=0, dispatch=False)  # fmt: skip
    # the fake model matches only stored phrasings: one slot away from the first values
    m = r.route_vector(hash_model.embed_text(["set the kitchen temperature to 87 degrees"])[0])
    assert m.route == "setTemperature" and m.args == {"location": "kitchen", "degrees": 87}
    m = r.route_vector(hash_model.embed_text(["switch the bedroom lights off thanks"])[0])
    assert m.route == "turnOff" and m.args == {"location": "bedroom", "device": "lights"}


def test_rhino_parts_without_an_equivalent_are_named(tmp_path):
    from voice_router.importers import import_rhino

    p = tmp_path / "ctx.yml"
    p.write_text(
        "context:\n  expressions:\n    spell:\n      - 'spell $pv.Alphabetic:letter'\n"
        "    go:\n      - 'go [left, right'\n      - 'go $dir:d'\n"
        "  slots:\n    dir: [left, right]\n",
        encoding="utf-8",
    )
    got = import_rhino(p)
    assert got.routes.names == ["go"] and got.routes.get("go").sentences == ["go {dir:d}"]
    assert any("built-in slot pv.Alphabetic" in n for n in got.notes)
    assert any("'go [left, right'" in n and "unclosed" in n for n in got.notes)
    assert any("intent 'spell': skipped" in n for n in got.notes)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("routes: []\n", "not a Rhino context"),
        ("context:\n  expressions:\n    a: ['go $dir:d']\n", "slot type 'dir' is used but not"),
        ("context:\n  expressions:\n    a: []\n", "intent 'a' needs a list of expressions"),
    ],
)
def test_bad_rhino_contexts_say_what_is_wrong(tmp_path, content, words):
    from voice_router.importers import import_rhino

    p = tmp_path / "ctx.yml"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(RoutesError, match=words):
        import_rhino(p)


def test_cli_imports_a_rhino_context(tmp_path, capsys):
    out = tmp_path / "lighting.yaml"
    assert main(["routes", "import", "rhino", str(RHINO), "--out", str(out)]) == 0
    assert "5 routes" in capsys.readouterr().out
    assert load_routes(out).get("setScene").sentences[1] == "it's {scene:scene} time"


def test_home_assistant_intents_become_routes_with_the_users_names(tmp_path):
    pytest.importorskip("home_assistant_intents")
    from voice_router.importers import import_home_assistant

    lists = tmp_path / "names.yaml"
    lists.write_text("lists:\n  name: [Bed Light, Front Door]\n  area: [Office]\n")
    got = import_home_assistant("en", lists)
    rs = got.routes
    assert {"HassTurnOn", "HassTurnOff", "HassStartTimer", "HassGetWeather"} <= set(rs.names)
    assert rs.lists["name"]["values"][0] == {"in": "Bed Light", "out": "Bed Light"}
    assert rs.lists["timer_minutes"]["range"]["from"] == 1
    assert all("<" not in s for r in rs.routes for s in r.sentences)  # rules written out
    notes = "\n".join(got.notes)
    assert "with a wildcard list skipped" in notes  # free-text lists are reported, not dropped
    assert "intent 'HassBroadcast': skipped" in notes
    assert "list 'floor': default values" in notes and "list 'name'" not in notes


def test_home_assistant_routes_fill_their_slots(hash_model):
    pytest.importorskip("home_assistant_intents")
    from voice_router.importers import import_home_assistant
    from voice_router.runnable import VoiceRouter
    from voice_router.templates import expand_templates

    rs = import_home_assistant("en").routes
    timer = rs.get("HassStartTimer")
    ph = next(p for p in expand_templates(timer.sentences, rs.lists)
              if p.slots.get("minutes") == 25 and set(p.slots) == {"minutes"})  # fmt: skip
    r = VoiceRouter(rs, model=hash_model, index=":memory:", exemplar_voices=0, dispatch=False)
    m = r.route_vector(hash_model.embed_text([ph.text])[0])
    assert m.route == "HassStartTimer" and m.args == {"minutes": 25}, ph.text


def test_cli_home_assistant_and_a_missing_source(tmp_path, capsys):
    pytest.importorskip("home_assistant_intents")
    out = tmp_path / "ha.yaml"
    assert main(["routes", "import", "home-assistant", "--language", "en", "--out", str(out)]) == 0
    assert "routes from home-assistant-intents (en)" in capsys.readouterr().out
    assert "HassStartTimer" in load_routes(out).names
    assert main(["routes", "import", "rhino", "--out", str(tmp_path / "x.yaml")]) == 4
    assert "give the SOURCE file to import" in capsys.readouterr().err
