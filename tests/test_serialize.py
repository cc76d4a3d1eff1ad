"""Serialization in the manner of spacy-transformers' tests: component and whole
pipeline, bytes and disk, before and after initialize; what a saved pipeline may
not do (run code, lose its weights silently)."""
from __future__ import annotations

import json
import warnings

import pytest
import spacy

from spacy_softprompt.artifact import TRUST_ENV, DamagedArtifact

from test_component import TEST_TEXTS, examples_for, make_pipeline, predictions, train


@pytest.fixture
def trained(tiny_bert, toy_docs):
    nlp = make_pipeline(tiny_bert, "soft", False, prompt_layer=1)
    train(nlp, examples_for(nlp, toy_docs), 3, 0.01)
    return nlp


def test_component_bytes_before_initialize(tiny_bert):
    nlp = make_pipeline(tiny_bert, "soft", True)
    data = nlp.get_pipe("softprompt_ie").to_bytes()
    other = make_pipeline(tiny_bert, "soft", True)
    other.get_pipe("softprompt_ie").from_bytes(data)
    assert other.get_pipe("softprompt_ie").labels == ()


def test_pipeline_bytes_and_disk_before_initialize(tiny_bert, tmp_path):
    nlp = make_pipeline(tiny_bert, "soft", True)
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    with pytest.raises(ValueError, match="not initialized"):
        loaded("Aspirin caused nausea.")
    again = make_pipeline(tiny_bert, "soft", True).from_bytes(nlp.to_bytes())
    assert again.get_pipe("softprompt_ie").labels == ()


def test_component_and_pipeline_after_initialize(trained, tiny_bert, tmp_path):
    expected = predictions(trained, TEST_TEXTS)
    component = make_pipeline(tiny_bert, "soft", False, prompt_layer=1)
    component.get_pipe("softprompt_ie").from_bytes(trained.get_pipe("softprompt_ie").to_bytes())
    assert predictions(component, TEST_TEXTS) == expected
    trained.get_pipe("softprompt_ie").to_disk(tmp_path / "component")
    from_disk = make_pipeline(tiny_bert, "soft", False, prompt_layer=1)
    from_disk.get_pipe("softprompt_ie").from_disk(tmp_path / "component")
    assert predictions(from_disk, TEST_TEXTS) == expected
    whole = make_pipeline(tiny_bert, "soft", False, prompt_layer=1).from_bytes(trained.to_bytes())
    assert predictions(whole, TEST_TEXTS) == expected


def test_exclude_is_honoured(trained, tmp_path):
    trained.get_pipe("softprompt_ie").to_disk(tmp_path / "c", exclude=["model"])
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["cfg", "vocab"]


def test_config_mismatch_is_a_clear_error(trained, tiny_bert):
    data = trained.get_pipe("softprompt_ie").to_bytes()
    other = make_pipeline(tiny_bert, "soft", False, prompt_layer=1, head_width=64)
    with pytest.raises(ValueError, match="trained with head_width = 128; the loading config says head_width = 64"):
        other.get_pipe("softprompt_ie").from_bytes(data)


def test_missing_or_damaged_weights_name_the_file(trained, tmp_path):
    trained.to_disk(tmp_path / "p")
    weights = tmp_path / "p" / "softprompt_ie" / "model" / "trainable.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(DamagedArtifact, match=r"trainable\.safetensors is damaged"):
        spacy.load(tmp_path / "p")
    weights.unlink()
    with pytest.raises(DamagedArtifact, match=r"trainable\.safetensors is missing.*says the model was trained"):
        spacy.load(tmp_path / "p")


def test_a_fine_tuned_backbone_stays_stored_when_loaded_frozen(trained, tmp_path):
    """Loaded with freeze_backbone = true (to train its prompts on), a fine-tuned pipeline was saved without its
    backbone: the copy named the pretrained one, whose hash still matched, and predicted with it silently."""
    trained.to_disk(tmp_path / "p")
    nlp = spacy.load(tmp_path / "p", config={"components.softprompt_ie.model.freeze_backbone": True})
    nlp.to_disk(tmp_path / "q")
    assert (tmp_path / "q" / "softprompt_ie" / "model" / "backbone" / "config.json").is_file()
    assert predictions(spacy.load(tmp_path / "q"), TEST_TEXTS) == predictions(trained, TEST_TEXTS)


def test_a_damaged_stored_backbone_names_its_folder(trained, tmp_path):
    """A tensor lost from the stored backbone was filled at random (a log line); a lost config.json made
    transformers guess a model type from the folder's path; a truncated file was a deep SafetensorError."""
    from safetensors.torch import load_file, save_file

    trained.to_disk(tmp_path / "p")
    backbone = tmp_path / "p" / "softprompt_ie" / "model" / "backbone"
    weights = backbone / "model.safetensors"
    data = weights.read_bytes()
    state = load_file(str(weights))
    dropped = next(k for k in state if "attention.output.dense.weight" in k)
    save_file({k: v for k, v in state.items() if k != dropped}, str(weights), metadata={"format": "pt"})
    with pytest.raises(DamagedArtifact, match=rf"the stored backbone is damaged.*lack or misshape 1 .*{dropped}"):
        spacy.load(tmp_path / "p")
    weights.write_bytes(data[:100])
    with pytest.raises(DamagedArtifact, match=f"{backbone}: the stored backbone is damaged"):
        spacy.load(tmp_path / "p")
    weights.write_bytes(data)
    config = json.loads((backbone / "config.json").read_text())
    (backbone / "config.json").write_text(json.dumps(dict(config, model_type="bert_from_the_future")))
    with pytest.raises(ValueError, match=r"model type 'bert_from_the_future', which the installed transformers .* "
                                         r"does not know: .*Upgrade transformers") as error:
        spacy.load(tmp_path / "p")  # (a newer transformers' pipeline is not damaged)
    assert not isinstance(error.value, DamagedArtifact)
    (backbone / "config.json").unlink()
    with pytest.raises(DamagedArtifact, match=r"backbone/config\.json is missing"):
        spacy.load(tmp_path / "p")


def test_a_lost_adapter_tensor_is_refused(tiny_bert, toy_docs, tmp_path):
    """Adapter tensors live under backbone.* in trainable.safetensors, which the check of missing keys skipped:
    a lost one loaded at its initial value."""
    from safetensors.torch import load_file, save_file

    nlp = make_pipeline(tiny_bert, "soft", True, adapter={"@misc": "spacy_softprompt.LoRA.v1", "r": 4, "alpha": 8},
                        prompt_length=4)
    train(nlp, examples_for(nlp, toy_docs), 2, 0.01)
    nlp.to_disk(tmp_path / "p")
    weights = tmp_path / "p" / "softprompt_ie" / "model" / "trainable.safetensors"
    state = load_file(str(weights))
    lost = next(k for k in state if ".lora_B." in k)
    save_file({k: v for k, v in state.items() if k != lost}, str(weights))
    with pytest.raises(DamagedArtifact, match=rf"does not fit .*missing: \['{lost}'\]"):
        spacy.load(tmp_path / "p")


def test_a_config_that_computes_otherwise_is_refused_at_load(trained, tmp_path):
    """prompt_layer (or an adapter's alpha, the strategy's packing, ...) edited in config.cfg kept every tensor's
    shape: the pipeline loaded and predicted something else, silently."""
    trained.to_disk(tmp_path / "p")
    with pytest.raises(ValueError, match=r"was trained with prompt_layer = 1; the loading config says prompt_layer = 0"):
        spacy.load(tmp_path / "p", config={"components.softprompt_ie.model.prompt_layer": 0})
    nlp = spacy.load(tmp_path / "p", config={"components.softprompt_ie.model.batch_size": 3})  # how it runs: free
    assert predictions(nlp, TEST_TEXTS) == predictions(trained, TEST_TEXTS)


def test_hand_edited_component_settings_are_checked(trained, tmp_path):
    """A threshold edited in the saved cfg to 1.5 predicted nothing, silently; an emptied cfg was an unnamed error."""
    trained.to_disk(tmp_path / "p")
    cfg = tmp_path / "p" / "softprompt_ie" / "cfg"
    saved = json.loads(cfg.read_text())
    cfg.write_text(json.dumps({**saved, "threshold": 1.5}))
    with pytest.raises(ValueError, match=r"threshold \('softprompt_ie' as saved\) is a probability in \(0, 1\], not 1.5"):
        spacy.load(tmp_path / "p")
    cfg.write_text("")
    with pytest.raises(DamagedArtifact, match=f"{cfg} is not valid JSON"):
        spacy.load(tmp_path / "p")


EVIL = """
from pathlib import Path
Path({marker!r}).write_text("ran")
from transformers import BertConfig, BertModel
class EvilConfig(BertConfig):
    pass
class EvilModel(BertModel):
    config_class = EvilConfig
"""


def test_saved_pipeline_cannot_switch_on_remote_code(trained, tmp_path, monkeypatch):
    """A pipeline whose config says trust_remote_code = true and whose stored backbone maps to
    a Python file must not run that file on load; the person loading can allow it."""
    folder = tmp_path / "p"
    trained.to_disk(folder)
    marker = tmp_path / "marker"
    backbone = folder / "softprompt_ie" / "model" / "backbone"
    (backbone / "evil.py").write_text(EVIL.format(marker=str(marker)))
    config = json.loads((backbone / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}
    (backbone / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv(TRUST_ENV, "1")  # allowed by the person loading, but this pipeline does not ask for it
    nlp = spacy.load(folder)
    assert not marker.exists()
    cfg = (folder / "config.cfg").read_text().replace("trust_remote_code = false", "trust_remote_code = true")
    (folder / "config.cfg").write_text(cfg)
    monkeypatch.delenv(TRUST_ENV, raising=False)
    with pytest.warns(UserWarning, match=f"trust_remote_code = true.*ignored.*{TRUST_ENV}=1"):
        nlp = spacy.load(folder)
    assert not marker.exists()
    assert predictions(nlp, TEST_TEXTS) == predictions(trained, TEST_TEXTS)
    # The control: allowed by the person loading, the planted file does run.
    monkeypatch.setenv(TRUST_ENV, "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            spacy.load(folder)
        except Exception:
            pass  # what the planted classes do afterwards does not matter here
    assert marker.read_text() == "ran"


@pytest.mark.parametrize("option,value", [("threshold", 1.5), ("threshold", 0.0), ("relation_threshold", -0.1)])
def test_impossible_thresholds_are_refused(option, value):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match=f"{option} is a probability"):
        nlp.add_pipe("softprompt_ie", config={option: value})


@pytest.mark.parametrize("model,message", [({"batch_size": 0}, "batch_size must be at least 1, not 0"),
                                           ({"max_span_width": 0}, "max_span_width must be at least 1"),
                                           ({"head_width": 0}, "head_width must be at least 1"),
                                           ({"window_overlap": -1}, "window_overlap must be at least 0")])
def test_impossible_model_sizes_are_refused(model, message):
    """Each was taken before: batch_size 0 as 1, window_overlap -1 as no overlap, a span width of 0 learning nothing."""
    with pytest.raises(ValueError, match=message):
        spacy.blank("en").add_pipe("softprompt_ie", config={"model": model})


@pytest.mark.parametrize("option", ["query_texts", "new_labels"])
def test_a_description_must_be_words(option):
    """An empty description asked a query with no words (config validation has made a number a string already)."""
    with pytest.raises(ValueError, match=rf"{option} maps a label to the words that describe it, not {{'Drug': ' '}}"):
        spacy.blank("en").add_pipe("softprompt_ie", config={option: {"Drug": " ", "ADE": "adverse drug event"}})


def test_impossible_prompt_length_is_refused():
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="prompt_length must be between 1 and 512"):
        nlp.add_pipe("softprompt_ie", config={"model": {"prompt_length": 0}})


def test_a_trained_pipeline_pickles(trained):
    """nlp.pipe(n_process=...) under the spawn start method (macOS', Windows') pickles the pipeline: the
    scorer was a closure, which does not pickle."""
    import pickle

    again = pickle.loads(pickle.dumps(trained))
    assert predictions(again, TEST_TEXTS) == predictions(trained, TEST_TEXTS)
    assert again.get_pipe("softprompt_ie").scorer == trained.get_pipe("softprompt_ie").scorer
