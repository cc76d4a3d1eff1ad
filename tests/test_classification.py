"""Classification queries: document classes (``doc.cats``) asked as queries through the same
backbone, prompts and batches as concepts and relations (issue 14 items 4 and 5)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import spacy
import torch
from spacy.training import Example

from conftest import fit_pipeline

SMOKER = ["Patient smokes a pack of cigarettes daily.", "Current smoker, twenty pack years.",
          "He smokes cigars every day."]
NON_SMOKER = ["Patient denies tobacco use.", "She has never used tobacco.", "No history of tobacco or alcohol."]
# multilabel: each text says whether it mentions smoking and drinking
HABITS = [
    ("He smokes cigarettes daily.", {"smoking": 1.0, "drinking": 0.0}),
    ("She drinks wine every night.", {"smoking": 0.0, "drinking": 1.0}),
    ("He smokes cigars and drinks beer.", {"smoking": 1.0, "drinking": 1.0}),
    ("No complaints today.", {"smoking": 0.0, "drinking": 0.0}),
]


def smoking_docs():
    nlp = spacy.blank("en")
    docs = []
    for text in SMOKER + NON_SMOKER:
        doc = nlp.make_doc(text)
        doc.cats = {"smoker": float(text in SMOKER), "non_smoker": float(text not in SMOKER)}
        docs.append(doc)
    return docs


def habit_docs():
    nlp = spacy.blank("en")
    docs = []
    for text, cats in HABITS:
        doc = nlp.make_doc(text)
        doc.cats = dict(cats)
        docs.append(doc)
    return docs


def model_config(backbone, strategy, freeze, **extra):
    return dict(dict(backbone=backbone, strategy=strategy, freeze_backbone=freeze, prompt_length=4, max_length=64), **extra)


def predicted(nlp, docs):
    return [nlp(doc.text).cats for doc in docs]


# the paper's strategies: none and hard fine-tune the backbone; soft and deep learn prompts on a frozen one
@pytest.mark.parametrize("strategy,freeze", [("none", False), ("hard", False), ("soft", True), ("deep", True)])
def test_exclusive_classes_fit_with_each_strategy(tiny_bert, strategy, freeze):
    torch.manual_seed(0)
    docs = smoking_docs()
    nlp = fit_pipeline(docs, 30, model=model_config(tiny_bert, strategy, freeze), exclusive_classes=True)
    assert nlp.get_pipe("softprompt_ie").cat_labels == ("non_smoker", "smoker")
    for gold, cats in zip(docs, predicted(nlp, docs)):
        assert set(cats) == {"smoker", "non_smoker"}  # every known class is written
        assert sum(cats.values()) == pytest.approx(1.0, abs=1e-5)  # one of N: softmax
        assert max(cats, key=cats.get) == max(gold.cats, key=gold.cats.get)


@pytest.mark.parametrize("strategy,freeze", [("none", False), ("hard", False), ("soft", True)])
def test_multilabel_classes_fit(tiny_bert, strategy, freeze):
    """Two classes, each yes or no: the class's own query part says which one is asked."""
    torch.manual_seed(0)
    docs = habit_docs()
    nlp = fit_pipeline(docs, 30, model=model_config(tiny_bert, strategy, freeze))
    for gold, cats in zip(docs, predicted(nlp, docs)):
        assert {label: score >= 0.5 for label, score in cats.items()} == {k: v == 1.0 for k, v in gold.cats.items()}


@pytest.mark.parametrize("layer", [0, 1])
def test_packed_and_late_classification_queries(tiny_bert, blank_nlp, layer):
    """Packed: one query per window asks every class; late prompts share the window's lower layers."""
    torch.manual_seed(0)
    docs = smoking_docs()
    nlp = fit_pipeline(
        docs, 30, model=model_config(tiny_bert, "soft", True, packed=True, prompt_layer=layer), exclusive_classes=True
    )
    pipe = nlp.get_pipe("softprompt_ie")
    builder = pipe.model.builder
    from spacy_softprompt.pieces import tokenize_doc

    (query,) = builder.cat_queries(0, tokenize_doc(blank_nlp.make_doc(SMOKER[0]), builder.tokenizer))
    assert query.cats and len(query.rows) == 2 and query.n_outputs == 2
    for gold, cats in zip(docs, predicted(nlp, docs)):
        assert max(cats, key=cats.get) == max(gold.cats, key=gold.cats.get)


def test_class_representation_is_the_class_part_and_the_text(tiny_bert, blank_nlp):
    from transformers import AutoTokenizer

    from spacy_softprompt.collate import Collator
    from spacy_softprompt.pieces import tokenize_doc
    from spacy_softprompt.queries import QueryBuilder
    from spacy_softprompt.schema import TaskSchema

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    schema = TaskSchema(["Drug"], {}, ["non_smoker", "smoker"])
    doc = blank_nlp.make_doc(SMOKER[0])
    pieces = [tokenize_doc(doc, tokenizer)]
    for strategy, n_part in (("none", 0), ("hard", None), ("soft", 3)):
        builder = QueryBuilder(tokenizer, schema, strategy=strategy, prompt_length=3, max_length=64, window_overlap=8)
        queries = builder.cat_queries(0, pieces[0])
        assert len(queries) == (1 if strategy == "none" else 2)
        batch = Collator(builder, 4).collate(queries, pieces, with_targets=False)
        assert batch.cat_pool is not None and batch.span_mask.shape[-1] == 0
        part, text = batch.cat_pool[:, :, 0], batch.cat_pool[:, :, 1]
        assert text.sum(-1) == pytest.approx(1.0)  # the mean of the window's subwords
        assert (text[:, :, batch.token_starts[0][0]] > 0).all() and (text[:, :, 0] == 0).all()  # not [CLS]
        assert ((part > 0) & (text > 0)).sum() == 0  # the text is not the part
        assert part.sum(-1) == pytest.approx(0.0 if strategy == "none" else 1.0)  # the class's own part
        if n_part:  # soft: the class's prompt slots, right after [CLS]
            assert part[0, 0, 1 : 1 + n_part] == pytest.approx([1.0 / n_part] * n_part)
        labels = [builder.answer(q, c)[0] for q in queries for c in range(q.output, q.output + q.n_outputs)]
        assert labels == ["non_smoker", "smoker"]
        assert all(builder.answer(q, q.output)[1] is None for q in queries)


def test_long_documents_pool_over_windows(tiny_bert):
    """A Doc longer than one window asks every window; the pooled score is the max (or mean)."""
    from spacy_softprompt.nn.cats import pool_windows

    values = torch.tensor([1.0, 3.0, -2.0, 0.5])
    cells = torch.tensor([0, 0, 1, 1])
    assert pool_windows(values, cells, 2, "max").tolist() == [3.0, 0.5]
    assert pool_windows(values, cells, 2, "mean").tolist() == [2.0, -0.75]
    nlp = spacy.blank("en")
    filler = " ".join(["The patient was seen in clinic today."] * 6)
    docs = []
    for text, smoker in ((filler + " He smokes cigarettes daily.", 1.0), (filler + " He denies tobacco use.", 0.0)):
        doc = nlp.make_doc(text)
        doc.cats = {"smoker": smoker, "non_smoker": 1.0 - smoker}
        docs.append(doc)
    torch.manual_seed(0)
    trained = fit_pipeline(docs, 30, model=model_config(tiny_bert, "hard", False, max_length=32, window_overlap=4),
                           exclusive_classes=True)
    pipe = trained.get_pipe("softprompt_ie")
    from spacy_softprompt.pieces import tokenize_doc

    assert len(pipe.model.builder.cat_queries(0, tokenize_doc(docs[0], pipe.model.builder.tokenizer))) > 4
    for gold, cats in zip(docs, predicted(trained, docs)):
        assert max(cats, key=cats.get) == max(gold.cats, key=gold.cats.get)
    with pytest.raises(ValueError, match="cats_pooling"):
        spacy.blank("en").add_pipe("softprompt_ie", config={"cats_pooling": "sum"})


def test_concepts_relations_and_classes_in_one_component(tiny_bert, toy_docs):
    for i, doc in enumerate(toy_docs):
        doc.cats = {"adverse": float(i != 2)}  # the third text reports no adverse effect
    torch.manual_seed(0)
    nlp = fit_pipeline(toy_docs, 30, model=model_config(tiny_bert, "none", False))
    pipe = nlp.get_pipe("softprompt_ie")
    assert pipe.labels == ("ADE", "Dose", "Drug") and pipe.cat_labels == ("adverse",)
    assert pipe.model.builder.strategy.n_outputs == 3 + len(pipe.relation_labels)  # span columns only
    examples = [Example(nlp.make_doc(d.text), d) for d in toy_docs]
    losses = nlp.update(examples)
    assert losses["softprompt_ie"] > 0
    scores = nlp.evaluate(examples)
    for key in ("conc_f", "rel_f", "ents_f", "concepts_strict_f", "cats_score", "cats_macro_f", "cats_f_per_type"):
        assert key in scores
    assert scores["cats_macro_auc"] == 1.0
    assert set(scores["cats_f_per_type"]) == {"adverse"}


def test_cats_loss_weight_scales_the_classes_loss_and_gradient_alone(tiny_bert, toy_docs, tmp_path):
    """``cats_loss_weight``: the classes' loss and the gradient it sends are multiplied by it, the
    concept queries' are not; it is saved with the component and must be above 0."""
    for i, doc in enumerate(toy_docs):
        doc.cats = {"adverse": float(i != 2)}

    def one_update(weight):
        torch.manual_seed(0)
        nlp = spacy.blank("en")
        nlp.add_pipe("softprompt_ie", config={"model": model_config(tiny_bert, "none", False, dropout=0.0),
                                              "cats_loss_weight": weight})
        nlp.config["initialize"]["components"]["softprompt_ie"] = {"relation_schema": {}}
        examples = [Example(nlp.make_doc(d.text), d) for d in toy_docs]
        nlp.initialize(lambda: examples)
        pipe = nlp.get_pipe("softprompt_ie")
        loss = pipe.update(examples)["softprompt_ie"]
        grads = {n: p.grad.clone() for n, p in pipe.network.named_parameters() if p.grad is not None}
        return nlp, loss, grads

    _, plain_loss, plain = one_update(1.0)
    nlp, loss, weighted = one_update(3.0)
    pipe = nlp.get_pipe("softprompt_ie")
    assert pipe.cfg["cats_loss_weight"] == 3.0 and pipe.labels == ("ADE", "Dose", "Drug")
    cats = [n for n in plain if n.startswith("cat_head.")]
    spans = [n for n in plain if n.startswith("head.")]  # the span head
    assert cats and spans
    for name in cats:
        assert torch.allclose(weighted[name], 3.0 * plain[name], rtol=1e-4, atol=1e-7)
    for name in spans:
        assert torch.allclose(weighted[name], plain[name], rtol=1e-4, atol=1e-7)
    assert loss > plain_loss
    nlp.to_disk(tmp_path / "pipe")
    assert spacy.load(tmp_path / "pipe").get_pipe("softprompt_ie").cfg["cats_loss_weight"] == 3.0
    with pytest.raises(ValueError, match="cats_loss_weight"):
        spacy.blank("en").add_pipe("softprompt_ie", config={"cats_loss_weight": 0.0})


def test_save_and_load_in_a_fresh_process(tiny_bert, tmp_path):
    torch.manual_seed(0)
    docs = smoking_docs()
    nlp = fit_pipeline(docs, 10, model=model_config(tiny_bert, "soft", True), exclusive_classes=True)
    expected = predicted(nlp, docs)
    nlp.to_disk(tmp_path / "pipe")
    model_dir = tmp_path / "pipe" / "softprompt_ie" / "model"
    task = json.loads((model_dir / "task.json").read_text())
    assert task["schema"]["cat_labels"] == ["non_smoker", "smoker"]
    from safetensors.torch import load_file

    assert {"cat_head.part.weight", "cat_head.bias", "cat_head.dense.weight"} <= set(load_file(model_dir / "trainable.safetensors"))
    assert sorted(p.name for p in model_dir.iterdir()) == ["task.json", "trainable.safetensors"]
    cfg = json.loads((tmp_path / "pipe" / "softprompt_ie" / "cfg").read_text())
    assert cfg["exclusive_classes"] is True and cfg["cats_pooling"] == "max"
    code = (
        "import json, sys, spacy; nlp = spacy.load(sys.argv[1]); "
        "print(json.dumps([nlp(t).cats for t in json.loads(sys.argv[2])]))"
    )
    texts = [d.text for d in docs]
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "pipe"), json.dumps(texts)],
                         capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    for a, b in zip(expected, loaded):
        assert a == pytest.approx(b, abs=1e-6)
    again = spacy.blank("en")
    again.add_pipe("softprompt_ie", config={"model": model_config(tiny_bert, "soft", True), "exclusive_classes": True})
    again.from_bytes(nlp.to_bytes())
    for a, b in zip(expected, predicted(again, docs)):
        assert a == pytest.approx(b, abs=1e-6)


def test_a_pipeline_without_cats_is_unchanged(tiny_bert, toy_docs, tmp_path):
    torch.manual_seed(0)
    nlp = fit_pipeline(toy_docs, 2, model=model_config(tiny_bert, "soft", True))
    pipe = nlp.get_pipe("softprompt_ie")
    assert pipe.cat_labels == () and pipe.network.cat_head is None
    assert not [k for k in pipe.network.trainable_state() if k.startswith("cat_head")]
    assert nlp(toy_docs[0].text).cats == {}
    scores = nlp.evaluate([Example(nlp.make_doc(d.text), d) for d in toy_docs])
    assert not [k for k in scores if k.startswith("cats_")]
    nlp.to_disk(tmp_path / "pipe")
    task = json.loads((tmp_path / "pipe" / "softprompt_ie" / "model" / "task.json").read_text())
    assert "cat_labels" not in task["schema"]
    from spacy_softprompt.component import make_softprompt_ie  # noqa: F401  (the factory)

    meta = spacy.Language.get_factory_meta("softprompt_ie")
    assert meta.default_score_weights == {"conc_f": 0.5, "rel_f": 0.5, "ents_f": 0.0}


def test_exclusive_docs_without_one_class_are_not_learned_from(caplog):
    from spacy_softprompt.nn.cats import cats_loss

    logits = torch.tensor([[2.0, -1.0], [0.0, 0.0]])
    entries = [(0, 0, 0, 0, 0), (0, 0, 1, 0, 1), (0, 1, 0, 1, 0), (0, 1, 1, 1, 1)]
    gold = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # doc 1 names two classes
    known = torch.ones(2, 2, dtype=torch.bool)
    loss, (grad,) = cats_loss([logits], entries, gold, known, exclusive=True, pooling="max")
    assert grad[1].abs().sum() == 0 and grad[0].abs().sum() > 0
    # multilabel: a class missing from a reference's cats is not supervised
    known = torch.tensor([[True, False], [False, False]])
    loss, (grad,) = cats_loss([logits], entries, gold, known, exclusive=False, pooling="max")
    assert grad[0, 1] == 0 and grad[1].abs().sum() == 0 and grad[0, 0] != 0


def test_class_gold_values_and_the_exclusive_rules_are_checked(tiny_bert, caplog):
    """A single exclusive class always won (softmax over one: nothing learned, a perfect score); a gold value
    such as 0.5 or 2.0, or two classes at 1.0 under exclusive_classes, was trained on as something else;
    the warning counted Docs the loss learned from."""
    def docs_with(*cats):
        blank = spacy.blank("en")
        docs = []
        for i, c in enumerate(cats):
            doc = blank.make_doc(SMOKER[i % 3] if c.get("smoker") else NON_SMOKER[i % 3])
            doc.cats = c
            docs.append(doc)
        return docs

    config = model_config(tiny_bert, "soft", True)
    with pytest.raises(ValueError, match="one document class .'smoker'. and exclusive_classes = true"):
        fit_pipeline(docs_with({"smoker": 1.0}, {"smoker": 0.0}), 0, model=config, exclusive_classes=True)
    fit_pipeline(docs_with({"smoker": 1.0}, {"smoker": 0.0}), 1, model=config)  # multilabel: a yes/no class
    for exclusive in (True, False):
        with pytest.raises(ValueError, match=r"doc.cats\['smoker'\] = 0.5: a class's gold value is 0.0 or 1.0"):
            fit_pipeline(docs_with({"smoker": 0.5, "non_smoker": 0.0}), 0, model=config, exclusive_classes=exclusive)
    both = docs_with({"smoker": 1.0, "non_smoker": 0.0}, {"smoker": 1.0, "non_smoker": 1.0})
    with pytest.raises(ValueError, match="gives non_smoker, smoker the value 1.0, but exclusive_classes = true"):
        fit_pipeline(both, 0, model=config, exclusive_classes=True)
    fit_pipeline(both, 1, model=config)  # multilabel: both may hold
    neither = docs_with({"smoker": 1.0, "non_smoker": 0.0}, {"smoker": 0.0, "non_smoker": 0.0}, {"smoker": 0.0})
    with caplog.at_level("WARNING", logger="spacy_softprompt"):
        fit_pipeline(neither, 1, model=config, exclusive_classes=True)
    assert "2 training docs with cats give no class the value 1.0" in caplog.text


def test_a_missing_value_and_an_unknown_class_are_named(tiny_bert):
    """A None gold value was a bare TypeError; a class the component does not know was skipped in silence."""
    config = model_config(tiny_bert, "soft", True)
    docs = smoking_docs()
    docs[0].cats = {"smoker": None, "non_smoker": 0.0}
    with pytest.raises(ValueError, match=r"doc.cats\['smoker'\] = None: a class's gold value is 0.0 or 1.0"):
        fit_pipeline(docs, 0, model=config)
    docs = smoking_docs()
    docs[0].cats = {key: np.float32(value) for key, value in docs[0].cats.items()}  # numpy's scalars are numbers
    docs[1].cats = {key: np.bool_(value) for key, value in docs[1].cats.items()}  # (a boolean table's too)
    nlp = fit_pipeline(docs, 0, model=config)
    docs[0].cats = {"smokr": 1.0}
    with pytest.warns(UserWarning, match="doc.cats has the class 'smokr', which this component does not know"):
        nlp.update([Example(nlp.make_doc(docs[0].text), docs[0])])


def test_stock_textcat_keeps_its_classes_beside_a_concepts_component(tiny_bert, toy_docs, caplog):
    """With cat_labels inferred from the data, softprompt_ie also took the classes stock textcat learns, and its
    multilabel scores overwrote textcat's in doc.cats."""
    blank = spacy.blank("en")
    docs = []
    for i, gold in enumerate(toy_docs):
        doc = gold.copy()
        doc.cats = {"adverse": float(i % 2 == 0), "other": float(i % 2 == 1)}
        docs.append(doc)
    blank.add_pipe("textcat")
    blank.add_pipe("softprompt_ie", config={"model": model_config(tiny_bert, "soft", True)})
    examples = [Example(blank.make_doc(doc.text), doc) for doc in docs]
    with caplog.at_level("WARNING", logger="spacy_softprompt"):
        blank.initialize(lambda: examples)
    assert "'softprompt_ie' leaves the training data's doc.cats to textcat" in caplog.text
    assert blank.get_pipe("softprompt_ie").cat_labels == () and blank.get_pipe("softprompt_ie").labels
    cats = blank(docs[0].text).cats
    assert set(cats) == {"adverse", "other"} and sum(cats.values()) == pytest.approx(1.0)  # textcat's softmax


def test_two_softprompt_components_do_not_leave_the_classes_to_each_other(tiny_bert, toy_docs):
    """Each saw the other's factory, which may write doc.cats, as the classes' owner: both dropped them (and one
    with classes alone failed for want of labels). The first takes them; the second leaves them to it."""
    blank = spacy.blank("en")
    for name in ("first", "second"):
        blank.add_pipe("softprompt_ie", name=name, config={"model": model_config(tiny_bert, "soft", True)})
    docs = [doc.copy() for doc in toy_docs]
    for i, doc in enumerate(docs):
        doc.cats = {"adverse": float(i % 2 == 0), "other": float(i % 2 == 1)}
    blank.initialize(lambda: [Example(blank.make_doc(doc.text), doc) for doc in docs])
    assert blank.get_pipe("first").cat_labels == ("adverse", "other") and blank.get_pipe("second").cat_labels == ()


def test_class_scores_count_the_docs_with_gold_classes():
    """A Doc without gold classes (another corpus's, or one not learned from) was counted as a class error."""
    from spacy_softprompt.scoring import cats_scores

    blank = spacy.blank("en")

    def example(gold, guess):
        reference, prediction = blank.make_doc("x"), blank.make_doc("x")
        reference.cats, prediction.cats = gold, guess
        return Example(prediction, reference)

    right = example({"smoker": 1.0, "non_smoker": 0.0}, {"smoker": 0.9, "non_smoker": 0.1})
    no_gold = example({}, {"smoker": 0.9, "non_smoker": 0.1})
    none_at_one = example({"non_smoker": 0.0, "smoker": 0.0}, {"smoker": 0.9, "non_smoker": 0.1})
    alone = cats_scores([right], ["smoker", "non_smoker"], True)
    assert cats_scores([right, no_gold, none_at_one], ["smoker", "non_smoker"], True) == alone
    assert alone["cats_f_per_type"]["smoker"]["f"] == 1.0


def test_a_classes_only_pipeline_selected_on_concept_scores_is_warned(tiny_bert, caplog):
    """spacy train's model-best was chosen on conc_f and rel_f, 0 for a component without concept
    types: the first evaluation always won."""
    docs = smoking_docs()
    for weights, warned in (({}, True), ({"cats_score": 1.0, "conc_f": 0.0, "rel_f": 0.0}, False)):
        nlp = spacy.blank("en", config={"training": {"score_weights": weights}} if weights else {})
        nlp.add_pipe("softprompt_ie", config={"model": model_config(tiny_bert, "soft", True)})
        caplog.clear()
        with caplog.at_level("WARNING", logger="spacy_softprompt"):
            nlp.initialize(lambda: [Example(nlp.make_doc(d.text), d) for d in docs])
        assert ("weighs no cats_* score" in caplog.text) == warned


def test_a_misspelt_description_key_is_warned(tiny_bert, caplog):
    """query_texts = {"smokr": ...} asked smoker its default question, in silence."""
    docs = smoking_docs()
    with caplog.at_level("WARNING", logger="spacy_softprompt"):
        fit_pipeline(docs, 0, model=model_config(tiny_bert, "hard", False), exclusive_classes=True,
                     query_texts={"smokr": "Does the patient smoke now?", "Tobacco": "tobacco use"})
    assert "describes 'smokr', which is no label of it; did you mean 'smoker'?" in caplog.text
    assert "Tobacco" not in caplog.text  # far from every label: a type that may be added later


def test_the_evaluate_verb_scores_document_classes(tiny_bert, tmp_path, capsys):
    """evaluate printed and wrote concept and relation scores alone: a classifier's table was all zeros."""
    from spacy.tokens import DocBin

    from spacy_softprompt.cli import main

    torch.manual_seed(0)
    docs = smoking_docs()
    nlp = fit_pipeline(docs, 10, model=model_config(tiny_bert, "soft", True), exclusive_classes=True)
    nlp.to_disk(tmp_path / "pipe")
    DocBin(docs=docs, store_user_data=True).to_disk(tmp_path / "gold.spacy")
    output, markdown = tmp_path / "scores.json", tmp_path / "scores.md"
    assert main(["evaluate", str(tmp_path / "pipe"), str(tmp_path / "gold.spacy"), "--output", str(output),
                 "--markdown", str(markdown)]) == 0
    scores = json.loads(output.read_text())
    expected = nlp.evaluate([Example(nlp.make_doc(d.text), d) for d in docs])
    assert scores["cats_macro_f"] == pytest.approx(expected["cats_macro_f"])
    assert set(scores["cats_f_per_type"]) == {"smoker", "non_smoker"}
    row = f"classes (macro)  {100 * scores['cats_macro_p']:.2f}"
    assert row in capsys.readouterr().out and "| classes (macro) |" in markdown.read_text()


@pytest.mark.parametrize("typed", [True, False])
def test_attention_text_pooling_starts_as_the_mean_and_learns_where_to_look(typed):
    """Attention pooling begins with every text token weighed alike (the mean head's answer), reads
    only the text positions, and once its keys are learned puts the weight on the matching token."""
    from spacy_softprompt.nn.cats import ClassHead

    torch.manual_seed(0)
    dim, width = 6, 4
    mean_head = ClassHead(dim, width, 2, typed, 0.0).eval()
    attention_head = ClassHead(dim, width, 2, typed, 0.0, "attention").eval()
    attention_head.load_state_dict(mean_head.state_dict(), strict=False)  # the shared weights
    hidden = torch.randn(1, 5, dim)
    weights = torch.zeros(1, 2, 2, 5)
    weights[:, :, 1, 2:4] = 0.5  # text: positions 2 and 3
    if not typed:
        weights[:, :, 0, 1] = 1.0  # each class's part: position 1
    assert torch.allclose(attention_head(weights, hidden), mean_head(weights, hidden), atol=1e-6)
    # keys that single out position 3's state: the text state becomes that token's, not the mean
    with torch.no_grad():
        attention_head.attn_key.weight.copy_(50 * torch.randn(width, dim))
    part = (weights[:, :, 0] @ hidden) if not typed else None
    text_state = attention_head._attend(weights[:, :, 1], part, hidden)
    tokens = hidden[0, 2:4]  # (2, D): the state is a convex mix of the two text tokens only
    mix = torch.linalg.lstsq(tokens.T, text_state[0].T).solution  # (2, K)
    assert torch.allclose(mix.sum(0), torch.ones(2), atol=1e-4) and (mix > -1e-4).all()
    assert not torch.allclose(text_state[0, 0], hidden[0, 2:4].mean(0), atol=1e-3)
    # a column without text (nothing to read) gets the mean's zero state, not NaN
    empty = torch.zeros_like(weights)
    assert torch.equal(attention_head._attend(empty[:, :, 1], part, hidden), torch.zeros(1, 2, dim))
    with pytest.raises(ValueError, match="cats_text_pooling"):
        ClassHead(dim, width, 2, typed, 0.0, "sum")


@pytest.mark.parametrize("strategy,freeze", [("none", False), ("soft", True)])
def test_attention_text_pooling_fits_and_round_trips(tiny_bert, strategy, freeze, tmp_path):
    torch.manual_seed(0)
    docs = smoking_docs()
    config = model_config(tiny_bert, strategy, freeze, cats_text_pooling="attention")
    nlp = fit_pipeline(docs, 30, model=config, exclusive_classes=True)
    expected = predicted(nlp, docs)
    for gold, cats in zip(docs, expected):
        assert max(cats, key=cats.get) == max(gold.cats, key=gold.cats.get)
    keys = set(nlp.get_pipe("softprompt_ie").network.trainable_state())
    assert "cat_head.attn_key.weight" in keys
    assert ("cat_head.attn_query" if strategy == "none" else "cat_head.attn_part.weight") in keys
    nlp.to_disk(tmp_path / "pipe")
    loaded = spacy.load(tmp_path / "pipe")
    for a, b in zip(expected, predicted(loaded, docs)):
        assert a == pytest.approx(b, abs=1e-6)
    with pytest.raises(ValueError, match="cats_text_pooling"):
        spacy.blank("en").add_pipe("softprompt_ie", config={"model": dict(config, cats_text_pooling="max")})


@pytest.mark.parametrize("strategy,packed", [("hard", False), ("soft", False), ("hard", True)])
def test_new_class_from_description_is_predicted_and_round_trips(tiny_bert, tmp_path, strategy, packed):
    """A document class added by description gets a score in doc.cats without retraining (its
    part is matched against the text by the trained class head); unpacked, the trained classes'
    scores do not change (a class is one query of its own)."""
    torch.manual_seed(0)
    docs = habit_docs()
    nlp = fit_pipeline(docs, 10, model=model_config(tiny_bert, strategy, False, packed=packed))
    pipe = nlp.get_pipe("softprompt_ie")
    before = predicted(nlp, docs)
    assert pipe.add_class("gambling", description="Does the patient gamble?") == 1
    assert pipe.cat_labels == ("drinking", "smoking", "gambling")
    after = predicted(nlp, docs)
    assert all(set(cats) == {"smoking", "drinking", "gambling"} for cats in after)
    if not packed:
        for old, new in zip(before, after):
            assert {k: round(v, 5) for k, v in old.items()} == {k: round(new[k], 5) for k in old}
    nlp.to_disk(tmp_path / "pipeline")
    assert predicted(spacy.load(tmp_path / "pipeline"), docs) == after


def test_a_class_cannot_be_added_without_a_class_head(tiny_bert, toy_docs):
    from test_component import examples_for, make_pipeline, train

    nlp = make_pipeline(tiny_bert, "hard", False)
    train(nlp, examples_for(nlp, toy_docs), 1, 0.01)
    with pytest.raises(ValueError, match="no class head"):
        nlp.get_pipe("softprompt_ie").add_class("smoker", description="Does the patient smoke?")
    assert nlp.get_pipe("softprompt_ie").cat_labels == ()


@pytest.mark.parametrize("typed", [True, False])
def test_bag_of_words_adds_the_windows_subword_weights_for_each_columns_class(typed):
    """With a bag of words, a column's logit is the head's logit plus the sum of its class's
    weights over the window's subwords (padding ignored); zero weights leave the head as it was."""
    from spacy_softprompt.nn.cats import ClassHead

    torch.manual_seed(0)
    dim, width, vocab = 8, 6, 10
    plain = ClassHead(dim, width, 3, typed, 0.0)
    head = ClassHead(dim, width, 3, typed, 0.0, vocab_size=vocab)
    head.load_state_dict({**plain.state_dict(), "words": head.words.data}, strict=True)
    hidden = torch.randn(2, 5, dim)
    weights = torch.zeros(2, 3, 2, 5)
    weights[:, :, 0, 1] = 1.0
    weights[:, :, 1, 2:5] = 1.0 / 3
    words = torch.tensor([[4, 7, 7, -1], [1, 2, 3, 9]])
    classes = torch.tensor([[0, 1, 2], [2, 0, -1]])  # typed heads answer class k in column k; here any mapping
    assert torch.equal(head(weights, hidden, words, classes), plain(weights, hidden))  # zero start: no say
    with torch.no_grad():
        head.words.copy_(torch.randn(3, vocab))
    expected = torch.zeros(2, 3)
    for b in range(2):
        for k in range(3):
            c = max(0, int(classes[b, k]))
            expected[b, k] = sum(head.words[c, w] for w in words[b].tolist() if w >= 0)
    assert torch.allclose(head(weights, hidden, words, classes) - plain(weights, hidden), expected, atol=1e-5)
    head.add_class()
    assert head.words.shape == (4, vocab) and not head.words[3].any()


@pytest.mark.parametrize("strategy,freeze", [("none", False), ("soft", True)])
def test_bag_of_words_learns_the_texts_subwords_and_round_trips(tiny_bert, strategy, freeze, tmp_path):
    """cats_bag_of_words: a batch carries each window's subword ids (those the backbone reads) and
    each column's class; training moves the weights of the subwords the notes contain and no
    other; the weights are saved with the pipeline and give the same doc.cats after loading."""
    torch.manual_seed(0)
    docs = smoking_docs()
    nlp = fit_pipeline(docs, 20, model=model_config(tiny_bert, strategy, freeze, cats_bag_of_words=True),
                       exclusive_classes=True)
    pipe = nlp.get_pipe("softprompt_ie")
    expected = predicted(nlp, docs)
    for gold, cats in zip(docs, expected):
        assert max(cats, key=cats.get) == max(gold.cats, key=gold.cats.get)
    tokenizer = pipe.model.builder.tokenizer
    seen = {i for doc in docs for i in tokenizer(doc.text, add_special_tokens=False)["input_ids"]}
    words = pipe.network.cat_head.words.detach()
    assert words.shape == (2, pipe.network.backbone.get_input_embeddings().num_embeddings)
    moved = set(torch.nonzero(words.abs().sum(0)).flatten().tolist())
    assert moved and moved <= seen
    from spacy_softprompt.pieces import tokenize_doc

    doc = nlp.make_doc(docs[0].text)
    pieces = tokenize_doc(doc, tokenizer)
    queries = pipe.model.builder.cat_queries(0, pieces)  # none: one query asks both; soft: one per class
    batch = pipe.model.collator.collate(queries, [pieces], False)
    text_ids = tokenizer(doc.text, add_special_tokens=False)["input_ids"]
    assert [row.tolist() for row in batch.cat_words] == [text_ids] * len(queries)
    answered = [int(batch.cat_classes[b, c]) for b, q in enumerate(queries) for c in range(q.output, q.output + q.n_outputs)]
    assert sorted(answered) == [0, 1]
    nlp.to_disk(tmp_path / "pipe")
    loaded = spacy.load(tmp_path / "pipe")
    assert torch.equal(loaded.get_pipe("softprompt_ie").network.cat_head.words, words)
    for a, b in zip(expected, predicted(loaded, docs)):
        assert a == pytest.approx(b, abs=1e-6)


def test_a_class_added_to_a_bag_of_words_head_starts_with_no_word_weights(tiny_bert, tmp_path):
    """add_class grows the word weights by a zero row: the new class is answered by its
    question alone, and the trained classes' scores do not change."""
    torch.manual_seed(0)
    docs = habit_docs()
    nlp = fit_pipeline(docs, 10, model=model_config(tiny_bert, "hard", False, cats_bag_of_words=True))
    pipe = nlp.get_pipe("softprompt_ie")
    before, trained = predicted(nlp, docs), pipe.network.cat_head.words.detach().clone()
    assert pipe.add_class("gambling", description="Does the patient gamble?") == 1
    words = pipe.network.cat_head.words.detach()
    assert torch.equal(words[:2], trained) and not words[2].any()
    after = predicted(nlp, docs)
    for old, new in zip(before, after):
        assert {k: round(v, 5) for k, v in old.items()} == {k: round(new[k], 5) for k in old}
    nlp.to_disk(tmp_path / "pipeline")
    assert predicted(spacy.load(tmp_path / "pipeline"), docs) == after


@pytest.mark.parametrize("layer,packed", [(0, False), (1, True), (1, False)])
def test_bag_of_words_reads_each_window_as_the_backbone_does(tiny_bert, blank_nlp, layer, packed):
    """A note longer than one window: each classification query's bag holds exactly the subwords
    of its own window that the backbone reads (input prompts: its row after the query part; late
    prompts: its shared window row), and its columns answer the classes in the task's order."""
    from spacy_softprompt.pieces import tokenize_doc

    nlp = spacy.blank("en")
    nlp.add_pipe("softprompt_ie", config={"model": model_config(
        tiny_bert, "soft", True, packed=packed, prompt_layer=layer, max_length=32, window_overlap=4,
        cats_bag_of_words=True)})
    docs = smoking_docs()
    nlp.initialize(lambda: [Example(nlp.make_doc(d.text), d) for d in docs])
    pipe = nlp.get_pipe("softprompt_ie")
    builder, collator = pipe.model.builder, pipe.model.collator
    # one token longer than a window (the backbone reads its first subwords only) among the sentences
    doc = blank_nlp.make_doc(" ".join(SMOKER + ["qzx" * 30] + NON_SMOKER + SMOKER))  # 90 subwords
    pieces = tokenize_doc(doc, builder.tokenizer)
    queries = builder.cat_queries(0, pieces)
    assert len({q.window for q in queries}) > 2  # several windows
    batch = collator.collate(queries, [pieces], False)
    cls, sep = builder.special.cls_id, builder.special.sep_id
    for b, q in enumerate(queries):
        words = [w for w in batch.cat_words[b].tolist() if w >= 0]
        first, last = pieces.first[q.window[0]:q.window[1]], pieces.last[q.window[0]:q.window[1]]
        window = pieces.ids[first[first >= 0].min(): last.max() + 1].tolist()
        assert words and words == window[: len(words)]  # the window's subwords, cut only in an over-long token
        if layer == 0:  # the text sits between the query part's [SEP] and the closing [SEP]
            row = batch.input_ids[b][batch.attention_mask[b] > 0].tolist()
            assert row[-1 - len(words):-1] == words and row[-1] == sep
        else:
            assert any(row[row != builder.special.pad_id].tolist() == [cls, *words, sep]
                       for row in batch.shared.window_ids)
        answered = [builder.answer(q, c)[0] for c in range(q.output, q.output + q.n_outputs)]
        assert [pipe.cat_labels[int(batch.cat_classes[b, c])] for c in range(q.output, q.output + q.n_outputs)] == answered
