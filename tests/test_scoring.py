"""The scorer against numbers worked out by hand (never by the scorer itself).

Each case states its counts in a comment: TP/FP/FN/ignored per mode, then
P = TP/(TP+FP), R = TP/(TP+FN), F = 2PR/(P+R).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example

from spacy_softprompt import Relation, set_concepts, set_relations
from spacy_softprompt.scoring import format_table, score_concepts_and_relations, score_examples, to_markdown

NLP = spacy.blank("en")

Concept = Tuple[str, str]  # (fragment of the text, label); the fragment occurs once
Rel = Tuple[Concept, Concept, str]  # (head, tail, relation label)


def _span(doc: Doc, concept: Concept) -> Span:
    fragment, label = concept
    start = doc.text.index(fragment)
    span = doc.char_span(start, start + len(fragment), label=label)
    assert span is not None, f"{fragment!r} is not on token boundaries"
    return span


def make_doc(
    text: str,
    concepts: Sequence[Concept] = (),
    relations: Sequence[Rel] = (),
    words: Optional[List[str]] = None,
) -> Doc:
    """A doc with concepts in doc.spans["softprompt"] and relations; ``words`` sets the tokenization."""
    if words is None:
        doc = NLP.make_doc(text)
    else:
        doc = Doc(NLP.vocab, words=words, spaces=_spaces(text, words))
    set_concepts(doc, [_span(doc, c) for c in concepts])
    set_relations(doc, [Relation(_span(doc, h), _span(doc, t), label) for h, t, label in relations])
    return doc


def _spaces(text: str, words: List[str]) -> List[bool]:
    spaces, pos = [], 0
    for word in words:
        pos = text.index(word, pos) + len(word)
        spaces.append(text[pos : pos + 1] == " ")
    return spaces


def check(
    scores: dict, prefix: str, tp: int, fp: int, fn: int, p: float, r: float, f: float, ignored: int = 0
) -> None:
    assert (scores[f"{prefix}_tp"], scores[f"{prefix}_fp"], scores[f"{prefix}_fn"]) == (tp, fp, fn)
    assert scores[f"{prefix}_ignored"] == ignored
    assert scores[f"{prefix}_p"] == pytest.approx(p)
    assert scores[f"{prefix}_r"] == pytest.approx(r)
    assert scores[f"{prefix}_f"] == pytest.approx(f)


def score(pairs: Iterable[Tuple[Doc, Doc]]) -> dict:
    return score_concepts_and_relations(pairs)


def test_boundary_off_by_one_is_a_lenient_hit_and_a_strict_miss():
    text = "She has severe chest pain today."
    gold = make_doc(text, [("severe chest pain", "Symptom")])
    pred = make_doc(text, [("chest pain", "Symptom")])
    scores = score([(pred, gold)])
    check(scores, "concepts_strict", tp=0, fp=1, fn=1, p=0.0, r=0.0, f=0.0)
    check(scores, "concepts_lenient", tp=1, fp=0, fn=0, p=1.0, r=1.0, f=1.0)


def test_offsets_not_tokens_are_compared():
    text = "She has severe chest pain today."
    words = ["She", "has", "severe chest pain", "today", "."]
    gold = make_doc(text, [("severe chest pain", "Symptom")], words=words)
    pred = make_doc(text, [("severe chest pain", "Symptom")])
    assert len(gold) != len(pred)
    check(score([(pred, gold)]), "concepts_strict", tp=1, fp=0, fn=0, p=1.0, r=1.0, f=1.0)


def test_nested_spans():
    text = "Known lung cancer."
    gold = make_doc(text, [("lung cancer", "Disease"), ("lung", "Anatomy")])
    pred = make_doc(text, [("lung cancer", "Disease"), ("cancer", "Disease")])
    scores = score([(pred, gold)])
    # strict: Disease tp1 ("lung cancer") fp1 ("cancer"); Anatomy fn1.
    check(scores, "concepts_strict", tp=1, fp=1, fn=1, p=0.5, r=0.5, f=0.5)
    # lenient: "lung cancer" claims the gold Disease; "cancer" overlaps that claimed
    # gold span and is ignored (neither TP nor FP); Anatomy fn1.
    # P = 1/1, R = 1/2, F = 2*1*0.5/1.5 = 2/3.
    check(scores, "concepts_lenient", tp=1, fp=0, fn=1, p=1.0, r=0.5, f=2 / 3, ignored=1)


def test_one_prediction_overlapping_two_gold_spans():
    text = "Takes aspirin and ibuprofen daily."
    gold = make_doc(text, [("aspirin", "Drug"), ("ibuprofen", "Drug")])
    pred = make_doc(text, [("aspirin and ibuprofen", "Drug")])
    scores = score([(pred, gold)])
    check(scores, "concepts_strict", tp=0, fp=1, fn=2, p=0.0, r=0.0, f=0.0)
    # lenient: one TP (counted once, system side), the second gold span is FN.
    check(scores, "concepts_lenient", tp=1, fp=0, fn=1, p=1.0, r=0.5, f=2 / 3)


def test_lenient_follows_the_n2c2_pare_down_order():
    text = "chest pain and shortness of breath"
    gold = make_doc(text, [("chest pain", "Symptom"), ("shortness of breath", "Symptom")])
    pred = make_doc(text, [("chest", "Symptom"), ("pain and shortness", "Symptom")])
    scores = score([(pred, gold)])
    check(scores, "concepts_strict", tp=0, fp=2, fn=2, p=0.0, r=0.0, f=0.0)
    # "chest" (first in offset order) claims "chest pain"; "pain and shortness" also
    # overlaps "chest pain", already claimed, so it is ignored, and "shortness of
    # breath" stays FN although it is touched, exactly as the n2c2 script counts.
    check(scores, "concepts_lenient", tp=1, fp=0, fn=1, p=1.0, r=0.5, f=2 / 3, ignored=1)


def test_perfect_system_on_nested_same_label_gold_is_perfect_in_both_modes():
    text = "Mass in the left lung lobe."
    nested = [("left lung lobe", "Anatomy"), ("lung", "Anatomy")]
    scores = score([(make_doc(text, nested), make_doc(text, nested))])
    # Exact matches are paired first (the n2c2 script alone would let "left lung lobe"
    # claim "lung" too and count it FN in lenient mode).
    check(scores, "concepts_strict", tp=2, fp=0, fn=0, p=1.0, r=1.0, f=1.0)
    check(scores, "concepts_lenient", tp=2, fp=0, fn=0, p=1.0, r=1.0, f=1.0)


def test_wrong_type_multi_label_span_duplicates_and_per_label():
    text = "Allergic to penicillin."
    gold = make_doc(text, [("Allergic", "Symptom"), ("penicillin", "Drug"), ("penicillin", "Allergen")])
    pred = make_doc(text, [("Allergic", "Drug"), ("penicillin", "Drug"), ("penicillin", "Drug")])
    scores = score([(pred, gold)])
    # Drug: tp1 (penicillin, the duplicate counts once), fp1 (Allergic typed Drug);
    # Symptom: fn1 (wrong type); Allergen: fn1 (second label of the same span).
    # micro: tp1 fp1 fn2, P = 1/2, R = 1/3, F = 2*(1/2)*(1/3)/(5/6) = 0.4. No partial overlaps,
    # so lenient is the same.
    for mode in ("strict", "lenient"):
        check(scores, f"concepts_{mode}", tp=1, fp=1, fn=2, p=0.5, r=1 / 3, f=0.4)
        per_type = scores[f"concepts_{mode}_per_type"]
        assert sorted(per_type) == ["Allergen", "Drug", "Symptom"]
        assert per_type["Drug"]["p"] == pytest.approx(0.5)
        assert per_type["Drug"]["r"] == pytest.approx(1.0)
        assert per_type["Drug"]["f"] == pytest.approx(2 / 3)
        assert (per_type["Drug"]["tp"], per_type["Drug"]["fp"], per_type["Drug"]["fn"]) == (1, 1, 0)
        assert per_type["Symptom"] == {"p": 0.0, "r": 0.0, "f": 0.0, "tp": 0, "fp": 0, "fn": 1, "ignored": 0}
        assert per_type["Allergen"]["fn"] == 1


def test_relations_arguments_and_labels():
    text = "After aspirin she developed a skin rash and hives."
    aspirin = ("aspirin", "Drug")
    gold = make_doc(
        text,
        [aspirin, ("rash", "ADE"), ("hives", "ADE")],
        [(aspirin, ("rash", "ADE"), "ADE-Drug"), (aspirin, ("hives", "ADE"), "ADE-Drug")],
    )
    pred = make_doc(
        text,
        relations=[
            (aspirin, ("skin rash", "ADE"), "ADE-Drug"),  # tail overlaps "rash": lenient hit, strict miss
            (aspirin, ("developed", "ADE"), "ADE-Drug"),  # wrong tail: miss
            (aspirin, ("hives", "Symptom"), "ADE-Drug"),  # right offsets, wrong tail type: miss
            (aspirin, ("hives", "ADE"), "Reason-Drug"),  # right arguments, wrong label: miss
        ],
    )
    scores = score([(pred, gold)])
    # strict: ADE-Drug fp3 fn2; Reason-Drug fp1.
    check(scores, "relations_strict", tp=0, fp=4, fn=2, p=0.0, r=0.0, f=0.0)
    # lenient: ADE-Drug tp1 (skin rash ~ rash) fp2 fn1 (hives); Reason-Drug fp1.
    # micro P = 1/4, R = 1/2, F = 2*(1/4)*(1/2)/(3/4) = 1/3.
    check(scores, "relations_lenient", tp=1, fp=3, fn=1, p=0.25, r=0.5, f=1 / 3)
    ade = scores["relations_lenient_per_type"]["ADE-Drug"]
    assert (ade["p"], ade["r"]) == (pytest.approx(1 / 3), pytest.approx(0.5))
    assert ade["f"] == pytest.approx(0.4)  # 2*(1/3)*(1/2)/(5/6)
    assert scores["relations_lenient_per_type"]["Reason-Drug"]["fp"] == 1
    assert scores["relations_strict_per_type"]["ADE-Drug"]["f"] == 0.0


def test_micro_sums_over_documents():
    doc_a = "She has severe chest pain today."
    doc_b = "Takes aspirin and ibuprofen daily."
    pairs = [
        (make_doc(doc_a, [("chest pain", "Symptom")]), make_doc(doc_a, [("severe chest pain", "Symptom")])),
        (
            make_doc(doc_b, [("aspirin", "Drug")]),
            make_doc(doc_b, [("aspirin", "Drug"), ("ibuprofen", "Drug")]),
        ),
    ]
    scores = score(pairs)
    # strict: Symptom fp1 fn1; Drug tp1 fn1 -> tp1 fp1 fn2: P 1/2, R 1/3, F 0.4.
    check(scores, "concepts_strict", tp=1, fp=1, fn=2, p=0.5, r=1 / 3, f=0.4)
    # lenient: Symptom tp1; Drug tp1 fn1 -> tp2 fp0 fn1: P 1, R 2/3, F 0.8.
    check(scores, "concepts_lenient", tp=2, fp=0, fn=1, p=1.0, r=2 / 3, f=0.8)
    drug = scores["concepts_lenient_per_type"]["Drug"]
    assert (drug["p"], drug["r"], drug["f"]) == (1.0, 0.5, pytest.approx(2 / 3))


def test_empty_predictions_and_empty_gold_give_zero_not_an_error():
    text = "Takes aspirin daily."
    empty = make_doc(text)
    drug, frequency = ("aspirin", "Drug"), ("daily", "Frequency")
    full = make_doc(text, [drug], [(drug, frequency, "Frequency-Drug")])
    nothing = score([(empty, make_doc(text))])  # nothing to find, nothing found: defined as 0.0
    missed = score([(empty, full)])
    invented = score([(full, empty)])
    for target in ("concepts", "relations"):
        for mode in ("strict", "lenient"):
            prefix = f"{target}_{mode}"
            check(nothing, prefix, tp=0, fp=0, fn=0, p=0.0, r=0.0, f=0.0)
            assert nothing[f"{prefix}_per_type"] == {}
    check(missed, "concepts_strict", tp=0, fp=0, fn=1, p=0.0, r=0.0, f=0.0)
    check(missed, "relations_lenient", tp=0, fp=0, fn=1, p=0.0, r=0.0, f=0.0)
    check(invented, "concepts_lenient", tp=0, fp=1, fn=0, p=0.0, r=0.0, f=0.0)
    check(invented, "relations_strict", tp=0, fp=1, fn=0, p=0.0, r=0.0, f=0.0)
    check(score([]), "concepts_strict", tp=0, fp=0, fn=0, p=0.0, r=0.0, f=0.0)


def test_gold_without_span_group_falls_back_to_ents():
    text = "Takes aspirin daily."
    gold = NLP.make_doc(text)
    gold.ents = [gold.char_span(6, 13, label="Drug")]
    pred = make_doc(text, [("aspirin", "Drug")])
    check(score([(pred, gold)]), "concepts_strict", tp=1, fp=0, fn=0, p=1.0, r=1.0, f=1.0)


def test_different_texts_are_refused():
    with pytest.raises(ValueError, match="texts differ"):
        score([(make_doc("Takes aspirin."), make_doc("Takes ibuprofen."))])


def test_score_examples_and_tables():
    text = "Takes aspirin and ibuprofen daily."
    gold = make_doc(text, [("aspirin", "Drug"), ("ibuprofen", "Drug")])
    pred = make_doc(text, [("aspirin", "Drug")])
    scores = score_examples([Example(pred, gold)])
    check(scores, "concepts_strict", tp=1, fp=0, fn=1, p=1.0, r=0.5, f=2 / 3)
    table = format_table(scores)
    assert "concepts (micro)" in table and "relations (micro)" in table
    drug_row = next(line for line in table.splitlines() if line.startswith("concept Drug"))
    assert drug_row.split()[2:] == ["100.00", "50.00", "66.67", "100.00", "50.00", "66.67", "2", "1"]
    markdown = to_markdown(scores)
    assert "| concept Drug | 100.00 | 50.00 | 66.67 | 100.00 | 50.00 | 66.67 | 2 | 1 |" in markdown
    # evaluate --thresholds: the grid in the terminal table as in the markdown (it was in --output alone)
    scores["by_threshold"] = {"0.9": scores, "0.1": score_examples([Example(gold, gold)])}
    for table in (format_table(scores), to_markdown(scores)):
        rows = [line for line in table.splitlines() if "concepts (micro) at p =" in line]
        assert ["0.1" in rows[0], "100.00" in rows[0], "0.9" in rows[1], "66.67" in rows[1]] == [True] * 4


# --- command line -------------------------------------------------------------------------

WORDS = {"aspirin": "Drug", "ibuprofen": "Drug", "rash": "ADE", "hives": "ADE"}


@Language.component("test_scoring_wordlist_ie")
def wordlist_ie(doc: Doc) -> Doc:
    """One-token concepts from WORDS; every Drug relates to every ADE."""
    spans = [Span(doc, t.i, t.i + 1, label=WORDS[t.lower_]) for t in doc if t.lower_ in WORDS]
    set_concepts(doc, spans)
    drugs = [s for s in spans if s.label_ == "Drug"]
    ades = [s for s in spans if s.label_ == "ADE"]
    set_relations(doc, [Relation(d, a, "ADE-Drug") for d in drugs for a in ades])
    return doc


def cli(argv: List[str]) -> int:
    """Run a verb as ``python -m spacy_softprompt`` does."""
    from spacy_softprompt.cli import main

    return main(argv)


def test_evaluate_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture):
    nlp = spacy.blank("en")
    nlp.add_pipe("test_scoring_wordlist_ie")
    nlp.to_disk(tmp_path / "pipeline")
    drug_ade = ("Aspirin", "Drug"), ("rash", "ADE")
    ibu_ade = ("Ibuprofen", "Drug"), ("severe hives", "ADE")
    gold = [
        make_doc("Aspirin caused a rash.", drug_ade, [(*drug_ade, "ADE-Drug")]),
        make_doc("Ibuprofen caused severe hives.", ibu_ade, [(*ibu_ade, "ADE-Drug")]),
        make_doc("No drugs given."),
    ]
    DocBin(docs=gold, store_user_data=True).to_disk(tmp_path / "test.spacy")
    out, md = tmp_path / "metrics" / "scores.json", tmp_path / "metrics" / "scores.md"
    argv = ["evaluate", str(tmp_path / "pipeline"), str(tmp_path / "test.spacy")]
    assert cli(argv + ["--output", str(out), "--markdown", str(md), "--batch-size", "2"]) == 0

    scores = json.loads(out.read_text())
    # The component finds Aspirin, rash, Ibuprofen exactly, and "hives" inside gold "severe hives".
    # concepts strict: tp3 fp1 fn1 -> 0.75; lenient: tp4 -> 1.0.
    check(scores, "concepts_strict", tp=3, fp=1, fn=1, p=0.75, r=0.75, f=0.75)
    check(scores, "concepts_lenient", tp=4, fp=0, fn=0, p=1.0, r=1.0, f=1.0)
    # relations: Aspirin->rash exact; Ibuprofen->hives only lenient. strict tp1 fp1 fn1; lenient tp2.
    check(scores, "relations_strict", tp=1, fp=1, fn=1, p=0.5, r=0.5, f=0.5)
    check(scores, "relations_lenient", tp=2, fp=0, fn=0, p=1.0, r=1.0, f=1.0)
    assert scores["documents"] == 3
    assert scores["concepts_strict_per_type"]["ADE"]["f"] == pytest.approx(0.5)
    assert "| concepts (micro) | 75.00 |" in md.read_text()
    assert "concepts (micro)" in capsys.readouterr().out


def test_evaluate_reports_missing_inputs(tmp_path: Path, capsys: pytest.CaptureFixture):
    nlp = spacy.blank("en")
    nlp.to_disk(tmp_path / "pipeline")
    DocBin(docs=[make_doc("Text.")]).to_disk(tmp_path / "test.spacy")
    assert cli(["evaluate", str(tmp_path / "nope"), str(tmp_path / "test.spacy")]) == 2
    assert "pipeline not found" in capsys.readouterr().err
    assert cli(["evaluate", str(tmp_path / "pipeline"), str(tmp_path / "missing.spacy")]) == 2
    assert "missing.spacy: not found" in capsys.readouterr().err


def _write_brat(folder: Path, name: str, text: str, ann: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text(text, encoding="utf8")
    (folder / f"{name}.ann").write_text(ann, encoding="utf8")


def test_score_brat(tmp_path: Path, capsys: pytest.CaptureFixture):
    gold, system = tmp_path / "gold", tmp_path / "system"
    # "Aspirin caused a rash.": Aspirin 0-7, "a rash" 15-21, rash 17-21.
    text, relation = "Aspirin caused a rash.\n", "R1\tADE-Drug Arg1:T1 Arg2:T2\n"
    _write_brat(gold, "doc1", text, "T1\tDrug 0 7\tAspirin\nT2\tADE 17 21\trash\n" + relation)
    _write_brat(system, "doc1", text, "T1\tDrug 0 7\tAspirin\nT2\tADE 15 21\ta rash\n" + relation)
    _write_brat(gold, "doc2", "Takes ibuprofen daily.\n", "T1\tDrug 6 15\tibuprofen\n")  # no system output
    _write_brat(system, "doc3", "Extra text.\n", "T1\tDrug 0 5\tExtra\n")  # no gold: not scored
    out = tmp_path / "scores.json"
    assert cli(["score-brat", str(gold), str(system), "--output", str(out)]) == 0

    scores = json.loads(out.read_text())
    # Official script: only doc1 (in both folders) is scored.
    # concepts strict: Drug tp1; ADE fp1 fn1 -> tp1 fp1 fn1: P 1/2, R 1/2, F 1/2.
    check(scores, "concepts_strict", tp=1, fp=1, fn=1, p=0.5, r=0.5, f=0.5)
    # lenient: "a rash" overlaps "rash" -> tp2.
    check(scores, "concepts_lenient", tp=2, fp=0, fn=0, p=1.0, r=1.0, f=1.0)
    check(scores, "relations_strict", tp=0, fp=1, fn=1, p=0.0, r=0.0, f=0.0)
    check(scores, "relations_lenient", tp=1, fp=0, fn=0, p=1.0, r=1.0, f=1.0)
    assert scores["documents"] == 1
    assert scores["missing_in_system"] == ["doc2"]
    assert scores["only_in_system"] == ["doc3"]
    err = capsys.readouterr().err
    assert "doc2: no system .ann; skipped" in err and "doc3: in the system folder only" in err

    # --count-missing: doc2's gold Drug counts as FN.
    assert cli(["score-brat", str(gold), str(system), "--output", str(out), "--count-missing"]) == 0
    scores = json.loads(out.read_text())
    check(scores, "concepts_strict", tp=1, fp=1, fn=2, p=0.5, r=1 / 3, f=0.4)
    assert scores["documents"] == 2
    assert "doc2: no system .ann; all its gold annotations count as FN" in capsys.readouterr().err


def test_score_brat_refuses_folders_without_common_files(tmp_path: Path, capsys: pytest.CaptureFixture):
    _write_brat(tmp_path / "gold", "a", "x\n", "")
    _write_brat(tmp_path / "system", "b", "x\n", "")
    assert cli(["score-brat", str(tmp_path / "gold"), str(tmp_path / "system")]) == 2
    assert "No .ann file name is in both" in capsys.readouterr().err
    assert cli(["score-brat", str(tmp_path / "nope"), str(tmp_path / "system")]) == 2
    assert "gold folder not found" in capsys.readouterr().err


def test_concept_types_restrict_concepts_and_relations():
    """Cross-corpus scoring: gold types the model never learned are left out."""
    nlp = spacy.blank("en")
    gold = nlp("Aspirin caused rash in the liver")
    pred = nlp("Aspirin caused rash in the liver")
    g = [gold.char_span(0, 7, "Drug"), gold.char_span(15, 19, "ADE"), gold.char_span(27, 32, "Organ")]
    set_concepts(gold, g)
    set_relations(gold, [Relation(g[0], g[1], "Drug-AE"), Relation(g[1], g[2], "located")])
    p = [pred.char_span(0, 7, "Drug")]
    set_concepts(pred, p)
    scores = score_concepts_and_relations([(pred, gold)], concept_types={"Drug", "ADE"})
    # concepts: gold Drug, ADE (Organ dropped) vs predicted Drug -> P 1, R 1/2
    assert scores["concepts_strict_p"] == 1.0 and scores["concepts_strict_r"] == 0.5
    # relations: only Drug-AE remains in gold (located touches Organ), none predicted
    assert scores["relations_strict_fn"] == 1 and "located" not in scores["relations_strict_per_type"]


# --- registered scorer and spaCy's standard keys -------------------------------------------


def test_registered_scorer_reports_spacy_standard_keys():
    from spacy_softprompt.scoring import DEFAULT_SCORE_WEIGHTS

    config = {"scorer": {"@scorers": "spacy_softprompt.scorer.v1"}}
    scorer = spacy.registry.resolve(config)["scorer"]
    text = "Takes aspirin and ibuprofen daily."
    gold = make_doc(text, [("aspirin", "Drug"), ("ibuprofen", "Drug"), ("daily", "Frequency")])
    pred = make_doc(text, [("aspirin", "Drug"), ("daily", "Drug")])
    # The component passes its cfg (and labels) as keyword arguments: extra ones are ignored.
    scores = scorer([Example(pred, gold)], spans_key="softprompt", threshold=0.5, labels=["Drug"])
    # Drug tp1 (aspirin) fp1 (daily typed Drug) fn1 (ibuprofen); Frequency fn1:
    # tp1 fp1 fn2 -> P 1/2, R 1/3, F 0.4, the same in every family of keys.
    check(scores, "concepts_strict", tp=1, fp=1, fn=2, p=0.5, r=1 / 3, f=0.4)
    for prefix in ("ents", "spans_softprompt"):
        assert scores[f"{prefix}_p"] == pytest.approx(0.5)
        assert scores[f"{prefix}_r"] == pytest.approx(1 / 3)
        assert scores[f"{prefix}_f"] == pytest.approx(0.4)
        per_type = scores[f"{prefix}_per_type"]
        assert per_type["Drug"]["p"] == pytest.approx(0.5) and per_type["Drug"]["r"] == pytest.approx(0.5)
        assert per_type["Frequency"]["r"] == 0.0
    assert scores["conc_f"] == pytest.approx(0.4) and scores["rel_f"] == 0.0
    assert all(key in scores and isinstance(scores[key], float) for key in DEFAULT_SCORE_WEIGHTS)
    assert all(len(key) <= 6 for key in DEFAULT_SCORE_WEIGHTS)  # spaCy's table columns are 6 wide


def test_registered_scorer_settings():
    text = "Mass in the left lung lobe."
    nested = [("left lung lobe", "Anatomy"), ("lung", "Anatomy")]
    gold = make_doc(text, nested)
    pred = make_doc(text, nested)
    pred.spans["other"] = pred.spans["softprompt"]
    del pred.spans["softprompt"]
    gold.spans["other"] = gold.spans["softprompt"]
    del gold.spans["softprompt"]
    config = {"@scorers": "spacy_softprompt.scorer.v1", "spans_key": "other", "lenient_matching": "official"}
    scorer = spacy.registry.resolve({"scorer": config})["scorer"]
    # The scorer's own spans_key wins over the one the component passes.
    scores = scorer([Example(pred, gold)], spans_key="softprompt")
    assert scores["spans_other_f"] == 1.0 and sorted(scores["spans_other_per_type"]) == ["Anatomy"]
    assert "spans_softprompt_f" not in scores
    # official: the outer prediction claims both nested gold spans; exact_first: both exact.
    check(scores, "concepts_lenient", tp=1, fp=0, fn=1, p=1.0, r=0.5, f=2 / 3, ignored=1)
    default = score_examples([Example(pred, gold)], spans_key="other")
    check(default, "concepts_lenient", tp=2, fp=0, fn=0, p=1.0, r=1.0, f=1.0)
    with pytest.raises(ValueError, match="lenient_matching"):
        spacy.registry.resolve({"scorer": {**config, "lenient_matching": "greedy"}})
