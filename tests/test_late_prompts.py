"""Late prompts (``prompt_layer > 0``): the lower layers read each window once and are
shared by every query on it; the query part joins at layer k. Tiny random backbones."""
from __future__ import annotations

import numpy as np
import pytest
import spacy
import torch

from spacy_softprompt.pieces import best_tile, tokenize_doc

from test_component import (
    TEST_TEXTS, examples_for, fitted, make_pipeline, predictions, train, train_until_fitted,
)


@pytest.mark.parametrize(
    "backbone,strategy,frozen,layer",
    [
        ("tiny_bert", "none", False, 1),
        ("tiny_bert", "hard", False, 1),
        ("tiny_bert", "soft", False, 1),
        ("tiny_gpt2", "soft", False, 1),
        ("tiny_bert", "soft_packed", False, 1),
        # A frozen backbone must already know language: the offline default, prompts from layer 3 of 6.
        ("default_backbone_path", "deep", True, 3),
        ("default_backbone_path", "deep_packed", True, 3),
    ],
)
def test_late_prompts_fit_concepts_and_relations(request, toy_docs, backbone, strategy, frozen, layer):
    strategy, _, packed = strategy.partition("_")
    nlp = make_pipeline(request.getfixturevalue(backbone), strategy, frozen, prompt_layer=layer, packed=bool(packed))
    examples = examples_for(nlp, toy_docs if not frozen else toy_docs[:2])
    learn_rate = 0.03 if frozen else 0.01
    losses = train_until_fitted(nlp, examples, max_rounds=8, steps_per_round=20, learn_rate=learn_rate)
    assert losses[-1] < 0.2 * losses[0]
    assert fitted(nlp, examples) == (1.0, 1.0)


def _concept_logits(nlp, docs):
    pipe = nlp.get_pipe("softprompt_ie")
    pieces = [tokenize_doc(nlp.make_doc(d.text), pipe.model.builder.tokenizer) for d in docs]
    queries = [q for i, p in enumerate(pieces) for q in pipe.model.builder.concept_queries(i, p)]
    return pipe.model.predict(pipe.model.collator.collate(queries, pieces, with_targets=False))


def test_without_a_query_part_late_and_input_layouts_compute_the_same(tiny_bert, toy_docs):
    """``none`` concept queries have no query part, so splitting the stack at layer k
    must give exactly the full pass: this checks the layer slicing and hooks."""
    logits = {}
    for layer in (0, 1):
        torch.manual_seed(0)
        nlp = make_pipeline(tiny_bert, "none", False, prompt_layer=layer)
        nlp.initialize(lambda: examples_for(nlp, toy_docs))
        logits[layer] = _concept_logits(nlp, toy_docs)
    np.testing.assert_allclose(logits[0], logits[1], rtol=1e-5, atol=1e-5)


class RowCounter:
    """Rows each backbone layer processes, per call."""

    def __init__(self, layers):
        self.rows = {i: [] for i in range(len(layers))}
        self.handles = [
            layer.register_forward_pre_hook(lambda m, args, i=i: self.rows[i].append(args[0].shape[0]))
            for i, layer in enumerate(layers)
        ]

    def close(self):
        for handle in self.handles:
            handle.remove()


def test_lower_layers_read_each_window_once_and_are_cached_across_stages(tiny_bert, toy_docs):
    nlp = make_pipeline(tiny_bert, "soft", False, prompt_layer=1)
    examples = examples_for(nlp, toy_docs)
    train_until_fitted(nlp, examples, max_rounds=8, steps_per_round=20, learn_rate=0.01)
    pipe = nlp.get_pipe("softprompt_ie")
    pipe.from_bytes(pipe.to_bytes())  # same weights, written anew: the fitting check's query parts are dropped
    counter = RowCounter(pipe.network.stack.layers)
    try:
        docs = [nlp.make_doc(d.text) for d in toy_docs]
        predicted = pipe.predict(docs)
    finally:
        counter.close()
    n_concepts, n_relations = len(pipe.labels), len(pipe.relation_labels)
    n_triggers = sum(1 for doc in predicted.concepts for c in doc if c[2] == "Drug")
    assert n_triggers == 4
    # Layer 0: each doc's one window once, plus each prompt's query part once, over both stages.
    assert sum(counter.rows[0]) == len(docs) + n_concepts + n_relations
    # Layer 1 (query-specific): every concept query and every relation query.
    relations_asked = sum(len(pipe.schema.relations_for("Drug")) for _ in range(n_triggers))
    assert sum(counter.rows[1]) == len(docs) * n_concepts + relations_asked


@pytest.mark.parametrize("cached", [False, True])
def test_frozen_lower_pass_keeps_no_activations_for_backprop(tiny_bert, toy_docs, cached):
    nlp = make_pipeline(tiny_bert, "soft", True, prompt_layer=1, cache_frozen_states=cached)
    examples = examples_for(nlp, toy_docs)
    optimizer, _ = train(nlp, examples, 1, 0.01)
    layers = nlp.get_pipe("softprompt_ie").network.stack.layers
    needs_grad = {0: [], 1: []}
    handles = [
        layer.register_forward_hook(lambda m, a, out, i=i: needs_grad[i].append((out[0].shape[0], out[0].requires_grad)))
        for i, layer in enumerate(layers)
    ]
    try:
        nlp.update(examples, sgd=optimizer)
    finally:
        for handle in handles:
            handle.remove()
    windows = [rg for rows, rg in needs_grad[0] if rows == len(toy_docs)]
    assert windows == ([] if cached else [False])  # the shared text pass: no graph kept, or not run
    assert any(rg for _, rg in needs_grad[0])  # the prompts' own pass does learn
    assert all(rg for _, rg in needs_grad[1])


def test_late_pipeline_round_trips(tiny_bert, toy_docs, tmp_path):
    nlp = make_pipeline(tiny_bert, "deep", True, prompt_layer=1)
    train(nlp, examples_for(nlp, toy_docs), 5, 0.01)
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.get_pipe("softprompt_ie").network.prompt_layer == 1
    assert predictions(loaded, TEST_TEXTS) == predictions(nlp, TEST_TEXTS)


def test_prompt_layer_outside_the_backbone_is_a_clear_error(tiny_bert, toy_docs):
    nlp = make_pipeline(tiny_bert, "soft", True, prompt_layer=2)
    with pytest.raises(ValueError, match="prompt_layer=2 is outside this backbone's 2 layers"):
        nlp.initialize(lambda: examples_for(nlp, toy_docs))


def test_best_tile_centres_the_trigger():
    tiles = [(0, 10), (6, 16), (12, 20)]
    assert best_tile(tiles, 9, 10) == (6, 16)
    assert best_tile(tiles, 7, 8) == (0, 10)
    assert best_tile(tiles, 1, 2) == (0, 10)
    assert best_tile(tiles, 17, 18) == (12, 20)
    assert best_tile(tiles, 5, 13) == (0, 10)  # longer than any window's overlap: first touching


@pytest.mark.parametrize("strategy,layer", [("none", 1), ("hard", 1), ("soft", 1), ("deep", 1), ("deep", 0), ("soft", 0),
                                            ("hard_soft", 1), ("hard_deep", 1), ("hard_deep", 0)])
def test_every_trainable_parameter_learns(tiny_bert, toy_docs, strategy, layer):
    """No dead weights: with late deep prompts the input prompts and the deep prompts
    below layer k would never reach the output, so they must not exist at all."""
    nlp = make_pipeline(tiny_bert, strategy, True, prompt_layer=layer)
    examples = examples_for(nlp, toy_docs)
    nlp.initialize(lambda: examples)
    nlp.get_pipe("softprompt_ie").update(examples)  # no optimizer: gradients stay on the parameters
    network = nlp.get_pipe("softprompt_ie").network
    trainable = {name: p for name, p in network.named_parameters() if p.requires_grad}
    assert trainable
    dead = [name for name, p in trainable.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead
    if strategy == "deep" and layer:
        assert network.prompts.vectors is None
        assert network.prompts.deep.shape[1] == network.n_layers - layer


def test_frozen_states_cache_gives_the_same_loss_and_gradients(tiny_bert, toy_docs, capsys):
    """Frozen backbone, late prompts: the training windows' states below layer k are computed
    once and reused; the loss and every gradient are those of a run without the cache."""
    runs = {}
    for cached in (False, True):
        torch.manual_seed(0)
        nlp = make_pipeline(tiny_bert, "soft", True, prompt_layer=1, cache_frozen_states=cached)
        examples = examples_for(nlp, toy_docs)
        nlp.initialize(lambda: examples)
        pipe = nlp.get_pipe("softprompt_ie")
        for step in range(2):  # the second step reads the cache
            pipe.network.zero_grad(set_to_none=True)
            torch.manual_seed(step)
            loss = pipe.update(examples)["softprompt_ie"]
        grads = {n: p.grad.clone() for n, p in pipe.network.named_parameters() if p.requires_grad}
        runs[cached] = (loss, grads, pipe.model.attrs["frozen_states"])
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-6)
    for name, grad in runs[False][1].items():
        torch.testing.assert_close(runs[True][1][name], grad, rtol=1e-5, atol=1e-7)
    assert runs[False][2] is None and len(runs[True][2]) == len(toy_docs)  # one window per toy doc
    assert "frozen layers below prompt_layer=1 run once per training window (4 windows" in " ".join(
        capsys.readouterr().out.split()
    )



def test_query_parts_are_read_once_until_the_weights_change(tiny_bert, toy_docs):
    """A query part's lower states depend only on the weights: kept across ``predict`` calls
    (each call used to re-read them), dropped by an optimizer step or an in-place edit."""
    nlp = make_pipeline(tiny_bert, "soft", False, prompt_layer=1)
    examples = examples_for(nlp, toy_docs)
    optimizer, _ = train(nlp, examples, 3, 0.01)
    pipe = nlp.get_pipe("softprompt_ie")
    docs = [nlp.make_doc(d.text) for d in toy_docs]

    def layer0_rows() -> int:
        counter = RowCounter(pipe.network.stack.layers)
        try:
            pipe.predict(docs)
        finally:
            counter.close()
        return sum(counter.rows[0])

    nlp.update(examples, sgd=optimizer)
    assert layer0_rows() > len(docs)  # windows and the query parts asked
    assert layer0_rows() == len(docs)  # windows again (a new batch), query parts kept
    nlp.update(examples, sgd=optimizer)
    assert layer0_rows() > len(docs)  # the step changed the prompts: query parts read anew
    with torch.no_grad():
        pipe.network.prompts.vectors.add_(0.5)
    after_edit = predictions(nlp, TEST_TEXTS)
    fresh = make_pipeline(tiny_bert, "soft", False, prompt_layer=1)
    fresh.initialize(lambda: examples)
    fresh.get_pipe("softprompt_ie").from_bytes(pipe.to_bytes())
    assert predictions(fresh, TEST_TEXTS) == after_edit
