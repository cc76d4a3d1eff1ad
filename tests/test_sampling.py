"""Few-shot sampling: the K-per-label guarantee, reproducibility, shortfalls, and the CLI verb."""
from __future__ import annotations

import argparse
import logging
import random
from collections import Counter
from pathlib import Path
from typing import List

import pytest
import spacy
from spacy.tokens import Doc, DocBin

import spacy_softprompt  # noqa: F401  (registers doc._.relations, doc._.doc_id)
from spacy_softprompt import Relation, set_concepts, set_relations
from spacy_softprompt.cli import CLIError
from spacy_softprompt.cli import sample as sample_verb
from spacy_softprompt.corpora.ade import read_ade
from spacy_softprompt.sampling import label_counts, sample_few_shot

from conftest import SHARED_DATA, require_shared  # noqa: E402

ADE = SHARED_DATA / "ade-corpus-v2"


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("en")


@pytest.fixture(scope="module")
def train_docs(nlp) -> List[Doc]:
    docs, _ = read_ade(require_shared(ADE), nlp, split="train")
    return docs


def synthetic(nlp, use_ents: bool = False) -> List[Doc]:
    """60 docs: label A is common, B appears in every 4th doc, C only 3 times in all."""
    rng = random.Random(1)
    docs = []
    for i in range(60):
        labels = ["A"] * rng.randint(0, 3) + ["B"] * (i % 4 == 0) + ["C"] * (i in (5, 17, 33))
        doc = nlp.make_doc(" ".join(f"w{j}" for j in range(len(labels) + 1)))
        spans = [doc.char_span(*_token_chars(doc, j), label=label) for j, label in enumerate(labels)]
        if use_ents:
            doc.ents = spans
        else:
            set_concepts(doc, spans)
        doc._.doc_id = f"syn-{i}"
        docs.append(doc)
    return docs


def _token_chars(doc: Doc, i: int) -> tuple:
    return doc[i].idx, doc[i].idx + len(doc[i])


def total(docs: List[Doc]) -> Counter:
    return sum((label_counts(d) for d in docs), Counter())


@pytest.mark.parametrize("shots", [5, 10])
def test_every_label_reaches_k_on_ade_train(train_docs, shots):
    chosen, report = sample_few_shot(train_docs, shots, seed=13)
    counts = total(chosen)
    assert set(counts) == {"Drug", "Adverse_Effect", "Dosage"}
    assert all(n >= shots for n in counts.values())
    assert report.selected == dict(counts) and report.complete and report.documents == len(chosen)
    assert len(chosen) <= 2 * shots  # few docs: far fewer than one per example


def test_no_chosen_doc_is_redundant(train_docs):
    chosen, _ = sample_few_shot(train_docs, 10, seed=3)
    counts = total(chosen)
    for doc in chosen:
        assert any(counts[label] - n < 10 for label, n in label_counts(doc).items())


def test_same_seed_same_docs_other_seeds_differ(train_docs):
    def ids(seed: int) -> List[str]:
        return [d._.doc_id for d in sample_few_shot(train_docs, 5, seed)[0]]

    assert ids(7) == ids(7)
    assert len({tuple(ids(seed)) for seed in range(5)}) >= 4


def test_shortfall_reported_and_logged(nlp, caplog):
    docs = synthetic(nlp)
    with caplog.at_level(logging.WARNING, logger="spacy_softprompt.sampling"):
        chosen, report = sample_few_shot(docs, 5, seed=0)
    counts = total(chosen)
    assert counts["A"] >= 5 and counts["B"] >= 5 and counts["C"] == 3
    assert report.shortfall == {"C": 2} and not report.complete
    assert report.available == {"A": total(docs)["A"], "B": 15, "C": 3}
    assert "Fewer than 5 examples exist for C (3)" in caplog.text  # what exists, not what is missing
    assert [d._.doc_id for d in chosen] == sorted((d._.doc_id for d in chosen), key=lambda i: int(i[4:]))


def test_falls_back_to_doc_ents(nlp):
    chosen, report = sample_few_shot(synthetic(nlp, use_ents=True), 2, seed=0)
    assert report.selected["B"] >= 2 and report.selected["C"] == 2 and report.complete


def test_shots_must_be_positive(nlp):
    with pytest.raises(ValueError):
        sample_few_shot(synthetic(nlp), 0, seed=0)


# --- CLI ---------------------------------------------------------------------------------


@pytest.fixture
def corpus_file(nlp, tmp_path) -> Path:
    docs = synthetic(nlp)
    for doc in docs[:10]:
        spans = list(doc.spans["softprompt"])
        if len(spans) >= 2:
            set_relations(doc, [Relation(spans[0], spans[1], "rel")])
    path = tmp_path / "in.spacy"
    DocBin(store_user_data=True, docs=docs).to_disk(path)
    return path


def run_verb(argv: List[str]) -> int:
    parser = argparse.ArgumentParser()
    sample_verb.add_arguments(parser)
    return sample_verb.run(parser.parse_args(argv))


def test_cli_writes_sample_with_user_data(nlp, corpus_file, tmp_path, capsys):
    out = tmp_path / "sub" / "out.spacy"
    assert run_verb([str(corpus_file), str(out), "--shots", "2", "--seed", "4"]) == 0
    printed = capsys.readouterr().out
    assert "shortfall" in printed.splitlines()[1] and all(label in printed for label in "ABC")
    docs = list(DocBin().from_disk(out).get_docs(nlp.vocab))
    originals = {d._.doc_id: d for d in DocBin().from_disk(corpus_file).get_docs(nlp.vocab)}
    expected, _ = sample_few_shot(list(originals.values()), 2, seed=4)
    assert [d._.doc_id for d in docs] == [d._.doc_id for d in expected]
    for doc in docs:
        assert [r.key() for r in doc._.relations] == [r.key() for r in originals[doc._.doc_id]._.relations]


def test_cli_user_errors(corpus_file, tmp_path):
    with pytest.raises(CLIError, match="not found"):
        run_verb([str(tmp_path / "missing.spacy"), str(tmp_path / "o.spacy"), "--shots", "2"])
    with pytest.raises(CLIError, match="at least 1"):
        run_verb([str(corpus_file), str(tmp_path / "o.spacy"), "--shots", "0"])
    before = corpus_file.read_bytes()
    with pytest.raises(CLIError, match="is the input: the sample would replace the corpus"):
        run_verb([str(corpus_file), str(corpus_file), "--shots", "1"])
    assert corpus_file.read_bytes() == before


def test_cli_through_main(corpus_file, tmp_path):
    from spacy_softprompt.cli import main

    assert main(["sample", str(corpus_file), str(tmp_path / "o.spacy"), "--shots", "1"]) == 0
    assert main(["sample", str(corpus_file), str(tmp_path / "o.spacy"), "--shots", "0"]) == 2
