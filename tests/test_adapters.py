"""Adapters from peft (LoRA, IA3), with every strategy, on encoder and decoder backbones."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import spacy
import torch

from test_component import TEST_TEXTS, examples_for, fitted, make_pipeline, predictions, train, train_until_fitted

LORA = {"@misc": "spacy_softprompt.LoRA.v1", "r": 4, "alpha": 8}
IA3 = {"@misc": "spacy_softprompt.IA3.v1"}


def base_weights(network):
    """The backbone's own weights under their own names (peft wraps them as base_layer)."""
    return {k: v.clone() for k, v in network.backbone_state().items()}


@pytest.mark.parametrize("adapter", [LORA, IA3], ids=["lora", "ia3"])
@pytest.mark.parametrize("strategy", ["none", "hard", "soft", "deep"])
def test_adapter_fits_with_every_strategy_and_the_base_stays_frozen(request, toy_docs, adapter, strategy):
    """A frozen tiny random BERT, except for IA3 with hard prompts: with no learned query and
    only a scaling of what the backbone computes, that one needs a backbone that knows
    language (the offline default, on two docs)."""
    knows_language = adapter is IA3 and strategy == "hard"
    backbone = request.getfixturevalue("default_backbone_path" if knows_language else "tiny_bert")
    nlp = make_pipeline(backbone, strategy, True, adapter=adapter, prompt_length=4)
    examples = examples_for(nlp, toy_docs[:2] if knows_language else toy_docs)
    nlp.initialize(lambda: examples)
    network = nlp.get_pipe("softprompt_ie").network
    before = base_weights(network)
    adapter_params = [n for n, p in network.named_parameters() if p.requires_grad and n.startswith("backbone.")]
    assert adapter_params and all((".lora_" in n) or (".ia3_" in n) for n in adapter_params)
    losses = train_until_fitted(nlp, examples, max_rounds=8, steps_per_round=20, learn_rate=0.02)
    assert losses[-1] < 0.3 * losses[0]
    assert fitted(nlp, examples)[0] >= 0.9
    after = network.backbone_state()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_adapter_round_trips_in_a_fresh_process_and_exports_for_peft(tiny_bert, toy_docs, tmp_path):
    from peft import PeftModel
    from transformers import AutoModel

    nlp = make_pipeline(tiny_bert, "soft", True, adapter=LORA, prompt_length=4, prompt_layer=1)
    train(nlp, examples_for(nlp, toy_docs), 10, 0.02)
    nlp.to_disk(tmp_path / "pipeline")
    saved = tmp_path / "pipeline" / "softprompt_ie" / "model"
    assert sorted(p.name for p in saved.iterdir()) == ["task.json", "trainable.safetensors"]
    code = (
        "import json, spacy, sys; nlp = spacy.load(sys.argv[1]);"
        "print(json.dumps([[[s.start_char, s.end_char, s.label_] for s in d.spans['softprompt']]"
        " for d in nlp.pipe(sys.argv[2:])]))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "pipeline"), *TEST_TEXTS[:-1]],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    expected = [[[s.start_char, s.end_char, s.label_] for s in d.spans["softprompt"]] for d in nlp.pipe(TEST_TEXTS[:-1])]
    assert json.loads(out.stdout) == expected
    # peft's own format: a PeftModel on the plain base computes what our backbone computes.
    pipe = nlp.get_pipe("softprompt_ie")
    pipe.model.export_adapter(tmp_path / "peft")
    assert {p.name for p in (tmp_path / "peft").iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    peft_model = PeftModel.from_pretrained(AutoModel.from_pretrained(tiny_bert), str(tmp_path / "peft")).eval()
    ids = torch.tensor([[101, 2000, 3000, 102]])
    backbone = pipe.network.backbone.eval()
    with torch.no_grad():
        torch.testing.assert_close(peft_model(input_ids=ids).last_hidden_state, backbone(input_ids=ids).last_hidden_state)


@pytest.mark.parametrize("decoder", ["tiny_gpt2", "tiny_llama"])
def test_decoders_train_with_lora_and_prompts_and_round_trip(request, toy_docs, tmp_path, decoder):
    nlp = make_pipeline(request.getfixturevalue(decoder), "soft", True, adapter=LORA, prompt_length=4)
    examples = examples_for(nlp, toy_docs)
    losses = train_until_fitted(nlp, examples, max_rounds=6, steps_per_round=20, learn_rate=0.02)
    assert losses[-1] < 0.3 * losses[0]
    nlp.to_disk(tmp_path / "pipeline")
    assert predictions(spacy.load(tmp_path / "pipeline"), TEST_TEXTS) == predictions(nlp, TEST_TEXTS)


def test_no_adapter_nothing_to_export(tiny_bert, toy_docs, tmp_path):
    nlp = make_pipeline(tiny_bert, "soft", True)
    nlp.initialize(lambda: examples_for(nlp, toy_docs))
    with pytest.raises(ValueError, match="no adapter"):
        nlp.get_pipe("softprompt_ie").model.export_adapter(tmp_path / "peft")


def test_adapter_above_the_prompt_layer_keeps_lower_states_cached(tiny_bert, toy_docs):
    """LoRA in layer 1 only, prompts entering at layer 1: layer 0 stays the frozen base, so the
    training windows' states below the prompts are computed once and reused (as with no adapter);
    LoRA in every layer changes them, so nothing is cached."""
    upper = dict(LORA, layers=[1])
    nlp = make_pipeline(tiny_bert, "soft", True, adapter=upper, prompt_length=4, prompt_layer=1, packed=True)
    examples = examples_for(nlp, toy_docs)
    optimizer, losses = train(nlp, examples, 30, 0.02)
    model = nlp.get_pipe("softprompt_ie").model
    adapted = {n.split(".layer.")[1].split(".")[0] for n, _ in model.network.named_parameters() if ".lora_" in n}
    assert adapted == {"1"}
    assert model.caches_frozen_states and len(model.attrs["frozen_states"]) > 0
    assert losses[-1] < 0.3 * losses[0]
    everywhere = make_pipeline(tiny_bert, "soft", True, adapter=LORA, prompt_length=4, prompt_layer=1, packed=True)
    train(everywhere, examples_for(everywhere, toy_docs), 1, 0.02)
    assert not everywhere.get_pipe("softprompt_ie").model.caches_frozen_states


def test_adapter_layers_outside_the_backbone_are_an_error(tiny_bert, toy_docs):
    nlp = make_pipeline(tiny_bert, "soft", True, adapter=dict(LORA, layers=[0, 5]), prompt_length=4)
    with pytest.raises(ValueError, match=r"adapter layers \[5\] are outside this backbone's 2 layers"):
        nlp.initialize(lambda: examples_for(nlp, toy_docs))


def test_ia3_takes_no_layer_choice():
    from spacy_softprompt.nn.adapters import AdapterSpec

    assert AdapterSpec("lora", layers=[1]).peft_config("bert").layers_to_transform == [1]
    with pytest.raises(ValueError, match="IA3 scales every layer"):
        AdapterSpec("ia3", layers=[1]).peft_config("bert")


@pytest.mark.parametrize("decoder", ["tiny_gpt2", "tiny_llama"])
def test_lora_in_chosen_layers_of_a_decoder(request, toy_docs, decoder):
    """layers = [1] failed on GPT-2 and Llama ('target modules not found'): peft needs the name of the
    layer list (h, layers) to read a layer's index."""
    nlp = make_pipeline(request.getfixturevalue(decoder), "soft", True, adapter=dict(LORA, layers=[1]), prompt_length=4)
    nlp.initialize(lambda: examples_for(nlp, toy_docs))
    adapted = {n for n, _ in nlp.get_pipe("softprompt_ie").network.named_parameters() if ".lora_" in n}
    assert adapted and all((".h.1." in n) or (".layers.1." in n) for n in adapted), sorted(adapted)


def test_adapter_settings_peft_would_misread_are_refused():
    """Each was taken: [] targets became the defaults, [] layers every layer (with the frozen-state cache
    on, so layer 0's adapter never trained), alpha 0 an adapter whose output is always 0, and an IA3
    feed-forward module outside the targets was dropped (turning a default one into an output scale)."""
    from spacy_softprompt.nn.adapters import AdapterSpec

    for settings, message in (({"target_modules": []}, "target_modules = \\[\\] names no module"),
                              ({"layers": []}, "layers = \\[\\] names no layer"),
                              ({"alpha": 0}, "alpha must be above 0"), ({"alpha": -16}, "alpha must be above 0")):
        with pytest.raises(ValueError, match=message):
            AdapterSpec("lora", **settings)
    with pytest.raises(ValueError, match=r"IA3 feedforward_modules \['intermediate.dense'\] are not among"):
        AdapterSpec("ia3", feedforward_modules=["intermediate.dense"]).peft_config("bert")
    ia3 = AdapterSpec("ia3", target_modules=["key", "intermediate.dense"], feedforward_modules=["intermediate.dense"])
    assert ia3.peft_config("bert").feedforward_modules == {"intermediate.dense"}


def test_an_adapter_trained_with_its_backbone_is_not_exported(tiny_bert, toy_docs, tmp_path):
    """The export held the adapter alone: on the original backbone it gave other states (the base had trained too)."""
    nlp = make_pipeline(tiny_bert, "soft", False, adapter=LORA, prompt_length=4)
    nlp.initialize(lambda: examples_for(nlp, toy_docs))
    with pytest.raises(ValueError, match="freeze_backbone = false"):
        nlp.get_pipe("softprompt_ie").model.export_adapter(tmp_path / "peft")
