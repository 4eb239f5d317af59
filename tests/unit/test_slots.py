"""Routes with `sentences:` templates and `lists:`: the templates expand one slot at a time into
text points carrying their slot values; the matched route's slots are scored from those points
and reach the tool as validated arguments."""

from __future__ import annotations

import pytest
from langchain_core.tools import tool

from voice_router.errors import RoutesError
from voice_router.points import PointBuilder
from voice_router.routes import dump_routes, load_routes, parse_routes
from voice_router.runnable import VoiceRouter
from voice_router.templates import expand_templates, template_slots

ROUTES = """\
lists:
  area: [kitchen, office, {in: living room, out: living_room}]
  minutes: {range: {from: 1, to: 30}}
routes:
  - name: lights_on
    description: turn the lights on
    sentences: ["(turn|switch) on [the] {area} lights"]
    tool: lights_on
  - name: set_timer
    description: start a countdown timer
    sentences: ["set a timer [for {minutes} minutes]", "wake me in {minutes} minutes"]
    tool: set_timer
    args: {label: kitchen timer}
"""
CALLS: list[dict] = []


@tool
def lights_on(area: str) -> str:
    """Turn the lights on in an area."""
    CALLS.append({"area": area})
    return f"lights on in {area}"


@tool
def set_timer(label: str, minutes: int | None = None) -> str:
    """Start a timer."""
    CALLS.append({"label": label, "minutes": minutes})
    return f"{label}: {minutes} min"


@pytest.fixture
def router(hash_model):
    CALLS.clear()
    return VoiceRouter(parse_routes(ROUTES), model=hash_model, tools=[lights_on, set_timer],
                       index=":memory:", exemplar_voices=0)  # fmt: skip


def test_expansion_grows_with_the_sum_of_the_lists_not_their_product():
    lists = parse_routes(ROUTES).lists
    lists["b"] = {"values": [{"in": f"b{i}", "out": i} for i in range(20)]}
    lists["c"] = {"values": [{"in": f"c{i}", "out": i} for i in range(20)]}
    got = expand_templates(["{area} {b} {c}"], lists)
    assert len(got) == 1 + 2 + 19 + 19  # carrier + the other values of each slot
    assert {p.varies for p in got} == {"", "area", "b", "c"}
    assert all(p.slots.keys() == {"area", "b", "c"} for p in got)
    office = next(p for p in got if p.text == "office b0 c0")
    assert office.slots == {"area": "office", "b": 0, "c": 0} and office.varies == "area"


def test_phrasings_become_text_points_with_their_slot_values(hash_model):
    specs = PointBuilder(hash_model, exemplar_voices=0).plan(parse_routes(ROUTES))
    by_text = {s.text: s for s in specs}
    s = by_text["switch on the living room lights"]
    assert s.route == "lights_on" and s.slots == {"area": "living_room"}
    assert by_text["set a timer"].slots == {} and by_text["set a timer"].varies == ""
    assert by_text["wake me in 7 minutes"].slots == {"minutes": 7}


@pytest.mark.parametrize(
    ("said", "route", "args"),
    [
        ("switch on the office lights", "lights_on", {"area": "office"}),
        ("turn on living room lights", "lights_on", {"area": "living_room"}),
        ("turn on the kitchen lights", "lights_on", {"area": "kitchen"}),  # a carrier
        ("wake me in 12 minutes", "set_timer", {"label": "kitchen timer", "minutes": 12}),
        ("set a timer", "set_timer", {"label": "kitchen timer"}),  # optional slot not said
    ],
)
def test_slot_values_reach_the_tool(router, hash_model, said, route, args):
    m = router.route_vector(hash_model.embed_text([said])[0])
    assert m.route == route and m.args == args
    assert CALLS == [{"minutes": None, **args}] if route == "set_timer" else CALLS == [args]
    d = m.to_dict()
    assert d["args"] == args
    for name, value in args.items():
        if name in d["slots"]:
            assert d["slots"][name]["value"] == value and d["slots"][name]["score"] > 0.99


def test_a_slot_value_the_tool_refuses_is_a_tool_error_not_a_crash(hash_model):
    @tool
    def strict(area: int) -> str:
        """Takes a number."""
        return "never"

    text = ROUTES.replace("tool: lights_on", "tool: strict")
    r = VoiceRouter(parse_routes(text), model=hash_model, tools=[strict, set_timer],
                    index=":memory:", exemplar_voices=0, strict_tools=False)  # fmt: skip
    m = r.route_vector(hash_model.embed_text(["switch on the office lights"])[0])
    assert m.route == "lights_on" and m.args == {"area": "office"}
    assert "tool not called" in (m.tool_error or "") and "area" in m.tool_error


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            '  - name: x\n    description: y\n    sentences: ["go {nowhere}"]\n',
            "uses {nowhere}, which `lists:` does not define",
        ),  # fmt: skip
        ('  - name: x\n    description: y\n    sentences: ["go (a|b"]\n', "does not parse"),
        ('  - name: x\n    description: y\n    sentences: ["go <rule>"]\n', "expansion rules"),
    ],
)
def test_bad_templates_name_file_line_route(tmp_path, text, words):
    p = tmp_path / "r.yaml"
    p.write_text(ROUTES + text, encoding="utf-8")
    with pytest.raises(RoutesError) as e:
        load_routes(p)
    assert f"{p}:" in str(e.value) and "route 'x': sentences.0:" in str(e.value)
    assert words in str(e.value)


@pytest.mark.parametrize(
    ("lists", "words"),
    [
        ("lists: {area: {range: {from: 5, to: 1}}}\n", "range: must give 1 to 200 values"),
        ("lists: {area: {values: []}}\n", "values: must be a non-empty list"),
        ("lists: {area: [{out: x}]}\n", "a value must be a phrase"),
        ("lists: {1a: [x]}\n", "not a valid list name"),
    ],
)
def test_bad_lists_are_errors(lists, words):
    with pytest.raises(RoutesError, match=words):
        parse_routes(lists + "routes:\n  - name: a\n    description: b\n")


def test_templates_and_lists_round_trip_through_a_file(tmp_path):
    rs = parse_routes(ROUTES)
    dump_routes(rs, tmp_path / "r.yaml")
    assert load_routes(tmp_path / "r.yaml") == rs


def test_eval_counts_command_accuracy_from_the_args_column(tmp_path, hash_model):
    import numpy as np
    import soundfile as sf

    from voice_router.audio.io import load_audio
    from voice_router.evaluate import evaluation_report, format_eval, read_manifest, score_clips

    said = {  # clip -> what the fake model hears
        "a.wav": "switch on the office lights",
        "b.wav": "turn on the kitchen lights",
        "c.wav": "wake me in 12 minutes",
    }
    for i, (name, text) in enumerate(said.items()):
        clip = np.random.default_rng(i).uniform(-0.3, 0.3, 16000).astype(np.float32)
        sf.write(tmp_path / name, clip, 16000)
        decoded = load_audio(tmp_path / name)
        hash_model.register_audio(decoded, text)
        hash_model.register_audio(load_audio((decoded, 16000)), text)  # as the router decodes
    (tmp_path / "m.csv").write_text(
        "path,label,args\n"
        'a.wav,lights_on,"{""area"": ""office""}"\n'
        'b.wav,lights_on,"{""area"": ""office""}"\n'  # heard kitchen: route right, slot wrong
        'c.wav,set_timer,"{""minutes"": 12, ""label"": ""kitchen timer""}"\n',
        encoding="utf-8",
    )
    router = VoiceRouter(parse_routes(ROUTES), model=hash_model, index=":memory:",
                         exemplar_voices=0, dispatch=False)  # fmt: skip
    clips = score_clips(router, read_manifest(tmp_path / "m.csv"))
    rep = evaluation_report(clips, router.routes)
    assert rep["accuracy"] == 1.0 and rep["n_with_args"] == 3
    assert rep["command_accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert rep["command_top1_accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert rep["slot_accuracy"] == {"area": 0.5, "label": 1.0, "minutes": 1.0}
    assert rep["slot_confusions"] == [
        {"arg": "area", "expected": "office", "got": "kitchen", "count": 1}
    ]
    assert "command accuracy  0.667" in format_eval(rep)


def test_a_bad_args_cell_names_its_line(tmp_path):
    from voice_router.errors import ManifestError
    from voice_router.evaluate import read_manifest

    (tmp_path / "m.csv").write_text("path,label,args\na.wav,x,{nope\nb.wav,x,[1]\n")
    with pytest.raises(ManifestError, match=r"m.csv:2: args is not JSON"):
        read_manifest(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("path,label,args\nb.wav,x,[1]\n")
    with pytest.raises(ManifestError, match=r"m.csv:2: args must be a JSON object"):
        read_manifest(tmp_path / "m.csv")


def test_every_value_of_a_long_list_is_phrased_despite_alternatives():
    lists = {"minutes": {"range": {"from": 1, "to": 150, "step": 1}}}
    got = expand_templates(["(set|start) [a] timer for {minutes} (minutes|mins) [please]"], lists)
    assert {p.slots["minutes"] for p in got} == set(range(1, 151))
    assert len(got) <= 1 + 48 + 150 + 48  # carriers, the sweep, other wordings: bounded


def test_a_budget_cut_keeps_every_template_and_every_value_before_wordings():
    lists = {"m": {"range": {"from": 1, "to": 100, "step": 1}}}
    templates = [f"(do|run) task {i} for {{m}} [minutes]" for i in range(40)]
    got = expand_templates(templates, lists, budget=400)
    assert len(got) == 400
    assert {p.slots["m"] for p in got} == set(range(1, 101))  # every value once
    assert all(any(f"task {i} " in p.text for p in got) for i in range(40))  # every template


def test_a_warm_start_reads_cached_phrasings_without_importing_hassil(tmp_path):
    """Planning a template route set twice: the second process never imports hassil."""
    import os
    import subprocess
    import sys

    (tmp_path / "r.yaml").write_text(ROUTES, encoding="utf-8")
    code = (
        "import sys\n"
        "from voice_router.routes import load_routes\n"
        "from voice_router.points import PointBuilder\n"
        "from voice_router.model.fake import HashEmbeddingModel\n"
        f"rs = load_routes({str(tmp_path / 'r.yaml')!r})\n"
        "n = len(PointBuilder(HashEmbeddingModel(8), exemplar_voices=0).plan(rs))\n"
        "print(n, 'hassil' in sys.modules)\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    run = [sys.executable, "-c", code]
    first = subprocess.run(run, env=env, capture_output=True, text=True, check=True).stdout
    second = subprocess.run(run, env=env, capture_output=True, text=True, check=True).stdout
    assert first.split()[1] == "True" and second.split() == [first.split()[0], "False"]
    for f in (tmp_path / "cache").rglob("*.json"):
        f.write_text("{damaged")  # a damaged entry is expanded again, same points
    third = subprocess.run(run, env=env, capture_output=True, text=True, check=True).stdout
    assert third.split() == [first.split()[0], "True"]


def test_template_slots_names_each_slot_and_its_list_once():
    got = template_slots(
        ["set a timer for {minutes} minutes", "(start|set) a {minutes:length} minute timer",
         "[please] dim the {area} lights", "set a timer for {minutes} minutes in the {area}"]
    )  # fmt: skip
    assert got == {"minutes": "minutes", "length": "minutes", "area": "area"}
    assert list(got) == ["minutes", "length", "area"]  # order of first use
    assert template_slots(["no slots here"]) == {}


def test_command_top1_accuracy_takes_the_best_route_without_the_threshold():
    """A clip whose best route is right with every argument, but under the threshold: a
    command at top-1, not an accepted command."""
    from voice_router.evaluate import ClipScore, evaluation_report

    routes = parse_routes(
        "threshold: 0.7\nlists:\n  minutes: {range: {from: 1, to: 60}}\nroutes:\n"
        "  - {name: timer, description: set a timer, sentences: ['timer for {minutes}']}\n"
        "  - {name: lights, description: lights on}\n"
    )
    clips = [
        ClipScore("a.wav", "timer", {"timer": 0.5, "lights": 0.1}, expected_args={"minutes": 12},
                  slots={"minutes": 12}),
        ClipScore("b.wav", "timer", {"timer": 0.9, "lights": 0.1}, expected_args={"minutes": 5},
                  slots={"minutes": 5}),
        ClipScore("c.wav", "timer", {"timer": 0.9, "lights": 0.1}, expected_args={"minutes": 7},
                  slots={"minutes": 9}),
    ]  # fmt: skip
    rep = evaluation_report(clips, routes)
    assert rep["command_accuracy"] == pytest.approx(1 / 3, abs=1e-4)
    assert rep["command_top1_accuracy"] == pytest.approx(2 / 3, abs=1e-4)
