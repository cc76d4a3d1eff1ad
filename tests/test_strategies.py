"""Strategies as objects: the layout each one writes into a batch, read back as text,
and the answers each one reads from its outputs."""
from __future__ import annotations

import re

import pytest
from transformers import AutoTokenizer

from spacy_softprompt.collate import Collator
from spacy_softprompt.pieces import tokenize_doc
from spacy_softprompt.queries import QueryBuilder
from spacy_softprompt.schema import TaskSchema
from spacy_softprompt.strategies import STRATEGIES

from conftest import ROOT

SCHEMA = TaskSchema(["ADE", "Drug"], {"Drug": {"Drug-AE": ["ADE"]}})
TEXT = "Aspirin caused severe nausea."


def collated(tokenizer, blank_nlp, strategy, layer=0):
    builder = QueryBuilder(tokenizer, SCHEMA, strategy=strategy, prompt_length=3, max_length=64,
                           window_overlap=8, query_texts={"Drug": "Which drugs?"}, prompt_layer=layer)
    doc = blank_nlp.make_doc(TEXT)
    pieces = [tokenize_doc(doc, tokenizer)]
    trigger = doc.char_span(0, 7, label="Drug")
    queries = builder.concept_queries(0, pieces[0]) + builder.relation_queries(0, pieces[0], [trigger])
    return builder, Collator(builder, 4).collate(queries, pieces, with_targets=False)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_input_layout_reads_cls_query_sep_window_sep(default_backbone_path, blank_nlp, strategy):
    tokenizer = AutoTokenizer.from_pretrained(default_backbone_path)
    builder, batch = collated(tokenizer, blank_nlp, strategy)
    rows = [tokenizer.decode(ids[mask.astype(bool)]) for ids, mask in zip(batch.input_ids, batch.attention_mask)]
    window = "aspirin caused severe nausea."
    slots = " ".join(["[PAD]"] * 3)
    expected = {
        "none": [f"[CLS] [SEP] {window} [SEP]"] * 0 + [f"[CLS] {window} [SEP]", f"[CLS] aspirin [SEP] {window} [SEP]"],
        "hard": [f"[CLS] find ade mentions. [SEP] {window} [SEP]", f"[CLS] which drugs? [SEP] {window} [SEP]",
                 f"[CLS] find the drug ae of aspirin [SEP] {window} [SEP]"],
        "soft": [f"[CLS] {slots} [SEP] {window} [SEP]"] * 2 + [f"[CLS] {slots} aspirin [SEP] {window} [SEP]"],
    }
    expected["deep"] = expected["soft"]
    # the shared prompt's slots, then the type's question
    expected["hard_soft"] = expected["hard_deep"] = [row.replace("[CLS]", f"[CLS] {slots}", 1) for row in expected["hard"]]
    assert rows == expected[strategy]
    # Each window token points at its own subword; the trigger is marked in the window only.
    tokens = tokenizer.convert_ids_to_tokens(batch.input_ids[0])
    assert [tokens[i] for i in batch.token_starts[0][:4]] == ["as", "caused", "severe", "nausea"]
    marked = [tokenizer.convert_ids_to_tokens(int(batch.input_ids[-1][i])) for i in range(batch.marker.shape[1]) if batch.marker[-1][i]]
    assert marked == ["as", "##pi", "##rin"]
    assert batch.span_mask.shape[-1] == builder.strategy.n_outputs == (3 if strategy == "none" else 1)
    # every query writes the one shared prompt row, or its own type's row
    assert batch.prompt_ids.tolist() == ([[0]] * 3 if builder.strategy.shared_prompt else
                                         [[q.rows[0]] for q in batch.queries] if builder.strategy.learned else
                                         batch.prompt_ids.tolist())


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_late_layout_gathers_cls_query_window(default_backbone_path, blank_nlp, strategy):
    tokenizer = AutoTokenizer.from_pretrained(default_backbone_path)
    builder, batch = collated(tokenizer, blank_nlp, strategy, layer=2)
    shared = batch.shared
    windows = [tokenizer.decode(r[m.astype(bool)]) for r, m in zip(shared.window_ids, shared.window_mask)]
    assert windows == ["[CLS] aspirin caused severe nausea. [SEP]"]
    # Deep late prompts are written at layer k: no query part goes through the lower layers.
    reads_part = builder.strategy.lower_layers_read_query_part(2)
    assert len(shared.query_ids) == (0 if not reads_part else len({q.rows for q in batch.queries}))
    # the lower pass reads a query part's words and the slots input prompts fill, never empty slots
    parts = [tokenizer.decode(r[m.astype(bool)]) for r, m in zip(shared.query_ids, shared.query_mask)]
    assert all(("[PAD]" in part) == builder.strategy.has_input_prompts(2) for part in parts)
    n_window = shared.window_ids.shape[1]
    for b, query in enumerate(batch.queries):
        sources = shared.gather[b][batch.attention_mask[b].astype(bool)]
        from_window = [int(s - 1) % n_window for s in sources if 0 < s <= shared.window_ids.size]
        assert from_window[0] == 0 and from_window[-1] == int(shared.window_mask[0].sum()) - 1  # [CLS] ... [SEP]


def test_answers_map_to_columns_and_back(default_backbone_path):
    tokenizer = AutoTokenizer.from_pretrained(default_backbone_path)
    for name in STRATEGIES:
        builder = QueryBuilder(tokenizer, SCHEMA, strategy=name, prompt_length=3, max_length=64, window_overlap=8)
        strategy = builder.strategy
        for rows, output, n, relation in strategy.concept_jobs():
            for column in range(output, output + n):
                label = strategy.output_label(relation, False, column, rows)
                assert strategy.output_column(relation, False, label, rows) == column
        for rows, output, n, relation in strategy.relation_jobs(["Drug-AE"]):
            label = strategy.output_label(relation, True, output, rows)
            assert label == "Drug-AE" and strategy.output_column(relation, True, label, rows) == output


def test_no_strategy_name_is_compared_outside_the_strategies_module():
    package = ROOT / "spacy_softprompt"
    pattern = re.compile(r"strategy\W{0,3}\s*(==|!=|not in|in)\s*[(\[{'\"]|[(\[{]\s*\"(soft|deep|hard|none)\",\s*\"(soft|deep|hard|none)\"")
    offenders = [
        f"{path.name}:{i}" for path in package.rglob("*.py") if path.name != "strategies.py"
        for i, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)
    ]
    assert not offenders


def test_prompt_rows_are_concepts_then_relations_then_classes():
    """One place says which prompt row asks a label; the per-question jobs and add_type read it."""
    from spacy_softprompt.strategies import Labels, SoftPrompt

    labels = Labels(["ADE", "Drug"], ["Drug-AE", "Drug-Dose"], ["smoker"])
    assert [labels.row("concept", "Drug"), labels.row("relation", "Drug-AE"), labels.row("relation", "Drug-Dose"),
            labels.row("cat", "smoker")] == [1, 2, 3, 4] and labels.n_prompts == 5
    jobs = SoftPrompt(labels, prompt_length=2).relation_jobs(["Drug-Dose"])
    assert jobs == [((3,), 0, 1, "Drug-Dose")]
    with pytest.raises(ValueError):
        labels.row("concept", "Drug-AE")
