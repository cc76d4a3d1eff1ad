"""Several corpora in one component (issue 14 item 1) and new concept types from their
description (item 2), on a tiny random BERT: each Doc is supervised and asked only on its
corpus's types, same-named types of two corpora are kept apart by qualified names, and a
trained component takes a new type zero-shot, through save and load."""
from __future__ import annotations

import pytest
import spacy
import torch
from spacy.tokens import DocBin

from spacy_softprompt.cli import main
from spacy_softprompt.pieces import tokenize_doc
from spacy_softprompt.queries import label_words
from spacy_softprompt.targets import training_queries

from conftest import RELATIONS, TEXTS, annotate
from test_component import examples_for, make_pipeline, predictions, train

SDOH_TEXTS = [
    ("He uses cocaine and drinks beer daily.", [("cocaine", "sdoh/Drug"), ("beer", "Alcohol")]),
    ("She quit heroin years ago.", [("heroin", "sdoh/Drug")]),
]
ADE_LABELS = {"ADE", "Dose", "Drug", "Drug-AE", "Drug-Dose"}
SDOH_LABELS = {"Alcohol", "sdoh/Drug"}
NEW_TEXTS = ["Aspirin was taken twice daily.", "He drinks beer daily.", ""]


def corpus_docs(nlp) -> list:
    """The toy ADE Docs tagged ``ade`` and the toy SDoH Docs tagged ``sdoh``."""
    ade = [annotate(nlp, t, m, RELATIONS.get(i, ())) for i, (t, m) in enumerate(TEXTS)]
    sdoh = [annotate(nlp, t, m) for t, m in SDOH_TEXTS]
    for doc in ade:
        doc._.corpus = "ade"
    for doc in sdoh:
        doc._.corpus = "sdoh"
    return ade + sdoh


def multi_pipeline(tiny_bert, strategy, **model):
    nlp = make_pipeline(tiny_bert, strategy, False, **model)
    return nlp, examples_for(nlp, corpus_docs(nlp))


def column_labels(builder, query):
    return {builder.answer(query, c)[0] for c in range(query.output, query.output + query.n_outputs)}


def test_corpus_tag_travels_with_docbin(blank_nlp):
    doc = blank_nlp("He uses cocaine.")
    doc._.corpus = "sdoh"
    back = list(DocBin(store_user_data=True, docs=[doc]).get_docs(blank_nlp.vocab))
    assert back[0]._.corpus == "sdoh"


@pytest.mark.parametrize("strategy,packed", [("soft", False), ("hard", True), ("none", False)])
def test_doc_is_supervised_only_on_its_corpus_types(tiny_bert, strategy, packed):
    """The span mask (the loss's weights) of every training query covers only the types of its
    Doc's corpus: one query per type asks only those; a query answering every type (packed, none)
    masks the other corpus's columns. Without the mask the other corpus's types are negatives."""
    nlp, examples = multi_pipeline(tiny_bert, strategy, packed=packed)
    nlp.initialize(lambda: examples)
    pipe = nlp.get_pipe("softprompt_ie")
    assert pipe.schema.corpora == {"ade": sorted(ADE_LABELS), "sdoh": sorted(SDOH_LABELS)}
    builder = pipe.model.builder
    queries, pieces = training_queries(builder, examples, "softprompt")
    answered = 0
    for batch in pipe._batches(queries, pieces, with_targets=True):
        for b, q in enumerate(batch.queries):
            own = ADE_LABELS if examples[q.doc_index].reference._.corpus == "ade" else SDOH_LABELS
            for column in range(q.output, q.output + q.n_outputs):
                label = builder.answer(q, column)[0]
                scored = batch.span_mask[b, ..., column].any()
                assert scored == (label in own), (label, examples[q.doc_index].reference.text)
        answered += batch.targets[batch.span_mask].sum()
    # the targets still mark every gold answer of the Doc's own types
    gold = [len(eg.reference.spans["softprompt"]) + len(eg.reference._.relations) for eg in examples]
    assert answered == sum(gold)


def test_other_corpus_types_get_no_gradient(tiny_bert):
    """Training on ADE Docs only: the prompts of the SDoH types (asked nowhere on an ADE Doc)
    get no gradient at all, the ADE types' prompts do."""
    nlp, examples = multi_pipeline(tiny_bert, "soft")
    nlp.initialize(lambda: examples)
    pipe = nlp.get_pipe("softprompt_ie")
    ade_examples = [eg for eg in examples if eg.reference._.corpus == "ade"]
    pipe.update(ade_examples)  # no optimizer: the gradients stay on the tensors
    grad = pipe.network.prompts.vectors.grad
    rows = builder_rows(pipe)
    for label in SDOH_LABELS:
        assert torch.count_nonzero(grad[rows[label]]) == 0, label
    for label in ("Drug", "ADE", "Dose", "Drug-AE"):
        assert torch.count_nonzero(grad[rows[label]]) > 0, label


def builder_rows(pipe):
    labels = pipe.model.builder.labels
    return {label: i for i, label in enumerate(labels.concepts + labels.relations + labels.cats)}


def test_qualified_labels_are_separate_types_and_tagged_docs_are_asked_their_own(tiny_bert):
    """``sdoh/Drug`` and ``Drug`` are two types with their own questions; a Doc tagged with a
    corpus is answered only in its corpus's types, an untagged Doc in every type."""
    nlp, examples = multi_pipeline(tiny_bert, "hard")
    nlp.get_pipe("softprompt_ie").cfg["threshold"] = 1e-6  # every candidate becomes a hit
    nlp.get_pipe("softprompt_ie").cfg["relation_threshold"] = 1e-6
    nlp.initialize(lambda: examples)
    pipe = nlp.get_pipe("softprompt_ie")
    builder = pipe.model.builder
    assert label_words("sdoh/Drug") == "sdoh drug"
    questions = dict(zip(builder.labels.concepts, builder.strategy.questions))
    assert questions["sdoh/Drug"] != questions["Drug"]
    text = "Aspirin caused nausea; he uses cocaine."

    def labels_of(corpus):
        doc = nlp.make_doc(text)
        doc._.corpus = corpus
        doc = nlp(doc)
        return {s.label_ for s in doc.spans["softprompt"]} | {r.label for r in doc._.relations}

    assert labels_of("ade") <= ADE_LABELS and labels_of("ade") & {"Drug", "ADE"}
    assert labels_of("sdoh") == SDOH_LABELS
    assert labels_of(None) >= SDOH_LABELS | {"Drug", "ADE", "Dose"}
    assert labels_of("unseen") == labels_of(None)  # a corpus the task does not know: every type


def test_training_doc_of_unknown_corpus_is_an_error(tiny_bert):
    nlp, examples = multi_pipeline(tiny_bert, "soft")
    optimizer = nlp.initialize(lambda: examples)
    examples[0].reference._.corpus = "maccrobat"
    with pytest.raises(ValueError, match="corpus 'maccrobat'"):
        nlp.update(examples[:1], sgd=optimizer)


@pytest.mark.parametrize("strategy,packed", [("hard", True), ("soft", False), ("deep", True), ("hard", False),
                                             ("hard_soft", True), ("hard_deep", False)])
def test_new_type_from_description_is_predicted_and_round_trips(tiny_bert, toy_docs, tmp_path, strategy, packed):
    nlp = make_pipeline(tiny_bert, strategy, False, packed=packed)
    train(nlp, examples_for(nlp, toy_docs), 3, 0.01)
    pipe = nlp.get_pipe("softprompt_ie")
    pipe.cfg["threshold"] = 1e-6  # every candidate the new type's query scores is a hit
    before = predictions(nlp, NEW_TEXTS)
    prompts = pipe.network.prompts
    rows = None if prompts is None else (prompts.vectors if prompts.vectors is not None else prompts.deep).shape[0]
    assert pipe.add_label("Frequency", description="How often is the drug taken?") == 1
    if prompts is not None:  # a prompt row per type, or the one shared prompt whatever the types
        table = prompts.vectors if prompts.vectors is not None else prompts.deep
        assert table.shape[0] == (1 if pipe.model.builder.strategy.shared_prompt else rows + 1)
    assert pipe.add_label("Frequency", description="How often is the drug taken?") == 0
    assert pipe.labels[-1] == "Frequency" and pipe.cfg["query_texts"]["Frequency"] == "How often is the drug taken?"
    after = predictions(nlp, NEW_TEXTS)
    found = [label for concepts, _, _ in after for *_, label in concepts]
    assert "Frequency" in found
    if not packed:  # one query per type: the old types' queries and answers are untouched
        old = [([c for c in concepts if c[2] != "Frequency"], relations) for concepts, _, relations in after]
        assert old == [(concepts, relations) for concepts, _, relations in before]
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.get_pipe("softprompt_ie").labels == pipe.labels
    assert predictions(loaded, NEW_TEXTS) == after


def trained_relation_scores(nlp, texts):
    """Each predicted relation of a type other than 'Causes', with its score."""
    return [sorted((r.key(), round(r.score, 5)) for r in doc._.relations if r.label != "Causes")
            for doc in nlp.pipe(texts)]


@pytest.mark.parametrize("strategy,packed", [("hard", True), ("soft", False), ("deep", False), ("deep", True)])
def test_new_relation_type_from_description_is_predicted_and_round_trips(tiny_bert, toy_docs, tmp_path, strategy,
                                                                         packed):
    """A relation type added by description is asked by every trigger of its head type, without
    retraining; 'Causes' sorts before the trained 'Drug-AE' and 'Drug-Dose', so their prompt rows
    move down one, and unpacked their answers must not change."""
    nlp = make_pipeline(tiny_bert, strategy, False, packed=packed)
    train(nlp, examples_for(nlp, toy_docs), 3, 0.01)
    pipe = nlp.get_pipe("softprompt_ie")
    pipe.cfg["threshold"] = pipe.cfg["relation_threshold"] = 1e-6  # every candidate is a hit
    trained = trained_relation_scores(nlp, NEW_TEXTS)
    assert trained
    prompts = pipe.network.prompts
    table = (lambda: prompts.vectors if prompts.vectors is not None else prompts.deep) if prompts else None
    rows = table().shape[0] if table else None
    assert pipe.add_relation_type("Causes", {"Drug": ["ADE"]}, description="What did the drug cause?") == 1
    assert pipe.relation_labels == ("Causes", "Drug-AE", "Drug-Dose")
    assert pipe.schema.tail_types("Drug", "Causes") == ["ADE"] and pipe.cfg["query_texts"]["Causes"]
    if table:
        assert table().shape[0] == rows + 1
    after = predictions(nlp, NEW_TEXTS)
    added = [key for _, _, relations in after for key in relations if "Causes" in key]
    assert added
    if not packed:  # the trained relations are asked with their own (moved) rows: same scores
        assert trained_relation_scores(nlp, NEW_TEXTS) == trained
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.get_pipe("softprompt_ie").relation_labels == pipe.relation_labels
    assert predictions(loaded, NEW_TEXTS) == after


def test_new_relation_type_needs_known_types_and_a_free_name(tiny_bert, toy_docs):
    nlp = make_pipeline(tiny_bert, "hard", False, packed=True)
    with pytest.raises(ValueError, match="not initialized"):
        nlp.get_pipe("softprompt_ie").add_relation_type("Drug-Frequency", {"Drug": ["Frequency"]})
    train(nlp, examples_for(nlp, toy_docs), 1, 0.01)
    pipe = nlp.get_pipe("softprompt_ie")
    with pytest.raises(ValueError, match=r"does not have: \['Frequency'\]"):
        pipe.add_relation_type("Drug-Frequency", {"Drug": ["Frequency"]})
    with pytest.raises(ValueError, match="needs heads"):
        pipe.add_relation_type("Drug-Frequency", {})
    with pytest.raises(ValueError, match="needs heads.*a list"):
        pipe.add_relation_type("Drug-AE", {"Drug": "ADE"})
    with pytest.raises(ValueError, match="'Drug' is already a concept label"):
        pipe.add_relation_type("Drug", {"Drug": ["ADE"]})
    with pytest.raises(ValueError, match="'Drug-AE' is already a relation label"):
        pipe.add_label("Drug-AE")
    assert pipe.relation_labels == ("Drug-AE", "Drug-Dose") and "Drug-AE" not in pipe.labels
    for blank, message in (("", "not ''"), ("  ", "not '  '"), (5, "not 5")):
        with pytest.raises(ValueError, match=f"label is a name, {message}"):
            pipe.add_label(blank)
    with pytest.raises(ValueError, match="description of 'Sign' is the words"):
        pipe.add_label("Sign", description="  ")
    assert pipe.add_relation_type("Drug-AE", {"Dose": ["ADE"]}) == 0  # a known type reaches from another head
    assert pipe.schema.tail_types("Dose", "Drug-AE") == ["ADE"]


def test_a_known_name_of_two_kinds_is_known_to_both(tiny_bert, blank_nlp):
    """A name that is both a concept type and a relation type in the training data (as SDoH's
    event arguments, e.g. 'Dose') is known to add_label and add_relation_type alike: 0, not refused."""
    nlp = make_pipeline(tiny_bert, "hard", False, packed=True)
    doc = annotate(blank_nlp, "Aspirin 5 mg daily.", [("Aspirin", "Drug"), ("5 mg", "Dose")], [("Aspirin", "Dose", "5 mg")])
    train(nlp, examples_for(nlp, [doc]), 1, 0.01)
    pipe = nlp.get_pipe("softprompt_ie")
    assert "Dose" in pipe.labels and "Dose" in pipe.relation_labels
    assert pipe.add_label("Dose", corpus="new") == 0 and pipe.schema.corpora == {"new": ["Dose"]}
    assert pipe.add_relation_type("Dose", {"Drug": ["Dose"]}) == 0
    with pytest.raises(ValueError, match="'Drug' is already a concept label"):
        pipe.add_relation_type("Drug", {"Drug": ["Dose"]})


def test_new_type_from_config_at_load(tiny_bert, toy_docs, tmp_path):
    nlp = make_pipeline(tiny_bert, "soft", True, packed=True)
    train(nlp, examples_for(nlp, toy_docs), 2, 0.01)
    nlp.to_disk(tmp_path / "pipeline")
    wanted = {"Frequency": "How often is the drug taken?"}
    loaded = spacy.load(tmp_path / "pipeline", config={"components": {"softprompt_ie": {"new_labels": wanted}}})
    pipe = loaded.get_pipe("softprompt_ie")
    assert pipe.labels[-1] == "Frequency" and pipe.cfg["new_labels"] == wanted
    loaded.to_disk(tmp_path / "again")
    assert spacy.load(tmp_path / "again").get_pipe("softprompt_ie").labels == pipe.labels


def test_new_type_is_impossible_with_typed_output_columns(tiny_bert, toy_docs):
    nlp = make_pipeline(tiny_bert, "none", False)
    pipe = nlp.get_pipe("softprompt_ie")
    with pytest.raises(ValueError, match="not initialized"):
        pipe.add_label("Frequency", description="How often?")
    train(nlp, examples_for(nlp, toy_docs), 1, 0.01)
    with pytest.raises(ValueError, match="strategy 'none'.*'hard', 'soft', 'deep', 'hard_soft' or 'hard_deep'"):
        pipe.add_label("Frequency", description="How often?")
    assert "Frequency" not in pipe.labels


@pytest.mark.parametrize("strategy,packed", [("hard", True), ("soft", False), ("deep", True)])
def test_new_type_learns_from_k_examples_of_its_corpus(tiny_bert, toy_docs, blank_nlp, strategy, packed):
    """The few-shot recipe: add the type with the corpus of its K examples, update on them with
    the optimizer in use (soft, deep: whose state for the grown prompt table no longer fits it);
    the K Docs are supervised on that corpus's types only."""
    nlp = make_pipeline(tiny_bert, strategy, False, packed=packed)
    train(nlp, examples_for(nlp, toy_docs), 2, 0.01)
    pipe = nlp.get_pipe("softprompt_ie")
    pipe.add_label("Frequency", description="How often is the drug taken?", corpus="freq")
    assert pipe.schema.corpora == {"freq": ["Frequency"]}
    shots = [annotate(blank_nlp, "Aspirin was taken twice daily.", [("twice daily", "Frequency")]),
             annotate(blank_nlp, "Take one tablet every morning.", [("every morning", "Frequency")])]
    for doc in shots:
        doc._.corpus = "freq"
    examples = examples_for(nlp, shots)
    queries, _ = training_queries(pipe.model.builder, examples, "softprompt")
    assert all(column_labels(pipe.model.builder, q) >= {"Frequency"} for q in queries)
    optimizer = nlp.resume_training()
    optimizer.learn_rate = 0.01
    losses = [nlp.update(examples, sgd=optimizer)["softprompt_ie"] for _ in range(15)]
    assert losses[-1] < 0.5 * losses[0]


def test_convert_tags_the_corpus(tmp_path):
    folder = tmp_path / "brat"
    folder.mkdir()
    (folder / "a.txt").write_text("He uses cocaine.", encoding="utf-8")
    (folder / "a.ann").write_text("T1\tDrug 8 15\tcocaine\n", encoding="utf-8")
    out = tmp_path / "a.spacy"
    assert main(["convert", "brat", str(folder), str(out), "--corpus", "sdoh", "--label-map", "Drug=sdoh/Drug"]) == 0
    (doc,) = DocBin(store_user_data=True).from_disk(out).get_docs(spacy.blank("en").vocab)
    assert doc._.corpus == "sdoh" and [s.label_ for s in doc.spans["softprompt"]] == ["sdoh/Drug"]


def test_tagged_reference_is_scored_on_its_corpus_types_only(blank_nlp):
    """A prediction of another corpus's type on a tagged Doc is not a false positive when the
    corpus's types are given (the component passes its schema's corpora to the scorer); without
    them it is, and an untagged reference is scored on every type."""
    from spacy_softprompt.scoring import score_concepts_and_relations

    gold = annotate(blank_nlp, "He uses cocaine and drinks beer daily.", [("cocaine", "sdoh/Drug")])
    gold._.corpus = "sdoh"
    predicted = annotate(blank_nlp, gold.text, [("cocaine", "sdoh/Drug"), ("beer", "Drug")])
    corpora = {"sdoh": ["sdoh/Drug", "Alcohol"], "ade": ["Drug", "ADE"]}
    plain = score_concepts_and_relations([(predicted, gold)])
    masked = score_concepts_and_relations([(predicted, gold)], corpus_types=corpora)
    assert plain["concepts_strict_p"] == pytest.approx(0.5)
    assert masked["concepts_strict_p"] == pytest.approx(1.0)
    gold._.corpus = None
    untagged = score_concepts_and_relations([(predicted, gold)], corpus_types=corpora)
    assert untagged["concepts_strict_p"] == pytest.approx(0.5)


def test_component_scores_tagged_references_on_their_corpus(tiny_bert):
    """``pipe.score`` (what spacy train's dev evaluation calls) passes the corpora: an SDoH
    prediction on an ADE Doc does not count against the ADE figures."""
    from spacy.training import Example

    nlp, examples = multi_pipeline(tiny_bert, "soft")
    nlp.initialize(lambda: examples)
    pipe = nlp.get_pipe("softprompt_ie")
    reference = next(eg.reference for eg in examples if eg.reference._.corpus == "ade")
    predicted = nlp.make_doc(reference.text)
    gold = list(reference.spans["softprompt"])
    predicted.spans["softprompt"] = [predicted.char_span(s.start_char, s.end_char, s.label_) for s in gold] + [
        predicted.char_span(gold[0].start_char, gold[0].end_char, "Alcohol")]
    scores = pipe.score([Example(predicted, reference)])
    assert scores["concepts_strict_p"] == pytest.approx(1.0)
    reference._.corpus = None
    assert pipe.score([Example(predicted, reference)])["concepts_strict_p"] < 1.0


def test_qualified_label_with_colon_is_refused_at_conversion(tmp_path, capsys):
    """``sdoh:Drug`` could not be a key of query_texts in a config (configparser splits at ':'):
    convert says so and names the '/' form, instead of a training run failing later."""
    folder = tmp_path / "brat"
    folder.mkdir()
    (folder / "a.txt").write_text("He uses cocaine.", encoding="utf-8")
    (folder / "a.ann").write_text("T1\tDrug 8 15\tcocaine\n", encoding="utf-8")
    assert main(["convert", "brat", str(folder), str(tmp_path / "out.spacy"), "--label-map", "Drug=sdoh:Drug"]) == 2
    assert "Drug=sdoh/Drug" in capsys.readouterr().err


def test_evaluate_corpus_must_be_known(tiny_bert, tmp_path, capsys):
    """``evaluate --corpus`` asks only that corpus's types; a name the pipeline does not know would
    ask every type, so it is an error naming the known ones."""
    nlp, examples = multi_pipeline(tiny_bert, "soft")
    nlp.initialize(lambda: examples)
    nlp.to_disk(tmp_path / "pipeline")
    DocBin(store_user_data=True, docs=[eg.reference for eg in examples]).to_disk(tmp_path / "gold.spacy")
    argv = ["evaluate", str(tmp_path / "pipeline"), str(tmp_path / "gold.spacy"), "--corpus"]
    assert main(argv + ["nope"]) == 2
    assert "knows the corpora ade, sdoh" in capsys.readouterr().err
    assert main(argv + ["sdoh"]) == 0


def test_evaluate_scores_each_gold_doc_on_its_corpus_types(tiny_bert, tmp_path, monkeypatch):
    """Without --corpus every type is asked; evaluate counted another corpus's types on a tagged gold Doc as false
    positives, where training's own score (and spacy evaluate) leave them out."""
    from spacy_softprompt import scoring

    nlp, examples = multi_pipeline(tiny_bert, "soft")
    nlp.initialize(lambda: examples)
    nlp.to_disk(tmp_path / "pipeline")
    DocBin(store_user_data=True, docs=[eg.reference for eg in examples]).to_disk(tmp_path / "gold.spacy")
    seen, score = [], scoring.score_concepts_and_relations

    def spy(pairs, **kwargs):
        seen.append(kwargs.get("corpus_types"))
        return score(pairs, **kwargs)

    monkeypatch.setattr(scoring, "score_concepts_and_relations", spy)  # evaluate imports it when it runs
    assert main(["evaluate", str(tmp_path / "pipeline"), str(tmp_path / "gold.spacy")]) == 0
    schema = nlp.get_pipe("softprompt_ie").schema
    assert seen == [{c: set(types) for c, types in schema.corpora.items()}] and set(schema.corpora) == {"ade", "sdoh"}


def pooled_question(batch, b, column):
    """The subword ids a packed query's type column is pooled from (its part)."""
    return batch.input_ids[b][batch.type_pool[b, column] > 0].tolist()


def check_answers_follow_parts(builder, batch, examples):
    """Every concept column is pooled from its own type's question, and every gold cell sits in
    the column of its span's type: the part a column reads and the type it answers agree."""
    questions = dict(zip(builder.labels.concepts, builder.strategy.questions))
    for b, q in enumerate(batch.queries):
        if q.is_relation:
            continue
        for column in range(q.output, q.output + q.n_outputs):
            assert pooled_question(batch, b, column) == questions[builder.answer(q, column)[0]]
        spans = {(s.start, s.end, s.label_) for s in examples[q.doc_index].reference.spans["softprompt"]}
        for start, end, column in q.gold:
            assert (start, end, builder.answer(q, column)[0]) in spans
            assert batch.targets[b, start - q.window[0], end - start - 1, column] == 1.0


@pytest.mark.parametrize("packed_types", ["all", "corpus"])
def test_corpus_parts_ask_a_tagged_doc_with_its_own_types_alone(tiny_bert, packed_types):
    """packed_types = "corpus": a packed concept query of a tagged Doc holds its corpus's types'
    questions alone, in training and prediction (untagged: every type), each column still
    answering the type whose question it reads; "all" (before) holds every type's question."""
    from spacy.util import fix_random_seed

    nlp, examples = multi_pipeline(tiny_bert, "hard", packed=True, packed_types=packed_types)
    nlp.initialize(lambda: examples)
    pipe = nlp.get_pipe("softprompt_ie")
    builder = pipe.model.builder
    fix_random_seed(0)
    queries, pieces = training_queries(builder, examples, "softprompt")
    answered = 0
    for batch in pipe._batches(queries, pieces, with_targets=True):
        check_answers_follow_parts(builder, batch, examples)
        for q in batch.queries:
            own = ADE_LABELS if examples[q.doc_index].reference._.corpus == "ade" else SDOH_LABELS
            if q.is_relation:
                continue
            in_part = {builder.labels.concepts[row] for row in q.rows}
            assert in_part == (own & set(builder.labels.concepts) if packed_types == "corpus"
                               else set(builder.labels.concepts))
        answered += batch.targets[batch.span_mask].sum()
    gold = [len(eg.reference.spans["softprompt"]) + len(eg.reference._.relations) for eg in examples]
    assert answered == sum(gold)
    doc = nlp.make_doc("He uses cocaine and drinks beer daily.")
    doc._.corpus = "sdoh"
    asked = builder.schema.asked("sdoh")
    (query,) = builder.concept_queries(0, tokenize_doc(doc, builder.tokenizer), asked)
    assert len(query.rows) == (2 if packed_types == "corpus" else len(builder.labels.concepts))
    assert column_labels(builder, query) >= SDOH_LABELS


def test_shuffled_parts_move_their_answers_with_them(tiny_bert):
    """shuffle_types: training queries ask their types in orders drawn from spaCy's seed (the
    same seed, the same orders), and each gold answer follows its type's part; prediction asks in
    the fixed order. Without the shuffle every query has one order."""
    from spacy.util import fix_random_seed

    nlp, examples = multi_pipeline(tiny_bert, "hard", packed=True, shuffle_types=True)
    nlp.initialize(lambda: examples)
    pipe = nlp.get_pipe("softprompt_ie")
    builder = pipe.model.builder

    def orders():
        fix_random_seed(0)
        queries, pieces = training_queries(builder, examples * 4, "softprompt")
        for batch in pipe._batches(queries, pieces, with_targets=True):
            check_answers_follow_parts(builder, batch, examples * 4)
            for b, q in enumerate(batch.queries):  # the asked columns moved with their parts
                own = ADE_LABELS if (examples * 4)[q.doc_index].reference._.corpus == "ade" else SDOH_LABELS
                for column in range(q.output, q.output + q.n_outputs):
                    assert batch.span_mask[b, ..., column].any() == (builder.answer(q, column)[0] in own)
        return [q.rows for q in queries if not q.is_relation]

    first = orders()
    assert first == orders() and len(set(first)) > 1
    assert all(sorted(rows) == list(range(len(builder.labels.concepts))) for rows in first)
    doc = nlp.make_doc(TEXTS[0][0])
    (query,) = builder.concept_queries(0, tokenize_doc(doc, builder.tokenizer))
    assert query.rows == tuple(range(len(builder.labels.concepts)))


@pytest.mark.parametrize("packed_types,shuffle,scoring", [("corpus", True, "dot"), ("all", True, "dot"),
                                                           ("corpus", True, "cosine")])
def test_corpus_parts_and_shuffled_parts_train_and_round_trip(tiny_bert, tmp_path, packed_types, shuffle, scoring):
    """Trained with the parts a Doc's corpus asks (shuffled; spans matched by dot product or
    cosine), the component fits its toy Docs and predicts the same after save and load."""
    nlp, examples = multi_pipeline(tiny_bert, "hard", packed=True, packed_types=packed_types,
                                   shuffle_types=shuffle, type_scoring=scoring)
    _, losses = train(nlp, examples, 30, 1e-2)
    assert losses[-1] < losses[0] / 4
    nlp.to_disk(tmp_path / "p")
    back = spacy.load(tmp_path / "p")
    assert back.get_pipe("softprompt_ie").model.settings["packed_types"] == packed_types
    scale = nlp.get_pipe("softprompt_ie").network.head.log_scale
    assert (scale is None) == (scoring == "dot")
    if scale is not None:  # learned, and saved
        assert float(scale) != pytest.approx(2.302585) and float(back.get_pipe("softprompt_ie").network.head.log_scale) == float(scale)
    for eg in examples:
        doc, again = nlp.make_doc(eg.reference.text), back.make_doc(eg.reference.text)
        doc._.corpus = again._.corpus = eg.reference._.corpus
        assert predictions(nlp, [doc]) == predictions(back, [again])


@pytest.mark.parametrize("model,message", [({"packed": True, "packed_types": "mine"}, "packed_types must be"),
                                           ({"packed": True, "type_scoring": "l2"}, "type_scoring must be"),
                                           ({"type_scoring": "cosine"}, "set packed = true"),
                                           ({"packed_types": "corpus"}, "set packed = true"),
                                           ({"shuffle_types": True}, "set packed = true")])
def test_part_settings_need_a_packed_query(tiny_bert, model, message):
    with pytest.raises(ValueError, match=message):
        make_pipeline(tiny_bert, "hard", False, **model)


def test_cosine_type_scoring_hears_every_type_at_one_scale():
    """type_scoring = "cosine": a type's scores do not grow with the length of its vector (a new
    description's is shorter than a trained type's), and equal s cos + b; a dot product's do."""
    from spacy_softprompt.nn.span_head import TypeMatchingSpanHead

    torch.manual_seed(0)
    hidden = torch.randn(2, 9, 16)
    starts, ends = torch.arange(9).repeat(2, 1), torch.arange(9).repeat(2, 1)
    pool = torch.zeros(2, 3, 9)
    pool[:, 0, 0:2], pool[:, 1, 2:4], pool[:, 2, 4] = 0.5, 0.5, 1.0
    for cosine in (False, True):
        head = TypeMatchingSpanHead(16, 8, 3, 0.0, cosine=cosine).eval()
        before = head(hidden, starts, ends, pool)
        with torch.no_grad():
            head.type_proj.weight.mul_(3.0)
            head.type_proj.bias.mul_(3.0)
        after = head(hidden, starts, ends, pool)
        if cosine:
            assert torch.allclose(before, after, atol=1e-5)
            spans = torch.nn.functional.gelu(head.spans(hidden, starts, ends))
            types = head.type_proj(pool @ hidden)
            cos = torch.nn.functional.cosine_similarity(spans[:, :, :, None], types[:, None, None], dim=-1)
            assert torch.allclose(after, 10.0 * cos + head.out[2].bias, atol=1e-5)
        else:
            assert not torch.allclose(before - head.out[2].bias, after - head.out[2].bias, atol=1e-3)


@pytest.mark.parametrize("shuffle", [False, True])
def test_shuffled_parts_leave_the_frozen_cache_to_the_windows(tiny_bert, shuffle):
    """A frozen backbone with late prompts keeps training windows' lower states across steps, and
    its query parts' too, unless shuffle_types makes almost every part new: then parts are not
    kept (the cache would grow by one part per query), windows still are."""
    nlp = make_pipeline(tiny_bert, "hard", True, packed=True, prompt_layer=1, shuffle_types=shuffle)
    train(nlp, examples_for(nlp, corpus_docs(nlp)), 3, 1e-3)
    model = nlp.get_pipe("softprompt_ie").model
    kept = model.attrs["frozen_states"]
    parts = [key for key in kept if isinstance(key, tuple) and key[:1] == ("query",)]
    assert model.caches_frozen_states and len(kept) > len(parts)
    assert bool(parts) == (not shuffle)
