"""PointBuilder: planning a route set's points embeds nothing; embedding yields what the store
upserts (payload and vector per point)."""

from __future__ import annotations

import numpy as np
import pytest

from voice_router.point_schema import KIND_AUDIO, KIND_TEXT, P_KIND, P_ROUTE, P_TEXT, point_id
from voice_router.points import PointBuilder
from voice_router.routes import parse_routes

ROUTES = """\
routes:
  - name: door
    description: open the door
    examples: ["door open", "let me in"]
  - name: lamp
    description: turn on the lamp
"""


class _NoEmbedding:
    """A model that must not be asked for embeddings."""

    def __init__(self, model):
        self.fingerprint, self.dim = model.fingerprint, model.dim
        self.sample_rate, self.max_seconds = model.sample_rate, model.max_seconds

    def embed_text(self, texts):
        raise AssertionError("plan() embedded text")

    def embed_audio(self, audios):
        raise AssertionError("plan() embedded audio")


def test_plan_lists_every_text_with_its_id_and_embeds_nothing(hash_model):
    rs = parse_routes(ROUTES)
    specs = PointBuilder(_NoEmbedding(hash_model), exemplar_voices=0).plan(rs)
    assert [(s.route, s.text) for s in specs] == [
        ("door", "open the door"),
        ("door", "door open"),
        ("door", "let me in"),
        ("lamp", "turn on the lamp"),
    ]
    assert all(s.kind == KIND_TEXT for s in specs)
    assert [s.id for s in specs] == [
        point_id(hash_model.fingerprint, s.route, KIND_TEXT, s.text) for s in specs
    ]


def test_plan_adds_one_audio_point_per_text_and_voice(monkeypatch, hash_model):
    from voice_router import tts

    class Voice:
        def __init__(self, key: str) -> None:
            self.key = key

    monkeypatch.setattr(tts, "tts_available", lambda: True)
    voices = [Voice(f"v{i}") for i in range(5)]
    monkeypatch.setattr(tts, "default_exemplar_voices", lambda n: voices[:n])
    specs = PointBuilder(_NoEmbedding(hash_model), exemplar_voices=2).plan(parse_routes(ROUTES))
    audio = [s for s in specs if s.kind == KIND_AUDIO]
    assert len(audio) == 4 * 2 and {s.voice for s in audio} == {"v0", "v1"}
    assert len({s.id for s in specs}) == len(specs) == 4 * 3


def test_embed_yields_points_with_the_model_vector_and_payload(hash_model):
    builder = PointBuilder(hash_model, exemplar_voices=0)
    specs = builder.plan(parse_routes(ROUTES))
    points = [p for batch in builder.embed(specs) for p in batch]
    assert [p.id for p in points] == [s.id for s in specs]
    for p, s in zip(points, specs, strict=True):
        assert p.payload[P_ROUTE] == s.route and p.payload[P_KIND] == KIND_TEXT
        assert p.payload[P_TEXT] == s.text
        np.testing.assert_allclose(p.vector, hash_model.embed_text([s.text])[0], atol=1e-6)


def test_enrolled_points_are_keyed_by_the_clip_content(hash_model):
    builder = PointBuilder(hash_model, exemplar_voices=0)
    a = np.random.default_rng(0).uniform(-0.3, 0.3, 8000).astype(np.float32)
    one = builder.enrolled("door", [a, a * 0.5], ["me.wav", "me.wav"])
    assert len({p.id for p in one}) == 2  # same label, different audio: two points
    assert builder.enrolled("door", [a], ["me.wav"])[0].id == one[0].id
    with pytest.raises(ValueError, match="same length"):
        builder.enrolled("door", [a], [])
