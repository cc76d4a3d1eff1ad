"""Several tasks on one frozen backbone: one copy in memory, lower layers of a window read
once for all of them, each component saved and loaded on its own."""
from __future__ import annotations

import pytest
import spacy
from spacy.training import Example

from conftest import TEXTS, annotate

SDOH_LIKE = [
    ("He smokes a pack a day and drinks beer.", [("smokes", "Tobacco"), ("a pack a day", "Amount"), ("drinks", "Alcohol")]),
    ("She quit smoking in 2010.", [("smoking", "Tobacco"), ("quit", "Status")]),
]
SDOH_RELATIONS = {0: [("smokes", "Amount", "a pack a day")], 1: [("smoking", "Status", "quit")]}


def two_task_pipeline(backbone, toy_docs, blank_nlp):
    nlp = spacy.blank("en")
    model = {"backbone": backbone, "strategy": "soft", "freeze_backbone": True, "prompt_length": 4, "prompt_layer": 3}
    nlp.add_pipe("softprompt_ie", name="ade", config={"model": model, "spans_key": "ade"})
    nlp.add_pipe("softprompt_ie", name="sdoh", config={"model": model, "spans_key": "sdoh", "set_ents": False})
    sdoh_docs = [annotate(blank_nlp, t, m, SDOH_RELATIONS.get(i, ())) for i, (t, m) in enumerate(SDOH_LIKE)]
    for name, docs in (("ade", toy_docs), ("sdoh", sdoh_docs)):
        pipe = nlp.get_pipe(name)
        examples = [Example(nlp.make_doc(d.text), d) for d in docs]
        for eg, gold in zip(examples, docs):  # each task's gold sits under its own key
            eg.reference.spans[name] = list(gold.spans["softprompt"])
        pipe.initialize(lambda examples=examples: examples, nlp=nlp)
        optimizer = nlp.resume_training()
        for _ in range(5):
            pipe.update(examples, sgd=optimizer)
    return nlp


def spans(doc, key):
    return [(s.start_char, s.end_char, s.label_) for s in doc.spans[key]]


def test_two_tasks_share_one_backbone_and_predict_as_alone(default_backbone_path, toy_docs, blank_nlp, tmp_path):
    nlp = two_task_pipeline("default", toy_docs, blank_nlp)
    ade, sdoh = nlp.get_pipe("ade"), nlp.get_pipe("sdoh")
    assert ade.network.backbone is sdoh.network.backbone
    nlp.to_disk(tmp_path / "both")
    texts = [t for t, _ in TEXTS] + [t for t, _ in SDOH_LIKE]
    together = list(nlp.pipe(texts))
    loaded = spacy.load(tmp_path / "both")
    assert loaded.get_pipe("ade").network.backbone is loaded.get_pipe("sdoh").network.backbone
    # Each component alone in its own pipeline (and it saves only its own prompts and head).
    assert sorted(p.name for p in (tmp_path / "both" / "ade" / "model").iterdir()) == ["task.json", "trainable.safetensors"]
    for name in ("ade", "sdoh"):
        alone = spacy.blank("en")
        alone.add_pipe("softprompt_ie", name=name, config={
            "model": {"backbone": "default", "strategy": "soft", "freeze_backbone": True, "prompt_length": 4,
                      "prompt_layer": 3},
            "spans_key": name, "set_ents": name == "ade"})
        alone.get_pipe(name).from_disk(tmp_path / "both" / name, exclude=["vocab"])  # as nlp.from_disk does
        assert [spans(d, name) for d in alone.pipe(texts)] == [spans(d, name) for d in together]


def test_each_task_keeps_its_relations_beside_the_others(default_backbone_path, toy_docs, blank_nlp):
    """The second component's set_annotations once erased the first's relations: each replaces its own only."""
    nlp = two_task_pipeline("default", toy_docs, blank_nlp)
    for name in ("ade", "sdoh"):  # barely trained: low enough that each asks and keeps relations
        nlp.get_pipe(name).cfg.update(threshold=0.05, relation_threshold=1e-4)
    texts = [t for t, _ in TEXTS] + [t for t, _ in SDOH_LIKE]
    alone = {}
    for name in ("ade", "sdoh"):
        with nlp.select_pipes(enable=[name]):
            alone[name] = [{r.key() for r in d._.relations} for d in nlp.pipe(texts)]
    assert any(alone["ade"]) and any(alone["sdoh"])
    assert [{r.key() for r in d._.relations} for d in nlp.pipe(texts)] == [a | b for a, b in zip(*alone.values())]


def test_the_second_task_reads_the_first_tasks_windows(default_backbone_path, toy_docs, blank_nlp):
    nlp = two_task_pipeline("default", toy_docs, blank_nlp)
    layers = nlp.get_pipe("ade").network.stack.layers
    rows = []
    handle = layers[0].register_forward_pre_hook(lambda m, args: rows.append(args[0].shape[0]))
    try:
        docs = list(nlp.pipe([t for t, _ in TEXTS]))
    finally:
        handle.remove()
    n_parts = 0
    for name in ("ade", "sdoh"):
        pipe = nlp.get_pipe(name)
        asked_relations = any(s.label_ in pipe.schema.triggers for d in docs for s in d.spans[name])
        n_parts += len(pipe.labels) + (len(pipe.relation_labels) if asked_relations else 0)
    # Layer 0 reads each text window once (for both tasks) plus each task's query parts once.
    assert sum(rows) == len(docs) + n_parts


@pytest.mark.slow
def test_two_tasks_verb_measures_both_pipelines(tiny_bert, toy_docs, blank_nlp, tmp_path):
    """The measurement's shape only (its figures live in docs/two_tasks.md)."""
    import json

    from spacy.tokens import DocBin

    from spacy_softprompt.cli import main

    sdoh_docs = [annotate(blank_nlp, t, m, SDOH_RELATIONS.get(i, ())) for i, (t, m) in enumerate(SDOH_LIKE)]
    DocBin(store_user_data=True, docs=toy_docs).to_disk(tmp_path / "ade.spacy")
    DocBin(store_user_data=True, docs=sdoh_docs).to_disk(tmp_path / "sdoh.spacy")
    report = tmp_path / "two_tasks.md"
    assert main(["two-tasks", "--first", str(tmp_path / "ade.spacy"), "--second", str(tmp_path / "sdoh.spacy"),
                 "--texts", str(tmp_path / "ade.spacy"), "--backbone", tiny_bert, "--prompt-layer", "1",
                 "--repeats", "1", "--output", str(report)]) == 0
    data = json.loads(report.with_suffix(".json").read_text())
    assert [r["pipeline"] for r in data["rows"]][:3] == ["one task", "second task alone", "two tasks, one backbone"]
    assert data["rows"][3]["pipeline"].startswith("two tasks, two pipelines")
    first, second, _, separate = data["rows"]
    assert separate["peak_rss_mb"] == pytest.approx(first["peak_rss_mb"] + second["peak_rss_mb"])
    assert 1 / separate["words_per_second"] == pytest.approx(1 / first["words_per_second"] + 1 / second["words_per_second"])
    assert data["memory_ratio"] > 0 and data["speed_ratio"] > 0 and data["speed_ratio_separate"] > 0


def test_shared_states_are_bounded_by_their_bytes():
    """A count of windows bounded nothing: a window of a wide backbone is megabytes. Least recently used go first."""
    import torch

    from spacy_softprompt.backbone import SharedStates

    shared = SharedStates(capacity_bytes=3 * 4 * 100)  # three windows of 100 float32 values
    layer = shared.at_layer(1)
    for key in "abcd":
        layer[key] = torch.zeros(10, 10)
        _ = layer["b"] if "b" in layer else None  # b is read, so kept
    assert len(shared) == 3 and "a" not in layer and "b" in layer and shared.kept_bytes == 1200
    layer["e"] = torch.zeros(20, 10)  # two windows' worth: c and d go
    assert sorted(k for _, k in shared._states) == ["b", "e"] and shared.kept_bytes == 1200
    shared.clear()
    assert len(shared) == 0 and shared.kept_bytes == 0
