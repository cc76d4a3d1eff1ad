"""SpERT JSON reader (corpora/spert.py) and ``convert spert-json``: small inline files, and the
literature's ADE 10-fold files in ../shared/data checked against the counts of their SOURCE.md."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest
import spacy
from spacy.tokens import Doc, DocBin, Span

import spacy_softprompt  # noqa: F401  (registers doc._.relations, doc._.doc_id)
from spacy_softprompt.cli import main
from spacy_softprompt.corpora.ade import NOT_IN_ENTS
from spacy_softprompt.corpora.spert import (
    IN_MALFORMED_DOCUMENT,
    MERGED_ENTITY,
    MERGED_RELATION,
    RELATION_ARGUMENT,
    SELF_RELATION,
    fold_files,
    read_spert,
    split_dev,
)
from spacy_softprompt.corpora.summary import CorpusFormatError
from spacy_softprompt.relations import Relation, set_concepts, set_relations
from spacy_softprompt.scoring import format_table, score_concepts_and_relations

from conftest import SHARED_DATA, require_shared  # noqa: E402

SPLITS = SHARED_DATA / "ade-spert-splits"
AE, DRUG = "Adverse-Effect", "Drug"

# "[[codeine]Drug intoxication]AE" nested, as in 120 ADE sentences.
NESTED = {
    "tokens": ["Fatal", "codeine", "intoxication", "after", "ibuprofen", "."],
    "entities": [
        {"type": AE, "start": 1, "end": 3},
        {"type": DRUG, "start": 1, "end": 2},
        {"type": DRUG, "start": 4, "end": 5},
    ],
    "relations": [{"type": AE, "head": 0, "tail": 1}, {"type": AE, "head": 0, "tail": 2}],
    "orig_id": 7,
}


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("en")


def write(folder: Path, documents: Any, name: str = "data.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(documents), encoding="utf-8")
    return path


def relations(doc: Doc) -> List[tuple]:
    return [(r.label, r.head.text, r.head.label_, r.tail.text, r.tail.label_) for r in doc._.relations]


def test_tokens_are_the_words(nlp, tmp_path):
    docs, _ = read_spert(write(tmp_path, [NESTED, {"tokens": ["No", "drug", "here"]}]), nlp)
    assert [t.text for t in docs[0]] == NESTED["tokens"]
    assert docs[0].text == "Fatal codeine intoxication after ibuprofen ."
    assert [d._.doc_id for d in docs] == ["7", "data-1"]  # orig_id, else <file stem>-<index>
    assert len(docs[1].spans["softprompt"]) == 0 and not docs[1]._.relations  # kept as a negative


def test_overlapping_entities_kept_and_relations_resolved(nlp, tmp_path):
    docs, summary = read_spert(write(tmp_path, [NESTED]), nlp)
    doc = docs[0]
    spans = [(s.text, s.label_) for s in doc.spans["softprompt"]]
    assert spans == [("codeine", DRUG), ("codeine intoxication", AE), ("ibuprofen", DRUG)]
    assert [(e.text, e.label_) for e in doc.ents] == [("codeine intoxication", AE), ("ibuprofen", DRUG)]
    assert relations(doc) == [
        (AE, "codeine intoxication", AE, "codeine", DRUG),
        (AE, "codeine intoxication", AE, "ibuprofen", DRUG),
    ]
    assert summary.entities == {AE: 1, DRUG: 2} and summary.relations == {AE: 2}
    assert summary.adjusted == {NOT_IN_ENTS: 1} and not summary.not_converted
    back = list(DocBin(store_user_data=True, docs=docs).get_docs(nlp.vocab))
    assert relations(back[0]) == relations(doc) and len(back[0].spans["softprompt"]) == 3


def test_label_and_relation_maps_are_separate(nlp, tmp_path):
    path = write(tmp_path, [NESTED])
    docs, summary = read_spert(path, nlp, label_map={AE: "Adverse_Effect"}, relation_map={AE: "Drug-AE"})
    assert relations(docs[0])[0] == ("Drug-AE", "codeine intoxication", "Adverse_Effect", "codeine", DRUG)
    assert summary.entities == {"Adverse_Effect": 1, DRUG: 2} and summary.relations == {"Drug-AE": 2}
    with pytest.raises(ValueError, match=r"label_map names types not in .*data\.json: \['Drug-AE'\]"):
        read_spert(path, nlp, label_map={"Drug-AE": "x"})


def test_duplicates_merged_self_relations_and_extra_keys_counted(nlp, tmp_path):
    doc = {
        "tokens": ["aspirin", "rash"],
        "entities": [{"type": DRUG, "start": 0, "end": 1}, {"type": DRUG, "start": 0, "end": 1, "negated": True},
                     {"type": AE, "start": 1, "end": 2}],
        "relations": [{"type": "r", "head": 2, "tail": 0}, {"type": "r", "head": 2, "tail": 1},
                      {"type": "s", "head": 0, "tail": 1, "certainty": "possible"}],
        "pos": ["NN", "NN"],
    }
    docs, summary = read_spert(write(tmp_path, [doc]), nlp)
    assert len(docs[0].spans["softprompt"]) == 2 and summary.relations == {"r": 1, "s": 1}
    assert summary.adjusted == {MERGED_ENTITY: 1, MERGED_RELATION: 1, SELF_RELATION: 1}
    assert summary.not_converted == {"document: key 'pos' not read": 1, "entity: key 'negated' not read": 1,
                                     "relation: key 'certainty' not read": 1}


BAD_DOCUMENTS: Dict[str, tuple] = {
    "not an object": ("x", r"document is not an object: document 0, a string"),
    "no tokens": ({"entities": []}, r"no tokens: document 0, no 'tokens' key"),
    "bad token": ({"tokens": ["a", ""]}, r"bad token: document 0, token 1 ''"),
    "bad entity": ({"tokens": ["a"], "entities": [{"type": "X", "start": "0", "end": 1}]},
                   r"bad entity: document 0, entity 0 .*expected \{\"type\": NAME"),
    "entity outside": ({"tokens": ["a"], "entities": [{"type": "X", "start": 0, "end": 2}]},
                       r"entity span outside the tokens: document 0, entity 0 .*<= 1 \(end is exclusive\)"),
    "bad relation": ({"tokens": ["a"], "entities": [], "relations": [{"type": "R", "head": 0}]},
                     r"bad relation: document 0, relation 0"),
    "relation index": ({"tokens": ["a"], "entities": [{"type": "X", "start": 0, "end": 1}],
                        "relations": [{"type": "R", "head": 0, "tail": 3}], "orig_id": 12},
                       r"relation argument is not an entity: document 0 \(orig_id 12\), relation 0 .*1 entities"),
    "entities not a list": ({"tokens": ["a"], "entities": {}}, r"entities is not a list: document 0, 'entities' is an object"),
}


@pytest.mark.parametrize("case", sorted(BAD_DOCUMENTS))
def test_malformed_documents_name_file_and_index(nlp, tmp_path, case):
    bad, message = BAD_DOCUMENTS[case]
    path = write(tmp_path, [{"tokens": ["fine"]}, bad])
    with pytest.raises(CorpusFormatError, match=rf"^{path}: " + message.replace("document 0", "document 1")):
        read_spert(path, nlp)


@pytest.mark.parametrize(
    "text, message",
    [
        ('[{"tokens": ["a"]},\n {"tokens": ["b"],}]', r":2: not valid JSON: .* \(line 2 column 19, character 38\)"),
        ('{"tokens": ["a"]}', r": not a list of documents: the top level is an object"),
    ],
)
def test_bad_json_names_line_and_position(nlp, tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CorpusFormatError, match=rf"^{path}{message}"):
        read_spert(path, nlp)


def test_lenient_counts_everything_not_converted(nlp, tmp_path):
    good_entity, bad_entity = {"type": DRUG, "start": 0, "end": 1}, {"type": AE, "start": 5, "end": 6}
    documents = [
        {"tokens": ["aspirin", "rash"], "entities": [good_entity, bad_entity],
         "relations": [{"type": AE, "head": 1, "tail": 0}]},
        {"tokens": [], "entities": [good_entity, good_entity], "relations": [{"type": AE, "head": 0, "tail": 1}]},
    ]
    docs, summary = read_spert(write(tmp_path, documents), nlp, lenient=True)
    assert len(docs) == summary.documents == 1 and summary.entities == {DRUG: 1} and not summary.relations
    assert summary.not_converted == {
        "malformed input: entity span outside the tokens": 1,
        RELATION_ARGUMENT: 1,
        "malformed input: no tokens": 1,
        f"entity: {IN_MALFORMED_DOCUMENT}": 2,
        f"relation: {IN_MALFORMED_DOCUMENT}": 1,
    }
    assert len(summary.problems) == 2 and "document 1" in summary.problems[1]


def test_cli_converts_one_file_and_the_folds(tmp_path, capsys):
    source = tmp_path / "in"
    source.mkdir()
    for fold in (0, 1):
        for part in ("train", "test"):
            write(source, [NESTED] * (2 if part == "train" else 1), f"toy_split_{fold}_{part}.json")
    out = tmp_path / "one.spacy"
    assert main(["convert", "spert-json", str(source / "toy_split_0_test.json"), str(out),
                 "--relation-map", f"{AE}=Drug-AE"]) == 0
    docs = list(DocBin().from_disk(out).get_docs(spacy.blank("en").vocab))
    assert relations(docs[0])[0][0] == "Drug-AE"
    assert main(["convert", "spert-json", str(source), str(tmp_path / "folds"), "--folds"]) == 0
    table = capsys.readouterr().out
    assert "| 1 | train | 2 | 6 | 4 | 0 |" in table
    assert sorted(p.relative_to(tmp_path / "folds").as_posix() for p in (tmp_path / "folds").rglob("*")) == [
        "fold_0", "fold_0/test.spacy", "fold_0/test.summary.md", "fold_0/train.spacy", "fold_0/train.summary.md",
        "fold_1", "fold_1/test.spacy", "fold_1/test.summary.md", "fold_1/train.spacy", "fold_1/train.summary.md",
    ]


def test_cli_errors_are_one_line(tmp_path, capsys):
    path = write(tmp_path, [{"tokens": ["a"], "entities": [{"type": "X", "start": 0, "end": 9}]}])
    assert main(["convert", "spert-json", str(path), str(tmp_path / "o.spacy")]) == 2
    err = capsys.readouterr().err
    assert f"error: {path}: entity span outside the tokens: document 0" in err and "Traceback" not in err
    assert main(["convert", "spert-json", str(path), str(tmp_path / "o.spacy"), "--split", "train"]) == 2
    assert "--split does not apply to spert-json" in capsys.readouterr().err
    assert main(["convert", "ade", str(tmp_path), str(tmp_path / "o.spacy"), "--folds"]) == 2


def spert_macro_f(gold: List[set], predicted: List[set]) -> float:
    """SpERT's evaluator in short: per-type F1 over (document, item) sets, averaged over the
    types in gold or predictions (sklearn ``average="macro"``)."""
    types = {item[-1] for items in gold + predicted for item in items}
    f1s = []
    for t in types:
        g = {(i, x) for i, items in enumerate(gold) for x in items if x[-1] == t}
        p = {(i, x) for i, items in enumerate(predicted) for x in items if x[-1] == t}
        f1s.append(2 * len(g & p) / (len(g) + len(p)))
    return sum(f1s) / len(f1s)


def test_macro_scores_are_spert_s(nlp, tmp_path):
    """The literature's ADE numbers: entity F1 macro over the types (nested entities kept) and
    strict relation F1 (one type: macro = micro), as SpERT's evaluator computes them."""
    other = {"tokens": ["Rash", "on", "aspirin", "and", "heparin"], "orig_id": 8,
             "entities": [{"type": AE, "start": 0, "end": 1}, {"type": DRUG, "start": 2, "end": 3},
                          {"type": DRUG, "start": 4, "end": 5}],
             "relations": [{"type": AE, "head": 0, "tail": 1}, {"type": AE, "head": 0, "tail": 2}]}
    gold, _ = read_spert(write(tmp_path, [NESTED, other]), nlp)
    # Predictions: the nested Drug missed, a Drug typed AE, one relation with that wrong tail type.
    predicted = []
    for doc, ents, rels in (
        (gold[0], [(1, 3, AE), (4, 5, DRUG)], [((1, 3, AE), (4, 5, DRUG))]),
        (gold[1], [(0, 1, AE), (2, 3, DRUG), (4, 5, AE)], [((0, 1, AE), (2, 3, DRUG)), ((0, 1, AE), (4, 5, AE))]),
    ):
        pred = Doc(nlp.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc])
        spans = {e: Span(pred, e[0], e[1], label=e[2]) for e in ents}
        set_concepts(pred, list(spans.values()))
        set_relations(pred, [Relation(spans[h], spans[t], AE) for h, t in rels])
        predicted.append(pred)
    scores = score_concepts_and_relations(zip(predicted, gold))

    def entities(doc: Doc) -> set:
        return {(s.start, s.end, s.label_) for s in doc.spans["softprompt"]}

    def rels(doc: Doc) -> set:
        return {(r.head.start, r.head.end, r.head.label_, r.tail.start, r.tail.end, r.tail.label_, r.label)
                for r in doc._.relations}

    expected = spert_macro_f([entities(d) for d in gold], [entities(d) for d in predicted])
    assert scores["concepts_strict_macro_f"] == pytest.approx(expected)
    per_type = scores["concepts_strict_per_type"]
    assert expected == pytest.approx((per_type[AE]["f"] + per_type[DRUG]["f"]) / 2)
    assert scores["concepts_strict_macro_f"] != pytest.approx(scores["concepts_strict_f"])  # not the micro one
    relation_f = spert_macro_f([rels(d) for d in gold], [rels(d) for d in predicted])
    assert scores["relations_strict_f"] == scores["relations_strict_macro_f"] == pytest.approx(relation_f)
    table = format_table(scores)
    assert "concepts (macro)" in table and f"{100 * expected:.2f}" in table


# --- the literature's ADE folds (../shared/data/ade-spert-splits) --------------------------------

# SOURCE.md's per-fold table: train sentences, test sentences, AE and Drug entities, relations,
# sentences with overlapping entities, relations whose arguments overlap (all of the test file).
SOURCE_FOLDS = {
    0: (3845, 427, 576, 494, 666, 12, 12),
    1: (3845, 427, 616, 510, 724, 15, 15),
    2: (3845, 427, 574, 517, 688, 7, 7),
    3: (3845, 427, 564, 504, 657, 10, 10),
    4: (3845, 427, 561, 493, 648, 13, 13),
    5: (3845, 427, 607, 519, 732, 19, 20),
    6: (3845, 427, 552, 519, 666, 10, 10),
    7: (3845, 427, 577, 508, 704, 13, 13),
    8: (3845, 427, 582, 497, 688, 11, 11),
    9: (3843, 429, 567, 502, 648, 9, 9),
}


def overlap_counts(docs: List[Doc]) -> tuple:
    """Sentences with overlapping entities, relations whose head and tail overlap."""
    sentences = sum(len(d.ents) < len(d.spans["softprompt"]) for d in docs)
    rels = sum(r.head.start < r.tail.end and r.tail.start < r.head.end for d in docs for r in d._.relations)
    return sentences, rels


@pytest.fixture(scope="module")
def folds() -> Dict[int, Dict[str, Path]]:
    return fold_files(require_shared(SPLITS))


@pytest.fixture(scope="module")
def full(nlp) -> tuple:
    return read_spert(require_shared(SPLITS) / "ade_full.json", nlp)


def test_full_corpus_matches_source_md(full):
    docs, summary = full
    assert summary.documents == len({d._.doc_id for d in docs}) == 4272
    assert sum(len(d) for d in docs) == 90714
    assert summary.entities == {AE: 5776, DRUG: 5063} and summary.relations == {AE: 6821}
    assert all((r.head.label_, r.tail.label_) == (AE, DRUG) for d in docs for r in d._.relations)
    # 120 nested pairs in 119 sentences; each pair is a relation; nothing merged or lost.
    assert overlap_counts(docs) == (119, 120)
    assert summary.adjusted == {NOT_IN_ENTS: 120} and not summary.not_converted


def test_folds_match_source_md(nlp, folds, full):
    """Each test file against SOURCE.md's table; each train file is the full corpus minus it."""
    full_docs, full_summary = full
    assert sorted(folds) == list(range(10)) and all(list(p) == ["train", "test"] for p in folds.values())
    for fold, (train, test, ae, drug, rels, overlap_sents, overlap_rels) in SOURCE_FOLDS.items():
        test_docs, summary = read_spert(folds[fold]["test"], nlp)
        assert (summary.documents, summary.entities, summary.relations) == (test, {AE: ae, DRUG: drug}, {AE: rels})
        assert overlap_counts(test_docs) == (overlap_sents, overlap_rels), fold
        train_docs, train_summary = read_spert(folds[fold]["train"], nlp)
        assert train_summary.documents == train and not summary.not_converted | train_summary.not_converted
        assert train_summary.entities + summary.entities == full_summary.entities
        assert train_summary.relations + summary.relations == full_summary.relations
        train_ids, test_ids = {d._.doc_id for d in train_docs}, {d._.doc_id for d in test_docs}
        assert not train_ids & test_ids and train_ids | test_ids == {d._.doc_id for d in full_docs}


# --- a dev set per fold, carved from the fold's train file (convert --dev-fraction) ------------


def sentence(i: int, words: int = 3) -> Dict[str, Any]:
    return {"tokens": [f"w{i}"] + ["x"] * (words - 1), "entities": [{"type": DRUG, "start": 0, "end": 1}],
            "orig_id": i}


def test_split_dev_is_seeded_and_keeps_duplicates_together(nlp, tmp_path):
    documents = [sentence(i) for i in range(40)]
    documents.append({**sentence(3), "orig_id": 40})  # the same words as document 3
    docs, _ = read_spert(write(tmp_path, documents), nlp)
    train, dev, groups = split_dev(docs, 0.1, "0:0")
    assert groups == 1 and len(dev) in (4, 5) and len(train) + len(dev) == 41
    assert [d._.doc_id for d in train + dev if d._.doc_id in ("3", "40")] in (["3", "40"], [])  # together
    assert {d._.doc_id for d in train} | {d._.doc_id for d in dev} == {str(i) for i in range(41)}
    assert [d._.doc_id for d in train] == sorted((d._.doc_id for d in train), key=int)  # input order kept
    again = split_dev(docs, 0.1, "0:0")
    assert [d._.doc_id for d in again[1]] == [d._.doc_id for d in dev]
    assert [d._.doc_id for d in split_dev(docs, 0.1, "0:1")[1]] != [d._.doc_id for d in dev]
    # a sentence that is also in the test file is never drawn for dev
    test_docs = [d for d in docs if d._.doc_id in {"1", "2", "5"}]
    for seed in range(20):
        _, dev, _ = split_dev(docs, 0.5, seed, held_out=test_docs)
        assert not {d._.doc_id for d in dev} & {"1", "2", "5"} and len(dev) in (20, 21)
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_dev(docs, 1.0, 0)
    with pytest.raises(ValueError, match="cannot split 1 documents"):
        split_dev(docs[:1], 0.5, 0)


def test_cli_folds_with_dev_fraction(tmp_path, capsys):
    source = tmp_path / "in"
    source.mkdir()
    for fold in (0, 1):
        write(source, [sentence(i) for i in range(20) if i % 2 != fold], f"toy_split_{fold}_train.json")
        write(source, [sentence(i) for i in range(20) if i % 2 == fold], f"toy_split_{fold}_test.json")
    out = tmp_path / "folds"
    args = ["convert", "spert-json", str(source), str(out), "--folds", "--dev-fraction", "0.2", "--seed", "3"]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "| 0 | train | 8 | 8 | 0 | 0 |" in table and "| 0 | dev | 2 | 2 | 0 | 0 |" in table
    assert sorted(p.name for p in (out / "fold_1").iterdir()) == [
        "dev.spacy", "test.spacy", "test.summary.md", "train.spacy", "train.summary.md"]
    vocab = spacy.blank("en").vocab
    ids = {part: [d._.doc_id for d in DocBin().from_disk(out / "fold_0" / f"{part}.spacy").get_docs(vocab)]
           for part in ("train", "dev", "test")}
    assert sorted(ids["train"] + ids["dev"], key=int) == [str(i) for i in range(1, 20, 2)]
    assert "| dev | 2 | 2 | 0 | dev.spacy |" in (out / "fold_0" / "train.summary.md").read_text()
    first = (out / "fold_0" / "dev.spacy").read_bytes()
    assert main(args) == 0 and (out / "fold_0" / "dev.spacy").read_bytes() == first  # deterministic
    assert main(["convert", "spert-json", str(source / "toy_split_0_train.json"), str(tmp_path / "o.spacy"),
                 "--dev-fraction", "0.1"]) == 2
    assert main(args[:-4] + ["--dev-fraction", "1.5"]) == 2
    write(source, [sentence(0)], "toy_split_0_dev.json")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--dev-fraction applies with --folds only" in err and "folds [0] already have a dev file" in err


def test_ade_dev_split_per_fold(nlp, folds):
    """The real folds: 384 dev sentences from each train file (10%), disjoint from train; the
    sentence that occurs twice (orig_id 2620, 2683) is never split between train and dev, and in
    folds 2 and 4, where its copy is in test, it stays in train."""
    for fold in (0, 2):
        docs, _ = read_spert(folds[fold]["train"], nlp)
        test_docs, _ = read_spert(folds[fold]["test"], nlp)
        train, dev, groups = split_dev(docs, 0.1, f"0:{fold}", held_out=test_docs)
        assert (len(train), len(dev), groups) == ((3461, 384, 1) if fold == 0 else (3461, 384, 0))
        train_ids, dev_ids = {d._.doc_id for d in train}, {d._.doc_id for d in dev}
        assert not train_ids & dev_ids and train_ids | dev_ids == {d._.doc_id for d in docs}
        twice = {"2620", "2683"}
        if fold == 2:
            assert "2683" in train_ids and "2620" in {d._.doc_id for d in test_docs}
        else:
            assert twice <= train_ids or twice <= dev_ids
        test_words = {tuple(t.text for t in d) for d in test_docs}
        assert not any(tuple(t.text for t in d) in test_words for d in dev)
