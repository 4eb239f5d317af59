"""RouteIndex / backends: deterministic ids, incremental sync, exemplars, manifests, locks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voice_router.errors import IndexStoreError
from voice_router.index import RouteIndex
from voice_router.point_schema import KIND_AUDIO, KIND_TEXT, P_SOURCE, SOURCE_ENROLLED, point_id
from voice_router.points import PointBuilder
from voice_router.routes import parse_routes
from voice_router.store import MANIFEST_NAME, ClientBackend, EdgeBackend

ONE_ROUTE = """\
routes:
  - name: a
    description: open the door
    examples: ["door open"]
"""


def _index(model, backend, set_id: str = "inline") -> RouteIndex:
    return RouteIndex(backend, dim=model.dim, fingerprint=model.fingerprint, set_id=set_id)


def _mem_index(model, exemplar_voices: int | None = 0) -> tuple[RouteIndex, PointBuilder]:
    """An in-memory index of `model`'s vectors and the builder that syncs route sets into it."""
    return _index(model, ClientBackend(":memory:")), PointBuilder(model, exemplar_voices)


def test_point_id_is_deterministic_and_sensitive_to_every_field():
    base = point_id("fp", "r", "text", "hello", "")
    assert base == point_id("fp", "r", "text", "hello", "")
    variants = {
        point_id("fp2", "r", "text", "hello", ""),
        point_id("fp", "r2", "text", "hello", ""),
        point_id("fp", "r", "audio", "hello", ""),
        point_id("fp", "r", "text", "hello!", ""),
        point_id("fp", "r", "text", "hello", "v1"),
    }
    assert base not in variants and len(variants) == 5


def test_sync_writes_each_text_once_and_restart_writes_nothing(hash_model, route_set):
    idx, pts = _mem_index(hash_model)
    n_texts = sum(len(r.texts()) for r in route_set.routes)
    first = pts.sync(idx, route_set)
    assert (first.added, first.removed, first.kept) == (n_texts, 0, 0)
    again = pts.sync(idx, route_set)
    assert (again.added, again.removed, again.kept) == (0, 0, n_texts)
    assert idx.count() == n_texts


def test_editing_one_route_reembeds_only_its_changed_text(hash_model, route_set):
    idx, pts = _mem_index(hash_model)
    pts.sync(idx, route_set)
    before = {p.id for p in idx.backend.scroll(idx.collection, with_vectors=False)}
    calls: list[list[str]] = []
    real = hash_model.embed_text

    def spy(texts):
        calls.append(list(texts))
        return real(texts)

    hash_model.embed_text = spy
    edited = route_set.replace()
    edited.routes[2].examples = ["is it going to snow"]
    rep = pts.sync(idx, edited)
    assert (rep.added, rep.removed) == (1, 1)
    assert calls == [["is it going to snow"]]
    after = {p.id for p in idx.backend.scroll(idx.collection, with_vectors=False)}
    assert len(before - after) == 1 and len(after - before) == 1


def test_removed_route_loses_its_points(hash_model, route_set):
    idx, pts = _mem_index(hash_model)
    pts.sync(idx, route_set)
    smaller = route_set.replace()
    smaller.routes = smaller.routes[:2]
    rep = pts.sync(idx, smaller)
    assert rep.removed == len(route_set.routes[2].texts())
    assert set(idx.vectors().route) == {"lights_on", "lights_off"}


def test_vectors_matrix_matches_embeddings_and_qdrant_query_agrees(hash_model, route_set):
    idx, pts = _mem_index(hash_model)
    pts.sync(idx, route_set)
    rv = idx.vectors()
    assert rv.vectors.shape == (idx.count(), hash_model.dim)
    i = rv.text.index("will it rain today")
    assert rv.route[i] == "weather" and rv.kind[i] == KIND_TEXT
    np.testing.assert_allclose(
        rv.vectors[i], hash_model.embed_text(["will it rain today"])[0], atol=1e-6
    )
    q = hash_model.embed_text(["switch the lamp on"])[0]
    hits = idx.search(q, limit=3)
    assert hits[0].payload["text"] == "switch the lamp on"
    assert hits[0].score == pytest.approx(float(np.max(rv.vectors @ q)), abs=1e-5)


def test_edge_index_persists_across_reopen(tmp_path, hash_model, route_set):
    pts = PointBuilder(hash_model, exemplar_voices=0)
    with _index(hash_model, EdgeBackend(tmp_path / "idx")) as idx:
        added = pts.sync(idx, route_set).added
        mat = idx.vectors().vectors.copy()
    with _index(hash_model, EdgeBackend(tmp_path / "idx")) as idx:
        rep = pts.sync(idx, route_set)
        assert rep.added == 0 and rep.kept == added
        np.testing.assert_allclose(idx.vectors().vectors, mat, atol=1e-6)
    manifest = json.loads((tmp_path / "idx" / idx.collection / MANIFEST_NAME).read_text())
    assert manifest["fingerprint"] == hash_model.fingerprint and manifest["dim"] == hash_model.dim


def test_collection_name_carries_the_fingerprint(hash_model):
    from voice_router.model.fake import HashEmbeddingModel

    other = HashEmbeddingModel(dim=32, seed=1)
    backend = ClientBackend(":memory:")
    a = _index(hash_model, backend)
    b = _index(other, backend)
    assert a.collection != b.collection
    assert hash_model.fingerprint in a.collection


def test_second_open_of_an_edge_folder_is_refused_at_once(tmp_path, hash_model):
    first = _index(hash_model, EdgeBackend(tmp_path))
    with pytest.raises(IndexStoreError, match="already open in this process"):
        _index(hash_model, EdgeBackend(tmp_path))
    first.close()
    _index(hash_model, EdgeBackend(tmp_path)).close()  # lock released


def test_leftover_half_written_manifest_is_not_mistaken_for_foreign_data(tmp_path, hash_model):
    col = tmp_path / f"routes_{hash_model.fingerprint}_inline"
    col.mkdir()
    (col / (MANIFEST_NAME + ".tmp")).write_text('{"format": "voice-rou')  # killed mid-write
    pts = PointBuilder(hash_model, exemplar_voices=0)
    with _index(hash_model, EdgeBackend(tmp_path)) as idx:
        assert pts.sync(idx, parse_routes(ONE_ROUTE)).added == 2
    assert not (col / (MANIFEST_NAME + ".tmp")).exists()


def test_foreign_and_corrupt_folders_are_refused(tmp_path, hash_model):
    col = tmp_path / f"routes_{hash_model.fingerprint}_inline"
    col.mkdir()
    (col / "notes.txt").write_text("someone else's data")
    with pytest.raises(IndexStoreError, match="not a voice-router index"):
        _index(hash_model, EdgeBackend(tmp_path))
    (col / "notes.txt").unlink()
    (col / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(IndexStoreError, match="corrupt"):
        _index(hash_model, EdgeBackend(tmp_path))


def test_client_backend_refuses_other_dimension():
    backend = ClientBackend(":memory:")
    backend.open_collection("lib", 16, "fpA", "library")
    with pytest.raises(IndexStoreError, match="dimension 16"):
        backend.open_collection("lib", 32, "fpA", "library")


def test_invalid_collection_name_is_refused():
    with pytest.raises(IndexStoreError, match="invalid collection name"):
        ClientBackend(":memory:").open_collection("../escape", 8, "fp", "library")


class FakeVoice:
    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def key(self) -> str:
        return f"fake:{self.name}"


def _fake_tts(monkeypatch, model, *, available=True):
    """TTS that 'speaks' a text as a unique array the hash model embeds like that text."""
    from voice_router import tts

    spoken: list[tuple[str, str]] = []

    def synthesize(text, voice):
        spoken.append((text, voice.key))
        seed = abs(hash((text, voice.key))) % 2**32
        clip = np.random.default_rng(seed).uniform(-0.5, 0.5, 8000).astype(np.float32)
        model.register_audio(clip, text)
        return clip

    monkeypatch.setattr(tts, "tts_available", lambda: available)
    monkeypatch.setattr(
        tts, "default_exemplar_voices", lambda n=12: [FakeVoice(str(i)) for i in range(n)]
    )
    monkeypatch.setattr(tts, "synthesize", synthesize)
    return spoken


def test_tts_exemplars_are_synthesised_once_per_text_and_voice(monkeypatch, hash_model):
    spoken = _fake_tts(monkeypatch, hash_model)
    rs = parse_routes(ONE_ROUTE)
    idx, pts = _mem_index(hash_model, exemplar_voices=3)
    rep = pts.sync(idx, rs)
    assert rep.added == 2 + 2 * 3
    assert sorted(spoken) == sorted((t, f"fake:{i}") for t in rs.routes[0].texts() for i in "012")
    spoken.clear()
    assert pts.sync(idx, rs).added == 0 and spoken == []
    rv = idx.vectors()
    assert rv.kind.count(KIND_AUDIO) == 6
    # The fake speaks each text so that it embeds exactly like the text.
    j = next(i for i, k in enumerate(rv.kind) if k == KIND_AUDIO)
    np.testing.assert_allclose(rv.vectors[j], hash_model.embed_text([rv.text[j]])[0], atol=1e-6)


def test_no_tts_means_text_points_only_with_a_reason(monkeypatch, hash_model):
    _fake_tts(monkeypatch, hash_model, available=False)
    idx, pts = _mem_index(hash_model, exemplar_voices=None)
    rep = pts.sync(idx, parse_routes(ONE_ROUTE))
    assert rep.added == 2 and "espeak-ng" in (rep.exemplars_skipped or "")


def test_examples_audio_files_become_audio_points_and_reembed_when_changed(tmp_path, hash_model):
    clip = np.sin(np.linspace(0, 200, 16000)).astype(np.float32) * 0.3
    sf.write(tmp_path / "me.wav", clip, 16000)
    (tmp_path / "r.yaml").write_text(ONE_ROUTE + '    examples_audio: ["me.wav"]\n')
    from voice_router.routes import load_routes

    rs = load_routes(tmp_path / "r.yaml")
    idx, pts = _mem_index(hash_model)
    assert pts.sync(idx, rs).added == 3
    assert pts.sync(idx, rs).added == 0
    sf.write(tmp_path / "me.wav", clip * 0.5, 16000)  # same path, new content
    rep = pts.sync(idx, rs)
    assert (rep.added, rep.removed) == (1, 1)
    assert idx.vectors().kind.count(KIND_AUDIO) == 1


def test_examples_audio_file_gone_after_loading_is_a_clear_error(tmp_path, hash_model):
    sf.write(tmp_path / "gone.wav", np.full(1600, 0.1, np.float32), 16000)
    (tmp_path / "r.yaml").write_text(ONE_ROUTE + '    examples_audio: ["gone.wav"]\n')
    from voice_router.routes import load_routes

    rs = load_routes(tmp_path / "r.yaml")
    (tmp_path / "gone.wav").unlink()
    with pytest.raises(IndexStoreError, match=r"route 'a'.*gone\.wav"):
        _idx, _pts = _mem_index(hash_model)
        _pts.sync(_idx, rs)


def test_enrolled_clips_survive_sync_until_their_route_goes(hash_model, route_set):
    idx, pts = _mem_index(hash_model)
    pts.sync(idx, route_set)
    clip = np.full(4000, 0.1, np.float32)
    assert pts.enroll(idx, "weather", [clip], ["mine.wav"]) == 1
    assert pts.enroll(idx, "weather", [clip], ["mine.wav"]) == 1  # same id: upsert, no duplicate
    rep = pts.sync(idx, route_set)
    assert rep.added == 0 and rep.removed == 0
    sources = [p.payload[P_SOURCE] for p in idx.backend.scroll(idx.collection, with_vectors=False)]
    assert sources.count(SOURCE_ENROLLED) == 1
    smaller = route_set.replace()
    smaller.routes = smaller.routes[:2]
    pts.sync(idx, smaller)
    sources = [p.payload[P_SOURCE] for p in idx.backend.scroll(idx.collection, with_vectors=False)]
    assert SOURCE_ENROLLED not in sources


def test_edge_refuses_writes_when_disk_is_nearly_full(tmp_path, hash_model, route_set):
    idx, pts = _index(hash_model, EdgeBackend(tmp_path)), PointBuilder(hash_model, 0)
    idx.backend.min_free_bytes = 1 << 62  # pretend the disk is full
    with pytest.raises(IndexStoreError, match="disk full"):
        pts.sync(idx, route_set)
    idx.backend.min_free_bytes = 0
    assert pts.sync(idx, route_set).added > 0
    idx.close()


def test_default_index_path_is_under_user_data_dir():
    from platformdirs import user_data_dir

    from voice_router.store import default_index_path

    assert default_index_path() == Path(user_data_dir("voice-router")) / "index"


# -- audio library and the LangChain Embeddings adapter -----------------------------------------


def _tone_file(path: Path, freq: float) -> None:
    t = np.arange(4000) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)


def test_library_indexes_searches_and_reports_unreadable(tmp_path, hash_model):
    from voice_router.audio.io import load_audio
    from voice_router.library import AudioLibrary

    d = tmp_path / "lib"
    (d / "sub").mkdir(parents=True)
    _tone_file(d / "bark.wav", 300)
    _tone_file(d / "sub" / "rain.wav", 500)
    _tone_file(d / ".hidden.wav", 700)
    (d / "notes.txt").write_text("not audio")
    (d / "bad.flac").write_bytes(b"garbage")
    hash_model.register_audio(load_audio(d / "bark.wav"), "a dog barking")
    hash_model.register_audio(load_audio(d / "sub" / "rain.wav"), "rain on a window")
    lib = AudioLibrary(hash_model, "sounds", ClientBackend(":memory:"))
    rep = lib.index_dir(d)
    assert (rep.indexed, rep.skipped) == (2, 0)
    assert [p for p, _ in rep.failed] == [str((d / "bad.flac").resolve())]
    hits = lib.search("dog barking", k=5)
    assert [Path(h.path).name for h in hits] == ["bark.wav", "rain.wav"]
    assert hits[0].score > hits[1].score and hits[0].to_dict()["duration_s"] == 0.25
    assert lib.search_audio(d / "sub" / "rain.wav", k=1)[0].path.endswith("rain.wav")
    with pytest.raises(IndexStoreError, match="empty"):
        lib.search("  ")
    with pytest.raises(IndexStoreError, match="k must be"):
        lib.search("rain", k=0)


def test_library_rerun_skips_without_decoding(tmp_path, hash_model, monkeypatch):
    from voice_router.library import AudioLibrary

    d = tmp_path / "lib"
    d.mkdir()
    for i in range(5):
        _tone_file(d / f"{i}.wav", 200 + 50 * i)
    lib = AudioLibrary(hash_model, "sounds", ClientBackend(":memory:"))
    assert lib.index_dir(d, batch_size=2).indexed == 5

    def no_decoding(*a, **k):
        raise AssertionError("a file already indexed was decoded again")

    monkeypatch.setattr("voice_router.audio.io.load_audio", no_decoding)
    rep = lib.index_dir(d)
    assert (rep.indexed, rep.skipped, rep.removed) == (0, 5, 0) and lib.count() == 5


def test_library_missing_folder_is_an_audio_error(tmp_path, hash_model):
    from voice_router.errors import AudioError
    from voice_router.library import AudioLibrary

    lib = AudioLibrary(hash_model, "sounds", ClientBackend(":memory:"))
    with pytest.raises(AudioError, match="not a folder"):
        lib.index_dir(tmp_path / "nope")


def test_embeddings_adapter_matches_the_model(hash_model):
    from langchain_core.embeddings import Embeddings

    from voice_router.embeddings import VoiceRouterEmbeddings

    emb = VoiceRouterEmbeddings(hash_model)
    assert isinstance(emb, Embeddings)
    docs = emb.embed_documents(["turn on the lights", "rain"])
    np.testing.assert_allclose(
        docs, hash_model.embed_text(["turn on the lights", "rain"]), atol=1e-6
    )
    assert emb.embed_query("rain") == pytest.approx(docs[1])
    assert emb.embed_documents([]) == []
    assert isinstance(VoiceRouterEmbeddings("hash-16").embed_query("x"), list)


def test_two_routes_files_share_a_folder_without_evicting_each_other(tmp_path, hash_model):
    from voice_router.index import route_set_id
    from voice_router.routes import load_routes

    (tmp_path / "home.yaml").write_text(ONE_ROUTE)
    (tmp_path / "office.yaml").write_text(ONE_ROUTE.replace("open the door", "print a page"))
    home, office = load_routes(tmp_path / "home.yaml"), load_routes(tmp_path / "office.yaml")
    assert route_set_id(home) != route_set_id(office) and route_set_id(None) == "inline"
    backend = EdgeBackend(tmp_path / "idx")
    a = _index(hash_model, backend, route_set_id(home))
    b = _index(hash_model, backend, route_set_id(office))
    pts = PointBuilder(hash_model, exemplar_voices=0)
    assert pts.sync(a, home).added == 2 and pts.sync(b, office).added == 2
    assert pts.sync(a, home).added == 0 and pts.sync(b, office).added == 0  # nothing re-embedded
    assert a.collection != b.collection
    backend.close()


def test_route_set_identity_survives_moves_and_can_be_declared(tmp_path):
    """A set is its declared `name:`, else its file name: a moved or re-cloned file keeps its
    collection (and its synthesised exemplars)."""
    from voice_router.errors import RoutesError
    from voice_router.index import route_set_id
    from voice_router.routes import load_routes

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "home.yaml").write_text(ONE_ROUTE)
    (tmp_path / "b" / "home.yaml").write_text(ONE_ROUTE)
    (tmp_path / "b" / "my house!.yaml").write_text("name: kitchen-v2\n" + ONE_ROUTE)
    ids = [route_set_id(load_routes(tmp_path / p)) for p in ("a/home.yaml", "b/home.yaml")]
    assert ids == ["home", "home"]
    assert route_set_id(load_routes(tmp_path / "b" / "my house!.yaml")) == "kitchen-v2"
    (tmp_path / "b" / "my house!.yaml").write_text(ONE_ROUTE)
    assert route_set_id(load_routes(tmp_path / "b" / "my house!.yaml")) == "my-house-"
    (tmp_path / "bad.yaml").write_text("name: ../etc\n" + ONE_ROUTE)
    with pytest.raises(RoutesError, match="name"):
        load_routes(tmp_path / "bad.yaml")


def test_index_path_memory_is_in_memory_not_a_folder(tmp_path, monkeypatch):
    from voice_router.store import ClientBackend, open_backend

    monkeypatch.chdir(tmp_path)
    backend = open_backend(path=":memory:")
    assert isinstance(backend, ClientBackend)
    assert not (tmp_path / ":memory:").exists()


def test_first_sync_without_a_terminal_says_what_it_does(tmp_path, hash_model, capsys):
    """Exemplar synthesis takes tens of seconds: where no progress bar is drawn (stderr is not
    a terminal), one line before and one after; a warm sync says nothing."""
    from voice_router import tts

    if not tts.tts_available():
        pytest.skip("espeak-ng is not installed")
    routes = "routes:\n" + "".join(
        f"  - {{name: r{i}, description: command number {i}}}\n" for i in range(5)
    )
    index = _index(hash_model, EdgeBackend(tmp_path / "idx"))
    pts = PointBuilder(hash_model, exemplar_voices=12)
    pts.sync(index, parse_routes(routes))
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("voice-router:")]
    assert len(lines) == 2, lines
    assert "65 route points (60 spoken exemplars" in lines[0]
    assert lines[1].startswith("voice-router: indexed 65 route points in ")
    pts.sync(index, parse_routes(routes))
    assert "voice-router:" not in capsys.readouterr().err
    index.close()


def test_one_rule_turns_a_location_into_a_backend(tmp_path, monkeypatch):
    """open_backend, the one rule (the router and the CLI use it), reads a place as
    qdrant-client does: ":memory:", a URL or host:port is a server, anything else a Qdrant
    Edge folder; a backend passes through as it is."""
    from voice_router.store import ClientBackend, open_backend

    monkeypatch.chdir(tmp_path)
    for loc, want in [
        (":memory:", ":memory:"),
        ("http://qdrant.example:6333", "http://qdrant.example:6333"),
        ("localhost:6333", "http://localhost:6333"),
    ]:
        b = open_backend(loc)
        assert isinstance(b, ClientBackend) and b.location == want, loc
        b.close()
    for loc in ("idx", tmp_path / "idx2", "my:folder"):
        b = open_backend(loc)
        assert isinstance(b, EdgeBackend), loc
        b.close()
    assert not (tmp_path / "localhost:6333").exists()
    edge = EdgeBackend(tmp_path / "e")
    assert open_backend(edge) is edge
    edge.close()


def test_a_copied_routes_file_reuses_the_points_already_embedded(tmp_path, hash_model, route_set):
    """Point ids never include the set: a renamed or copied routes file (another set id, so
    another collection) copies its points from the first one instead of embedding them again,
    and leaves that collection free for whoever uses it next."""
    backend = EdgeBackend(tmp_path / "idx")
    pts = PointBuilder(hash_model, exemplar_voices=0)
    home = _index(hash_model, backend, "home")
    n = pts.sync(home, route_set).added
    home.close()
    backend = EdgeBackend(tmp_path / "idx")
    mine = _index(hash_model, backend, "mine")
    calls: list[int] = []
    real = hash_model.embed_text
    hash_model.embed_text = lambda texts: calls.append(len(texts)) or real(texts)  # type: ignore[method-assign]
    rep = PointBuilder(hash_model, exemplar_voices=0).sync(mine, route_set)
    assert (rep.added, calls) == (n, [])  # every point copied, nothing embedded
    mat = mine.vectors()
    assert mat.vectors.shape == (n, hash_model.dim)
    again = EdgeBackend(tmp_path / "idx")  # the copied-from collection is not held open
    _index(hash_model, again, "home").close()
    mine.close()
