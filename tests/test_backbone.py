"""Backbone resolution: the offline default, local folders, and errors that say what was tried."""
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
