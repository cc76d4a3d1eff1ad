"""The softprompt_ie component: training per strategy, frozen backbones, serialization,
long documents, odd inputs. Tiny random backbones unless a frozen backbone must
already know language (then the offline default all-MiniLM-L6-v2)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import spacy
import torch
from spacy.training import Example

from spacy_softprompt.artifact import BackboneMismatch
from spacy_softprompt.scoring import score_examples

from conftest import TEXTS, annotate


def make_pipeline(backbone, strategy, frozen, **model):
    """A pipeline with softprompt_ie; the torch seed is fixed here, so a test's result does not
    depend on which tests ran before it."""
    torch.manual_seed(0)
    nlp = spacy.blank("en")
    config = {"backbone": backbone, "strategy": strategy, "freeze_backbone": frozen, "prompt_length": 8}
    config.update(model)
    nlp.add_pipe("softprompt_ie", config={"model": config})
    return nlp


def examples_for(nlp, docs):
    return [Example(nlp.make_doc(doc.text), doc) for doc in docs]


def train(nlp, examples, steps, learn_rate):
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = learn_rate
    losses = [nlp.update(examples, sgd=optimizer)["softprompt_ie"] for _ in range(steps)]
    return optimizer, losses


def fitted(nlp, examples):
    scores = score_examples([Example(nlp(eg.reference.text), eg.reference) for eg in examples])
    return scores["concepts_strict_f"], scores["relations_strict_f"]


def train_until_fitted(nlp, examples, max_rounds, steps_per_round, learn_rate):
    """Train in rounds, stopping as soon as concepts and relations are both perfect."""
    optimizer, losses = train(nlp, examples, steps_per_round, learn_rate)
    for _ in range(max_rounds - 1):
        if fitted(nlp, examples) == (1.0, 1.0):
            break
        losses += [nlp.update(examples, sgd=optimizer)["softprompt_ie"] for _ in range(steps_per_round)]
    return losses


@pytest.mark.parametrize(
    "backbone,strategy,frozen",
    [
        ("tiny_bert", "none", False),
        ("tiny_bert", "hard", False),
        ("tiny_bert", "soft", False),
        ("tiny_bert", "deep", False),
        ("tiny_gpt2", "soft", False),
        ("tiny_gpt2", "none", False),
        ("tiny_bert", "soft_packed", False),
        ("tiny_bert", "hard_packed", False),
        ("tiny_gpt2", "deep_packed", False),
        ("tiny_bert", "hard_soft", False),
        ("tiny_gpt2", "hard_deep_packed", False),
    ],
)
def test_unfrozen_strategies_fit_concepts_and_relations(request, toy_docs, backbone, strategy, frozen):
    packed = strategy.endswith("_packed")
    strategy = strategy.removesuffix("_packed")
    nlp = make_pipeline(request.getfixturevalue(backbone), strategy, frozen, packed=packed)
    examples = examples_for(nlp, toy_docs)
    losses = train_until_fitted(nlp, examples, max_rounds=6, steps_per_round=20, learn_rate=0.01)
    assert losses[-1] < 0.2 * losses[0]
    assert fitted(nlp, examples) == (1.0, 1.0)


@pytest.mark.parametrize("strategy", ["soft", "deep"])
def test_frozen_strategies_fit_and_leave_backbone_identical(toy_docs, default_backbone_path, strategy):
    nlp = make_pipeline(default_backbone_path, strategy, True)
    examples = examples_for(nlp, toy_docs[:2])
    nlp.initialize(lambda: examples)
    pipe = nlp.get_pipe("softprompt_ie")
    before = {k: v.clone() for k, v in pipe.network.backbone.state_dict().items()}
    losses = train_until_fitted(nlp, examples, max_rounds=6, steps_per_round=15, learn_rate=0.03)
    assert losses[-1] < 0.2 * losses[0]
    assert fitted(nlp, examples) == (1.0, 1.0)
    after = pipe.network.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not p.requires_grad and p.grad is None for p in pipe.network.backbone.parameters())


def test_frozen_backbone_gets_no_optimizer_state(tiny_bert, toy_docs):
    nlp = make_pipeline(tiny_bert, "soft", True)
    examples = examples_for(nlp, toy_docs)
    optimizer, _ = train(nlp, examples, 2, 0.01)
    names = {key[1] for key in optimizer.mom1}
    assert names and not any(name.startswith("backbone.") for name in names)
    assert "prompts.vectors" in names and any(name.startswith("head.") for name in names)


def test_unfrozen_backbone_is_trained(tiny_bert, toy_docs):
    nlp = make_pipeline(tiny_bert, "soft", False)
    examples = examples_for(nlp, toy_docs)
    nlp.initialize(lambda: examples)
    backbone = nlp.get_pipe("softprompt_ie").network.backbone
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    optimizer = nlp.resume_training()
    nlp.update(examples, sgd=optimizer)
    assert any(not torch.equal(before[k], v) for k, v in backbone.state_dict().items())


def _first_step(tiny_bert, toy_docs, head_lr_scale):
    """Each parameter's change in one Adam step of an unfrozen soft-prompt pipeline."""
    nlp = make_pipeline(tiny_bert, "soft", False, head_lr_scale=head_lr_scale)
    examples = examples_for(nlp, toy_docs)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.001
    network = nlp.get_pipe("softprompt_ie").network
    before = {k: v.detach().clone() for k, v in network.named_parameters()}
    nlp.update(examples, sgd=optimizer, drop=0.0)
    return {k: v.detach() - before[k] for k, v in network.named_parameters()}


def test_head_lr_scale_speeds_up_what_is_new_and_leaves_the_backbone_rate(tiny_bert, toy_docs):
    plain, scaled = _first_step(tiny_bert, toy_docs, 1.0), _first_step(tiny_bert, toy_docs, 10.0)
    backbone = [k for k in plain if k.startswith("backbone.")]
    new = [k for k in plain if not k.startswith("backbone.")]
    assert backbone and {"prompts.vectors", "trigger_marker"} <= set(new)
    for key in backbone:  # the backbone's step is the optimizer's, whatever the scale
        torch.testing.assert_close(scaled[key], plain[key])
    moved = [k for k in new if plain[k].abs().max() > 0]
    assert "prompts.vectors" in moved and any(k.startswith("head.") for k in moved)
    for key in moved:  # Adam's first step is lr * sign(gradient): ten times the rate, ten times the step
        torch.testing.assert_close(scaled[key], 10 * plain[key], rtol=1e-3, atol=1e-5)  # float32 rounding of w + step - w


def test_head_lr_scale_must_be_positive(tiny_bert):
    with pytest.raises(ValueError, match="head_lr_scale must be above 0"):
        make_pipeline(tiny_bert, "soft", False, head_lr_scale=0.0)


def predictions(nlp, texts):
    out = []
    for doc in nlp.pipe(texts):
        concepts = [(s.start_char, s.end_char, s.label_) for s in doc.spans["softprompt"]]
        scores = [round(x, 5) for x in doc.spans["softprompt"].attrs["scores"]]
        out.append((concepts, scores, sorted(r.key() for r in doc._.relations)))
    return out


TEST_TEXTS = [t for t, _ in TEXTS] + ["Aspirin gave him a rash.", ""]


def test_frozen_save_load_identical_and_small(tiny_bert, toy_docs, tmp_path):
    nlp = make_pipeline(tiny_bert, "soft", True)
    train(nlp, examples_for(nlp, toy_docs), 10, 0.01)
    nlp.to_disk(tmp_path / "pipeline")
    saved = tmp_path / "pipeline" / "softprompt_ie"
    assert sorted(p.name for p in saved.iterdir()) == ["cfg", "model"]
    assert sorted(p.name for p in (saved / "model").iterdir()) == ["task.json", "trainable.safetensors"]
    loaded = spacy.load(tmp_path / "pipeline")
    assert predictions(loaded, TEST_TEXTS) == predictions(nlp, TEST_TEXTS)


def test_unfrozen_save_stores_backbone_and_loads_without_original(tiny_bert, toy_docs, tmp_path):
    import shutil

    backbone = tmp_path / "backbone_copy"
    shutil.copytree(tiny_bert, backbone)
    nlp = make_pipeline(str(backbone), "hard", False)
    train(nlp, examples_for(nlp, toy_docs), 5, 0.01)
    nlp.to_disk(tmp_path / "pipeline")
    shutil.rmtree(backbone)  # the pipeline must not need the training-time folder
    assert (tmp_path / "pipeline" / "softprompt_ie" / "model" / "backbone" / "model.safetensors").exists()
    component = tmp_path / "pipeline" / "softprompt_ie"
    assert not [p for p in component.rglob("*") if p.suffix in (".bin", ".pt", ".pkl", ".pth")]
    loaded = spacy.load(tmp_path / "pipeline")
    assert predictions(loaded, TEST_TEXTS) == predictions(nlp, TEST_TEXTS)


def test_to_bytes_round_trip(tiny_bert, toy_docs):
    nlp = make_pipeline(tiny_bert, "deep", True)
    train(nlp, examples_for(nlp, toy_docs), 5, 0.01)
    other = make_pipeline(tiny_bert, "deep", True)
    other.get_pipe("softprompt_ie").from_bytes(nlp.get_pipe("softprompt_ie").to_bytes())
    assert predictions(other, TEST_TEXTS) == predictions(nlp, TEST_TEXTS)


def test_serialization_before_initialize(tiny_bert, tmp_path):
    nlp = make_pipeline(tiny_bert, "soft", True)
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    with pytest.raises(ValueError, match="not initialized"):
        loaded("Aspirin caused nausea.")


def test_changed_backbone_is_refused(tiny_bert, toy_docs, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    backbone = tmp_path / "backbone"
    shutil.copytree(tiny_bert, backbone)
    nlp = make_pipeline(str(backbone), "soft", True)
    train(nlp, examples_for(nlp, toy_docs), 2, 0.01)
    nlp.to_disk(tmp_path / "pipeline")
    weights = load_file(str(backbone / "model.safetensors"))
    name = sorted(weights)[0]
    weights[name] = weights[name] + 0.01
    save_file(weights, str(backbone / "model.safetensors"))
    with pytest.raises(BackboneMismatch, match="weight hash"):
        spacy.load(tmp_path / "pipeline")


def test_store_backbone_option_makes_frozen_pipeline_self_contained(tiny_bert, toy_docs, tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "softprompt_ie",
        config={"store_backbone": True, "model": {"backbone": tiny_bert, "strategy": "soft", "prompt_length": 4}},
    )
    train(nlp, examples_for(nlp, toy_docs), 2, 0.01)
    nlp.to_disk(tmp_path / "pipeline")
    assert (tmp_path / "pipeline" / "softprompt_ie" / "model" / "backbone" / "config.json").exists()
    assert predictions(spacy.load(tmp_path / "pipeline"), TEST_TEXTS) == predictions(nlp, TEST_TEXTS)


def test_spacy_load_in_fresh_process_without_import(tiny_bert, toy_docs, tmp_path):
    nlp = make_pipeline(tiny_bert, "soft", True)
    train(nlp, examples_for(nlp, toy_docs), 3, 0.01)
    nlp.to_disk(tmp_path / "pipeline")
    code = (
        "import json, spacy, sys; nlp = spacy.load(sys.argv[1]);"
        "print(type(nlp.get_pipe('softprompt_ie')).__name__);"
        "docs = list(nlp.pipe(sys.argv[2:]));"
        "print(json.dumps([[[s.start_char, s.end_char, s.label_] for s in d.spans['softprompt']] for d in docs]));"
        "print(json.dumps([sorted(list(r.key()) for r in d._.relations) for d in docs]))"
    )
    texts = [t for t, _ in TEXTS]
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "pipeline"), *texts], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    name, concepts, relations = out.stdout.strip().splitlines()
    docs = list(nlp.pipe(texts))
    assert name == "SoftPromptIE"
    assert json.loads(concepts) == [[[s.start_char, s.end_char, s.label_] for s in d.spans["softprompt"]] for d in docs]
    assert json.loads(relations) == [sorted(list(r.key()) for r in d._.relations) for d in docs]


def test_long_document_is_windowed_without_losing_its_end(tiny_bert, blank_nlp):
    filler = "The patient was seen in clinic today and vital signs were stable. " * 12
    text = filler + "Later penicillin caused hives."
    doc = annotate(
        blank_nlp, text, [("penicillin", "Drug"), ("hives", "ADE")], [("penicillin", "Drug-AE", "hives")]
    )
    nlp = make_pipeline(tiny_bert, "soft", False, max_length=40, window_overlap=8)
    examples = examples_for(nlp, [doc])
    pipe = nlp.get_pipe("softprompt_ie")
    losses = train_until_fitted(nlp, examples, max_rounds=6, steps_per_round=20, learn_rate=0.01)
    from spacy_softprompt.pieces import tokenize_doc

    pieces = tokenize_doc(examples[0].predicted, pipe.model.builder.tokenizer)
    assert len(pipe.model.builder.tiles(pieces)) > 3
    assert losses[-1] < losses[0]
    predicted = nlp(text)
    assert [(s.text, s.label_) for s in predicted.spans["softprompt"]] == [("penicillin", "Drug"), ("hives", "ADE")]
    assert [(r.head.text, r.label, r.tail.text) for r in predicted._.relations] == [("penicillin", "Drug-AE", "hives")]


def test_relation_across_a_window_boundary(tiny_bert, blank_nlp):
    """Trigger and argument fall in different tiling windows; the trigger-centred
    relation window still holds both."""
    from transformers import AutoTokenizer

    from spacy_softprompt.pieces import tile_windows, tokenize_doc
    from spacy_softprompt.queries import QueryBuilder
    from spacy_softprompt.schema import TaskSchema

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    schema = TaskSchema(["ADE", "Drug"], {"Drug": {"Drug-AE": ["ADE"]}})
    encoder = QueryBuilder(tokenizer, schema, strategy="soft", prompt_length=8, max_length=40, window_overlap=4)
    sentence = "Penicillin was started on Monday and by Friday widespread hives appeared."
    for n_words in range(40):  # shift the sentence until it straddles a tiling boundary
        text = "Vitals stable " * n_words + sentence + " The patient felt well."
        doc = blank_nlp.make_doc(text)
        windows = tile_windows(tokenize_doc(doc, tokenizer).counts, encoder.concept_budget, 4)
        head = [t.i for t in doc if t.text == "Penicillin"][0]
        tail = [t.i for t in doc if t.text == "hives"][0]
        if not any(s <= head and tail < e for s, e in windows):
            break
    else:
        pytest.fail("could not place the relation across a window boundary")
    doc = annotate(
        blank_nlp, text, [("Penicillin", "Drug"), ("hives", "ADE")], [("Penicillin", "Drug-AE", "hives")]
    )
    nlp = make_pipeline(tiny_bert, "soft", False, max_length=40, window_overlap=4)
    examples = examples_for(nlp, [doc])
    train_until_fitted(nlp, examples, max_rounds=6, steps_per_round=20, learn_rate=0.01)
    assert nlp.get_pipe("softprompt_ie").model.builder.concept_budget == encoder.concept_budget
    predicted = nlp(text)
    assert [(r.head.text, r.label, r.tail.text) for r in predicted._.relations] == [("Penicillin", "Drug-AE", "hives")]


def test_odd_inputs_and_unseen_label(tiny_bert, toy_docs):
    nlp = make_pipeline(tiny_bert, "soft", True)
    examples = examples_for(nlp, toy_docs)
    nlp.config["initialize"]["components"]["softprompt_ie"] = {"labels": ["ADE", "Dose", "Drug", "Procedure"]}
    optimizer = nlp.initialize(lambda: examples)
    nlp.update(examples, sgd=optimizer)
    pipe = nlp.get_pipe("softprompt_ie")
    assert "Procedure" in pipe.labels
    texts = ["", "   \n\t ", "Le patient a reçu de l'aspirine — nausée sévère. 患者 ✓", "Aspirin caused nausea."]
    docs = list(nlp.pipe(texts, batch_size=4))
    assert [d.text for d in docs] == texts
    for doc in docs:
        assert "softprompt" in doc.spans
        assert all(s.label_ in pipe.labels for s in doc.spans["softprompt"])
        assert len(doc.spans["softprompt"].attrs["scores"]) == len(doc.spans["softprompt"])
    assert len(docs[0].spans["softprompt"]) == 0 and len(docs[1].spans["softprompt"]) == 0


def test_blank_label_given_at_initialize_is_a_clear_error(tiny_bert, toy_docs):
    nlp = make_pipeline(tiny_bert, "soft", True)
    examples = examples_for(nlp, toy_docs)
    nlp.config["initialize"]["components"]["softprompt_ie"] = {"labels": ["Drug", " "]}
    with pytest.raises(ValueError, match="A concept label is a name, not ' '"):
        nlp.initialize(lambda: examples)


def test_no_labels_is_a_clear_error(tiny_bert, blank_nlp):
    nlp = make_pipeline(tiny_bert, "soft", True)
    examples = [Example(nlp.make_doc("Nothing here."), blank_nlp("Nothing here."))]
    with pytest.raises(ValueError, match="No concept labels"):
        nlp.initialize(lambda: examples)


def test_pipe_with_two_processes(tiny_bert, toy_docs):
    nlp = make_pipeline(tiny_bert, "soft", False)
    train(nlp, examples_for(nlp, toy_docs), 3, 0.01)
    texts = [t for t, _ in TEXTS] * 2
    single = [[(s.start_char, s.end_char, s.label_) for s in d.spans["softprompt"]] for d in nlp.pipe(texts)]
    multi = [
        [(s.start_char, s.end_char, s.label_) for s in d.spans["softprompt"]]
        for d in nlp.pipe(texts, n_process=2, batch_size=2)
    ]
    assert multi == single


def test_frozen_artifact_for_default_backbone_is_under_one_percent(default_backbone_path, toy_docs, tmp_path):
    nlp = make_pipeline("default", "soft", True, prompt_length=16)
    nlp.initialize(lambda: examples_for(nlp, toy_docs[:1]))
    nlp.to_disk(tmp_path / "pipeline")
    artifact = sum(p.stat().st_size for p in (tmp_path / "pipeline" / "softprompt_ie").iterdir())
    backbone = (Path(default_backbone_path) / "model.safetensors").stat().st_size
    assert artifact < 0.01 * backbone, (artifact, backbone)


def test_training_dropout_reaches_the_span_head(tiny_bert, toy_docs):
    """spaCy's [training] dropout arrives as update(drop=...) and is the head's dropout."""
    nlp = make_pipeline(tiny_bert, "soft", True)
    examples = examples_for(nlp, toy_docs)
    nlp.initialize(lambda: examples)
    pipe = nlp.get_pipe("softprompt_ie")

    def loss(drop):
        torch.manual_seed(0)
        return pipe.update(examples, drop=drop)["softprompt_ie"]

    assert loss(0.0) == loss(0.0)
    assert pipe.network.head.dropout.p == 0.0
    assert loss(0.9) != loss(0.0)
    pipe.update(examples, drop=0.3)
    assert pipe.network.head.dropout.p == 0.3


def test_every_relation_argument_is_a_concept(blank_nlp):
    """A relation tail that was not itself predicted as a concept joins the span group,
    typed by the schema and scored by its relation (decoding.py's one rule)."""
    from spacy_softprompt.decoding import annotations
    from spacy_softprompt.schema import TaskSchema

    doc = blank_nlp.make_doc("Aspirin caused severe nausea and rash.")
    schema = TaskSchema(["ADE", "Drug"], {"Drug": {"Drug-AE": ["ADE"]}})
    concepts = [(0, 1, "Drug", 0.9), (5, 6, "ADE", 0.8)]
    relations = [((0, 1, "Drug"), "Drug-AE", (2, 4), 0.7), ((0, 1, "Drug"), "Drug-AE", (5, 6), 0.6)]
    spans, scores, found = annotations(doc, concepts, relations, schema)
    assert [(s.text, s.label_) for s in spans] == [("Aspirin", "Drug"), ("rash", "ADE"), ("severe nausea", "ADE")]
    assert scores == [0.9, 0.8, 0.7]
    assert [(r.head.text, r.tail.text, r.tail.label_) for r in found] == [
        ("Aspirin", "severe nausea", "ADE"), ("Aspirin", "rash", "ADE")
    ]


def test_predicted_relation_arguments_are_all_in_the_span_group(tiny_bert, toy_docs):
    nlp = make_pipeline(tiny_bert, "soft", False)
    train(nlp, examples_for(nlp, toy_docs), 30, 0.01)
    nlp.get_pipe("softprompt_ie").cfg.update(relation_threshold=0.001)  # tails that are no concept
    docs = list(nlp.pipe([t for t, _ in TEXTS]))
    concept_stage = nlp.get_pipe("softprompt_ie").predict([nlp.make_doc(t) for t, _ in TEXTS]).concepts
    assert sum(map(len, concept_stage)) < sum(len(d.spans["softprompt"]) for d in docs)  # tails joined
    for doc in docs:
        group = {(s.start, s.end, s.label_) for s in doc.spans["softprompt"]}
        for rel in doc._.relations:
            assert {(rel.head.start, rel.head.end, rel.head.label_), (rel.tail.start, rel.tail.end, rel.tail.label_)} <= group


def test_packed_queries_ask_every_type_in_one_pass(tiny_bert, toy_docs):
    """Packed: one concept query per window and one relation query per trigger, each type
    answered through its own part of the query."""
    nlp = make_pipeline(tiny_bert, "soft", False, packed=True)
    examples = examples_for(nlp, toy_docs)
    nlp.initialize(lambda: examples)
    builder = nlp.get_pipe("softprompt_ie").model.builder
    from spacy_softprompt.pieces import tokenize_doc

    pieces = tokenize_doc(examples[1].predicted, builder.tokenizer)
    concept_queries = builder.concept_queries(0, pieces)
    assert len(concept_queries) == 1 and concept_queries[0].rows == (0, 1, 2)
    trigger = examples[1].predicted.char_span(18, 27, label="Drug")
    other = examples[1].predicted.char_span(9, 14, label="Drug")  # "50 mg", as if it were a drug
    relation_queries = builder.relation_queries(0, pieces, [trigger, other])
    assert len(relation_queries) == 1 and relation_queries[0].rows == (3, 4)
    assert relation_queries[0].levitated and relation_queries[0].triggers == (trigger, other)


@pytest.mark.parametrize("layer", [0, 1])
def test_levitated_triggers_do_not_see_each_other(tiny_bert, toy_docs, layer):
    """Packed relations answer several triggers in one pass; each trigger's marker reads the
    text and itself only, so another trigger in the same pass changes none of its scores."""
    from spacy_softprompt.pieces import tokenize_doc

    nlp = make_pipeline(tiny_bert, "soft", False, packed=True, prompt_layer=layer)
    nlp.initialize(lambda: examples_for(nlp, toy_docs))
    pipe = nlp.get_pipe("softprompt_ie")
    builder, collator = pipe.model.builder, pipe.model.collator
    doc = nlp.make_doc(TEXTS[1][0])
    pieces = [tokenize_doc(doc, builder.tokenizer)]
    ibuprofen, dose = doc.char_span(18, 27, label="Drug"), doc.char_span(9, 14, label="Drug")

    def logits(triggers):
        queries = builder.relation_queries(0, pieces[0], triggers)
        return pipe.model.predict(collator.collate(queries, pieces, with_targets=False))

    alone, together = logits([ibuprofen]), logits([ibuprofen, dose])
    assert together.shape[-1] == 2 * alone.shape[-1]
    np.testing.assert_allclose(together[..., : alone.shape[-1]], alone, rtol=1e-5, atol=1e-5)
    assert not np.allclose(together[..., alone.shape[-1]:], alone, atol=1e-3)  # the other trigger differs


def test_packed_needs_a_query_part(tiny_bert):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="'none' already answers every type in one pass"):
        nlp.add_pipe("softprompt_ie", config={"model": {"backbone": tiny_bert, "strategy": "none", "packed": True}})


def test_windows_stay_within_the_backbones_positions(tiny_bert, toy_docs):
    """max_length 512 on a backbone of 256 positions (whose tokenizer says 512): the windows are cut to 256, so a
    long note is read, where it once crashed inside the backbone on the first note past 256 subwords."""
    nlp = make_pipeline(tiny_bert, "soft", True, max_length=512)
    train(nlp, examples_for(nlp, toy_docs), 1, 0.01)
    assert nlp.get_pipe("softprompt_ie").model.builder.max_length == 256
    doc = nlp(" ".join(["Aspirin 500 mg caused severe nausea and a rash."] * 50))
    assert len(doc) == 500 and "softprompt" in doc.spans
