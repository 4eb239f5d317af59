"""`voice_router.model.loader.load_model` is the one name -> model resolver: instances pass
through, the hash fake, bundled names, folders and hub ids, with one hub-id rule and errors
that say what to pass instead. (Loading real folders on each runtime: test_embedder.py and
test_onnx_model.py.)"""

from __future__ import annotations

import pytest

from voice_router.errors import ModelError
from voice_router.model.fake import HashEmbeddingModel
from voice_router.model.loader import list_models, load_model, looks_like_hub_id


def test_an_instance_comes_back_as_is() -> None:
    m = HashEmbeddingModel(dim=8)
    assert load_model(m) is m


def test_hash_names_give_the_fake_of_that_dimension() -> None:
    assert isinstance(load_model("hash"), HashEmbeddingModel) and load_model("hash").dim == 32
    assert load_model("hash-64").dim == 64
    for bad in ("hash-x", "hash-0", "hash-"):
        with pytest.raises(ModelError, match="hash-<dim>, e.g. hash-64|at least 1"):
            load_model(bad)


@pytest.mark.parametrize("s", ["owner/model", "Org-1/name_2.v3"])
def test_hub_ids(s: str) -> None:
    assert looks_like_hub_id(s)


@pytest.mark.parametrize("s", ["model", "./a/b", "~/a", "a/b/c", "a//b", "/abs", "a b/c", "a\\b/c"])
def test_not_hub_ids(s: str) -> None:
    assert not looks_like_hub_id(s)


def test_unknown_names_list_every_known_one_without_the_network(monkeypatch) -> None:
    from voice_router.model import loader

    def no_hub(repo_id: str):
        raise AssertionError("the hub must not be contacted")

    monkeypatch.setattr(loader, "_hub_snapshot", no_hub)
    for s in ("no_such_model", "./models/mine", "a/b/c"):
        with pytest.raises(ModelError, match="default, compact, tiny, hash, hash-<dim>"):
            load_model(s)


def test_names_without_a_folder_cannot_run_on_onnx(monkeypatch) -> None:
    for s in ("tiny", "owner/model"):
        with pytest.raises(ModelError, match="cannot run on the ONNX runtime.*no folder"):
            load_model(s, runtime="onnx")


def test_list_models_has_every_name_load_model_takes() -> None:
    rows = {r["name"]: r for r in list_models()}
    assert set(rows) == {"default", "compact", "tiny", "hash"}
    assert rows["hash"]["available"] is True and rows["hash"]["runtimes"] == []
