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
    with pytest.raises(DamagedArtifact, match="does not fit this component's config"):
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
