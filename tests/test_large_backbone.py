"""A frozen backbone that does not fit one device, placed by accelerate (``device_map``,
``max_memory``, ``offload_folder``): tiny random backbones forced across the CPU and disk
offload, trained, saved, loaded, and compared with the same model on one device."""
from __future__ import annotations

import gc
import sys
import weakref

import numpy as np
import pytest
import spacy
import torch

from spacy_softprompt.backbone import get_backbone, placement, weights_hash
from spacy_softprompt.pieces import tokenize_doc

from test_component import examples_for, make_pipeline

# The embeddings (prompt initialisation reads their table) and the last layer are read from disk.
BERT_MAP = {"embeddings": "disk", "encoder.layer.0": "cpu", "encoder.layer.1": "disk", "pooler": "cpu"}


def logits(nlp, docs):
    """Span logits (numpy) of every concept query and of every relation query on the gold triggers."""
    pipe = nlp.get_pipe("softprompt_ie")
    builder, model = pipe.model.builder, pipe.model
    pieces = [tokenize_doc(nlp.make_doc(doc.text), builder.tokenizer) for doc in docs]
    concepts = [q for i, p in enumerate(pieces) for q in builder.concept_queries(i, p)]
    relations = [
        q for i, (doc, p) in enumerate(zip(docs, pieces))
        for q in builder.relation_queries(i, p, [s for s in doc.spans["softprompt"] if s.label_ in builder.schema.triggers])
    ]
    batches = [model.collator.collate(queries, pieces, with_targets=False) for queries in (concepts, relations)]
    return [model.ops.to_numpy(model.predict(batch)) for batch in batches]


def offloaded(backbone) -> bool:
    """Some weights live on disk, so accelerate keeps them on ``meta`` between calls."""
    return "disk" in backbone.hf_device_map.values() and any(p.is_meta for p in backbone.parameters())


@pytest.mark.parametrize("case", ["bert_map_soft", "llama_auto_deep_late"])
def test_prompts_train_on_an_offloaded_backbone_and_predict_as_on_one_device(request, case, toy_docs, tmp_path):
    if case == "bert_map_soft":
        backbone, strategy, model = request.getfixturevalue("tiny_bert"), "soft", {"device_map": BERT_MAP}
    else:  # accelerate chooses: the CPU budget holds the embeddings, the rest goes to disk
        backbone, strategy = request.getfixturevalue("tiny_llama"), "deep"
        model = {"device_map": "auto", "max_memory": {"cpu": "100KB"}, "prompt_layer": 1}
    placed_settings = {"offload_folder": str(tmp_path / "offload"), **model}
    nlp = make_pipeline(backbone, strategy, True, prompt_length=4, **placed_settings)
    examples = examples_for(nlp, toy_docs)
    nlp.initialize(lambda: examples)
    pipe = nlp.get_pipe("softprompt_ie")
    placed = pipe.network.backbone
    assert offloaded(placed)
    # The hash reads offloaded tensors from their store: the task names the very weights of the files.
    base = weights_hash(get_backbone(backbone).model)
    assert pipe.model.attrs["task"]["backbone"]["sha256"] == base
    prompts_before = {k: v.clone() for k, v in pipe.network.prompts.state_dict().items()}
    optimizer = nlp.resume_training()
    optimizer.learn_rate = 0.01
    losses = [nlp.update(examples, sgd=optimizer)["softprompt_ie"] for _ in range(4)]
    assert losses[-1] < losses[0]
    assert all(not torch.equal(v, pipe.network.prompts.state_dict()[k]) for k, v in prompts_before.items())
    assert weights_hash(placed) == base and offloaded(placed)  # the frozen base is bit-identical, still on disk

    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")  # the saved config re-applies the placement
    assert loaded.get_pipe("softprompt_ie").network.backbone is placed  # same backbone and placement: shared
    # The same saved component in a pipeline whose config places nothing.
    one_device = make_pipeline(backbone, strategy, True, prompt_length=4, prompt_layer=model.get("prompt_layer", 0))
    one_device.get_pipe("softprompt_ie").from_disk(tmp_path / "pipeline" / "softprompt_ie", exclude=["vocab"])
    assert not hasattr(one_device.get_pipe("softprompt_ie").network.backbone, "hf_device_map")
    expected = logits(one_device, toy_docs)
    assert expected[1].shape[0] > 0  # relation queries were asked too
    for got in (logits(nlp, toy_docs), logits(loaded, toy_docs)):
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_a_fresh_process_reapplies_the_saved_placement(tiny_bert, toy_docs, tmp_path):
    nlp = make_pipeline(tiny_bert, "soft", True, prompt_length=4, device_map=BERT_MAP,
                        offload_folder=str(tmp_path / "offload"))
    nlp.initialize(lambda: examples_for(nlp, toy_docs))
    nlp.to_disk(tmp_path / "pipeline")
    expected = logits(nlp, toy_docs)
    first = weakref.ref(nlp.get_pipe("softprompt_ie").network.backbone)
    del nlp
    gc.collect()
    assert first() is None  # no live copy to share: the load places the backbone itself
    loaded = spacy.load(tmp_path / "pipeline")
    backbone = loaded.get_pipe("softprompt_ie").network.backbone
    assert backbone.hf_device_map == BERT_MAP and offloaded(backbone)
    for a, b in zip(logits(loaded, toy_docs), expected):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs: a check for a GPU node (docs/scale.md)")
def test_layers_across_two_gpus_and_cpu_offload_train_and_predict_as_on_one_device(tiny_bert, toy_docs, tmp_path):
    """GPU 0 is the main device (prompts, heads, batches); layer 0 streams from the CPU and
    layer 1 runs on GPU 1, so states change device between layers and come back for the head."""
    pytest.importorskip("cupy")  # spaCy's GPU ops
    settings = dict(prompt_length=4, prompt_layer=1)
    spacy.require_gpu(0)
    try:
        nlp = make_pipeline(tiny_bert, "deep", True, **settings, device_map={
            "embeddings": 0, "encoder.layer.0": "cpu", "encoder.layer.1": 1, "pooler": 1})
        examples = examples_for(nlp, toy_docs)
        nlp.initialize(lambda: examples)
        network = nlp.get_pipe("softprompt_ie").network
        assert network.device == torch.device("cuda", 0)
        before = network.prompts.deep.detach().clone()
        optimizer = nlp.resume_training()
        for _ in range(2):
            nlp.update(examples, sgd=optimizer)
        assert not torch.equal(before, network.prompts.deep)
        nlp.to_disk(tmp_path / "pipeline")
        expected = logits(nlp, toy_docs)
    finally:
        spacy.require_cpu()
    one_device = make_pipeline(tiny_bert, "deep", True, **settings)
    one_device.get_pipe("softprompt_ie").from_disk(tmp_path / "pipeline" / "softprompt_ie", exclude=["vocab"])
    for a, b in zip(logits(one_device, toy_docs), expected):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_the_placement_is_part_of_the_sharing_key(tiny_bert, tmp_path):
    placed = placement(BERT_MAP, None, str(tmp_path / "offload"))
    first = get_backbone(tiny_bert, share=True, placed=placed)
    assert get_backbone(tiny_bert, share=True, placed=dict(placed)) is first
    assert get_backbone(tiny_bert, share=True) is not first
    other = placement({**BERT_MAP, "encoder.layer.0": "disk"}, None, str(tmp_path / "offload"))
    assert get_backbone(tiny_bert, share=True, placed=other) is not first


@pytest.mark.parametrize(
    "model,message",
    [
        ({"device_map": "auto", "freeze_backbone": False}, "freeze_backbone = true"),
        ({"device_map": "auto", "adapter": {"@misc": "spacy_softprompt.LoRA.v1"}}, "adapter = null"),
        ({"max_memory": {"cpu": "1GiB"}}, "set device_map"),
        ({"device_map": "fastest"}, "not one of auto"),
        ({"device_map": {"embeddings": "disk"}}, "offload_folder"),
        ({"device_map": {"embeddings": "cpu"}, "max_memory": {"cpu": "1GiB"}}, "explicit device_map"),
    ],
)
def test_placement_settings_are_checked_when_the_config_is_read(tiny_bert, model, message):
    with pytest.raises(ValueError, match=message):
        make_pipeline(tiny_bert, "soft", model.pop("freeze_backbone", True), **model)


def test_without_accelerate_the_error_names_the_extra(tiny_bert, monkeypatch):
    monkeypatch.setitem(sys.modules, "accelerate", None)
    monkeypatch.setitem(sys.modules, "accelerate.utils", None)
    with pytest.raises(ImportError, match=r"spacy_softprompt\[large\]"):
        make_pipeline(tiny_bert, "soft", True, device_map="auto")


def test_a_placed_backbone_is_not_stored_inside_the_pipeline(tiny_bert, toy_docs):
    nlp = spacy.blank("en")
    nlp.add_pipe("softprompt_ie", config={"model": {"backbone": tiny_bert, "device_map": "auto"}, "store_backbone": True})
    with pytest.raises(ValueError, match="store_backbone"):
        nlp.initialize(lambda: examples_for(nlp, toy_docs))
