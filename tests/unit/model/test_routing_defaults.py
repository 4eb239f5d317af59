"""A model folder's routing.json: read, written, and refused clearly when malformed; the
bundled models' specs are valid fusion specs."""

from __future__ import annotations

import json

import pytest

from voice_router.decision import Fusion
from voice_router.errors import ModelError
from voice_router.model.catalog import FOLDERS
from voice_router.model.routing_defaults import ROUTING_NAME, read_fusion, write_fusion


def test_round_trip_and_absent_file(tmp_path) -> None:
    assert read_fusion(tmp_path) is None
    path = write_fusion(tmp_path, "weighted:0.3,0.7;k=3", "dev halves")
    assert path.name == ROUTING_NAME
    assert read_fusion(tmp_path) == "weighted:0.3,0.7;k=3"
    assert json.loads(path.read_text())["chosen_on"] == "dev halves"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "cannot read"),
        ('{"fusion": 0.3}', "must be a spec string"),
        ('{"fusion": "  "}', "must be a spec string"),
    ],
)
def test_malformed_files_say_what_is_wrong(tmp_path, text: str, match: str) -> None:
    (tmp_path / ROUTING_NAME).write_text(text)
    with pytest.raises(ModelError, match=match):
        read_fusion(tmp_path)


def test_a_file_without_a_fusion_key_means_the_routers_default(tmp_path) -> None:
    (tmp_path / ROUTING_NAME).write_text('{"chosen_on": "nothing yet"}')
    assert read_fusion(tmp_path) is None


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_bundled_specs_parse(name: str) -> None:
    spec = read_fusion(FOLDERS[name])
    fusion = Fusion.parse(spec)  # raises VoiceRouterError on a bad spec
    assert spec is None or Fusion.parse(str(fusion)) == fusion


def test_decision_defaults_round_trip_and_keep_the_fusion(tmp_path) -> None:
    from voice_router.model.routing_defaults import read_decision_defaults, write_decision_defaults

    assert read_decision_defaults(tmp_path) == {}
    write_fusion(tmp_path, "weighted:0.3,0.7;k=3", "dev halves")
    write_decision_defaults(tmp_path, 0.55, 0.02, "fit on dev halves")
    assert read_decision_defaults(tmp_path) == {"threshold": 0.55, "margin": 0.02}
    assert read_fusion(tmp_path) == "weighted:0.3,0.7;k=3"  # kept
    (tmp_path / ROUTING_NAME).write_text('{"threshold": "high"}')
    with pytest.raises(ModelError, match="'threshold' must be a number"):
        read_decision_defaults(tmp_path)
