"""Backbone resolution: the offline default, local folders, and errors that say what was tried."""
import os

import pytest

from spacy_softprompt.backbone import BackboneNotFound, load_backbone, resolve_backbone, weights_hash


@pytest.mark.parametrize("name", ["default", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"])
def test_default_names_resolve_to_the_packaged_model(name, default_backbone_path):
    assert resolve_backbone(name) == default_backbone_path


def test_local_folder_resolves_to_itself(tiny_bert):
    assert resolve_backbone(tiny_bert) == tiny_bert


def test_unresolvable_name_lists_what_was_tried(tmp_path):
    with pytest.raises(BackboneNotFound) as err:
        resolve_backbone("no-such-org/no-such-model")
    message = str(err.value)
    assert "no-such-org/no-such-model" in message
    assert "local path" in message and "Hugging Face id" in message and "'default'" in message


def test_a_hub_ids_custom_code_is_read_only_when_asked(monkeypatch):
    """The name check read a hub config with trust_remote_code=False whatever the caller asked, so a
    model with custom code could never load ("cannot find", when asked to trust it)."""
    import transformers

    asked = []

    def from_pretrained(name, trust_remote_code=False, **kwargs):
        asked.append(trust_remote_code)
        if not trust_remote_code:
            raise ValueError("acme/custom contains custom code which must be executed")
        return object()

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", from_pretrained)
    assert resolve_backbone("acme/custom", trust_remote_code=True) == "acme/custom"
    with pytest.raises(BackboneNotFound, match="custom code"):
        resolve_backbone("acme/custom")
    assert asked == [True, False]


def test_folder_without_config_is_explained(tmp_path):
    with pytest.raises(BackboneNotFound, match="has no config.json"):
        resolve_backbone(str(tmp_path))


def test_weights_hash_changes_with_any_weight(tiny_bert):
    import torch

    model, _ = load_backbone(tiny_bert)
    before = weights_hash(model)
    assert before == weights_hash(model)
    with torch.no_grad():
        next(model.parameters())[0, 0] += 1e-3
    assert weights_hash(model) != before


def test_saved_reference_is_portable(tiny_bert, monkeypatch, tmp_path):
    from pathlib import Path

    from spacy_softprompt.backbone import portable_reference

    assert portable_reference("default") == "default"
    assert portable_reference("org/some-model") == "org/some-model"
    monkeypatch.chdir(Path(tiny_bert).parent)
    assert portable_reference(Path(tiny_bert).name) == tiny_bert


def test_a_cached_hub_id_loads_without_the_network(tiny_bert, tmp_path):
    """A hub id in the local Hugging Face cache was asked of the hub first (offline without a refusing endpoint:
    minutes of retries, then an error from inside transformers 4.53's chat-template lookup). It now resolves to
    its snapshot folder, which loads with local_files_only: nothing asks the hub (here, one that refuses)."""
    import shutil
    import subprocess
    import sys

    snapshot = tmp_path / "hub" / "models--acme--tiny" / "snapshots" / "0123abcd"
    shutil.copytree(tiny_bert, snapshot)
    (tmp_path / "hub" / "models--acme--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--tiny" / "refs" / "main").write_text("0123abcd")
    code = ("from spacy_softprompt.backbone import get_backbone, resolve_backbone;"
            "print(resolve_backbone('acme/tiny')); print(get_backbone('acme/tiny').model.config.hidden_size)")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_ENDPOINT": "http://127.0.0.1:9"}
    env.pop("HF_HUB_OFFLINE", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(snapshot), "32"]
