"""The layer stack (nn/stack.py): explicit per-layer calls give exactly the backbone's
own forward, any split into slices composes to the whole, and the layer table
fails clearly on an unknown model type."""
from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel, GPT2Config, GPT2Model, LlamaConfig, LlamaModel

from spacy_softprompt.nn.stack import LayerStack


def tiny(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "bert":
        model = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=64))
    elif kind == "gpt2":
        model = GPT2Model(GPT2Config(vocab_size=50, n_embd=16, n_layer=3, n_head=2, n_positions=64))
    else:
        model = LlamaModel(LlamaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                                       num_key_value_heads=2, intermediate_size=32, max_position_embeddings=64))
    return model.eval()


def inputs():
    torch.manual_seed(1)
    ids = torch.randint(3, 50, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 4:] = 0
    return ids, mask


@pytest.mark.parametrize("kind", ["bert", "gpt2", "llama"])
def test_stack_equals_the_backbones_forward(kind):
    model = tiny(kind)
    ids, mask = inputs()
    stack = LayerStack(model)
    embeds = model.get_input_embeddings()(ids)
    with torch.no_grad():
        expected = model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        ours = stack.run(stack.embed(embeds), mask)
    real = mask.bool()  # padding positions may differ by mask convention; real tokens must not
    torch.testing.assert_close(ours[real], expected[real], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["bert", "gpt2", "llama"])
@pytest.mark.parametrize("split", [1, 2])
def test_slices_compose_and_see_each_layer_input(kind, split):
    model = tiny(kind)
    ids, mask = inputs()
    stack = LayerStack(model)
    with torch.no_grad():
        hidden = stack.embed(model.get_input_embeddings()(ids))
        seen = {}
        whole = stack.run(hidden, mask, before_layer=lambda i, h: seen.setdefault(i, h))
        lower = stack.run(hidden, mask, 0, split)
        upper = stack.run(lower, mask, split)
    torch.testing.assert_close(lower, seen[split])
    torch.testing.assert_close(upper, whole)
    assert sorted(seen) == [0, 1, 2]


def test_stack_never_changes_the_backbone():
    model = tiny("bert")
    before = list(model.encoder.layer)
    ids, mask = inputs()
    with torch.no_grad():
        LayerStack(model).run(model.embeddings(ids), mask, 1, 2)
    assert list(model.encoder.layer) == before and len(model.encoder.layer) == 3


def test_unknown_model_type_is_a_clear_error_and_family_overrides_it():
    model = tiny("bert")
    model.config.model_type = "my-bert"
    with pytest.raises(ValueError, match="'my-bert' is not in the layer table.*backbone_family"):
        LayerStack(model)
    assert len(LayerStack(model, family="bert")) == 3
    with pytest.raises(ValueError, match="no 'h'"):
        LayerStack(model, family="gpt2")
