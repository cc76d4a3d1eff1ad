"""``convert`` and ``export-brat`` verbs, run in-process through ``main``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import pytest
import spacy
from spacy.tokens import Doc, DocBin

import spacy_softprompt  # noqa: F401  (registers the extensions)
from spacy_softprompt.cli import main
from spacy_softprompt.corpora.brat import read_brat

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SDOH = DATA / "sdoh-mtsamples"
ADE = DATA / "ade-corpus-v2"


def needs(path: Path) -> None:
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (it lives outside the project)")


def load(path: Path) -> List[Doc]:
    return list(DocBin(store_user_data=True).from_disk(path).get_docs(spacy.blank("en").vocab))


def write_pair(folder: Path, name: str, text: str, ann: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    (folder / f"{name}.ann").write_text(ann, encoding="utf-8")


@pytest.fixture(scope="module")
def sdoh_dev(tmp_path_factory) -> Path:
    needs(SDOH)
    out = tmp_path_factory.mktemp("convert") / "dev.spacy"
    assert main(["convert", "brat", str(SDOH), str(out), "--split", "dev"]) == 0
    return out


def test_convert_brat_split(sdoh_dev, tmp_path, capsys):
    docs = load(sdoh_dev)
    expected, summary = read_brat(SDOH / "dev", spacy.blank("en"))
    assert [d._.doc_id for d in docs] == [d._.doc_id for d in expected]
    assert sum(len(d._.relations) for d in docs) == sum(summary.relations.values()) > 0
    assert sum(len(d.spans["softprompt"]) for d in docs) == sum(summary.entities.values())
    out = tmp_path / "dev.spacy"
    assert (
        main(
            [
                "convert",
                "brat",
                str(SDOH),
                str(out),
                "--split",
                "dev",
                "--summary",
                str(tmp_path / "s.json"),
                "--relation-map",
                "Status=StatusTime",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "## Conversion summary" in printed and "| StatusTime |" in printed
    written = json.loads((tmp_path / "s.json").read_text())
    assert written["documents"] == 73 and "Status" not in written["relations"]
    assert main(["convert", "brat", str(SDOH / "dev"), str(out), "--summary", str(tmp_path / "s.md")]) == 0
    assert (tmp_path / "s.md").read_text().startswith("## Conversion summary")


def test_convert_user_errors(tmp_path, capsys):
    assert main(["convert", "brat", str(tmp_path / "missing"), str(tmp_path / "x.spacy")]) == 2
    assert "input not found" in capsys.readouterr().err
    assert main(["convert", "brat", str(tmp_path), str(tmp_path / "x.spacy"), "--split", "train"]) == 2
    assert "no folder" in capsys.readouterr().err
    write_pair(tmp_path / "c", "d", "Aspirin", "T1\tDrug 0 7\tAspirin\n")
    assert (
        main(["convert", "brat", str(tmp_path / "c"), str(tmp_path / "x.spacy"), "--label-map", "Drug"]) == 2
    )
    assert "OLD=NEW" in capsys.readouterr().err
    assert main(["convert", "brat", str(tmp_path / "empty"), str(tmp_path / "x.spacy")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["convert", "brat", str(tmp_path / "empty"), str(tmp_path / "x.spacy")]) == 2
    assert "no documents" in capsys.readouterr().err
    assert not (tmp_path / "x.spacy").exists()


def test_convert_malformed_and_lenient(tmp_path, capsys):
    write_pair(
        tmp_path / "in", "doc", "Aspirin caused a rash.", "T1\tDrug 0 7\tAspirin\nT2\tADE 17 21\track\n"
    )
    out = tmp_path / "out.spacy"
    assert main(["convert", "brat", str(tmp_path / "in"), str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'in' / 'doc.ann'}:2: text mismatch" in err and "--lenient" in err
    assert not out.exists()
    summary = tmp_path / "summary.json"
    assert (
        main(["convert", "brat", str(tmp_path / "in"), str(out), "--lenient", "--summary", str(summary)]) == 0
    )
    written = json.loads(summary.read_text())
    assert written["not_converted"] == {"malformed input: text mismatch": 1}
    assert written["problems"][0].startswith(f"{tmp_path / 'in' / 'doc.ann'}:2:")
    [doc] = load(out)
    assert [(s.text, s.label_) for s in doc.spans["softprompt"]] == [("Aspirin", "Drug")]
    assert main(["convert", "brat", str(tmp_path / "in"), str(out), "--text-check", "offsets"]) == 0
    [doc] = load(out)
    assert len(doc.spans["softprompt"]) == 2


def test_a_renaming_that_renames_nothing_is_warned(tmp_path, capsys):
    """--label-map Nope=X once passed in silence: a typo, or a split that lacks the type."""
    write_pair(tmp_path / "in", "a", "Aspirin caused nausea.", "T1\tDrug 0 7\tAspirin\nT2\tADE 15 21\tnausea\n"
               "R1\tDrug-AE Arg1:T1 Arg2:T2\n")
    out = str(tmp_path / "a.spacy")
    assert main(["convert", "brat", str(tmp_path / "in"), out, "--label-map", "Drug=Medication", "Nope=X",
                 "--relation-map", "Drug-Ae=ADE-Drug", "--head-types", "Medication", "Drugs"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert warned == [f"warning: {what} matches no annotation in {tmp_path / 'in'}"
                      for what in ("--label-map Nope=X", "--relation-map Drug-Ae=ADE-Drug", "--head-types Drugs")]
    # a typo renaming onto a type the corpus has (meant to merge two types) renames nothing either
    assert main(["convert", "brat", str(tmp_path / "in"), out, "--label-map", "Drgu=Drug",
                 "--relation-map", "Drug-Ae=Drug-AE"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert warned == [f"warning: --label-map Drgu=Drug matches no annotation in {tmp_path / 'in'}",
                      f"warning: --relation-map Drug-Ae=Drug-AE matches no annotation in {tmp_path / 'in'}"]


def test_ade_options_that_would_be_misread_are_refused(tmp_path, capsys):
    """ADE took --relation-map Drug=X as a concept renaming and --label-map Drug-AE=X as a relation one (the two
    maps were merged); --splits without --split converted every split; --text-check was ignored."""
    folder = tmp_path / "ade"
    folder.mkdir()
    (folder / "DRUG-AE.rel").write_text("1|Aspirin caused a rash.|rash|17|21|Aspirin|0|7\n")
    (folder / "DRUG-DOSE.rel").write_text("")
    out = str(tmp_path / "a.spacy")
    (tmp_path / "s.json").write_text(json.dumps({"train": ["1"], "test": []}))
    for options, message in ((["--relation-map", "Drug=Medication"], "--relation-map Drug: --label-map renames"),
                             (["--label-map", "Drug-AE=Causes"], "--label-map Drug-AE: --label-map renames"),
                             (["--splits", str(tmp_path / "s.json")], "--splits needs --split"),
                             (["--text-check", "strict"], "--text-check applies to brat input only")):
        assert main(["convert", "ade", str(folder), out, *options]) == 2
        assert message in capsys.readouterr().err
    assert main(["convert", "ade", str(folder), out, "--label-map", "Drug=Medication",
                 "--relation-map", "Drug-AE=Causes"]) == 0
    (doc,) = load(Path(out))
    assert {s.label_ for s in doc.spans["softprompt"]} == {"Medication", "Adverse_Effect"}
    assert [r.label for r in doc._.relations] == ["Causes"]


def test_bad_files_are_named_and_a_lenient_run_that_loses_every_document_says_why(tmp_path, capsys):
    ade = tmp_path / "ade"
    ade.mkdir()
    (ade / "DRUG-AE.rel").write_bytes(b"1|Aspirin caused a rash.|rash|17|21|Aspirin|0|7\n"
                                      b"2|Caf\xe9 caused a rash.|rash|17|21|Caf|0|3\n")
    (ade / "DRUG-DOSE.rel").write_text("")
    out = str(tmp_path / "a.spacy")
    assert main(["convert", "ade", str(ade), out]) == 2
    assert f"error: {ade / 'DRUG-AE.rel'}:2: not valid UTF-8: byte 0xe9 at column 6" in capsys.readouterr().err
    for content, message in (("{bad", "not a JSON file"), ('["a"]', "not a splits file")):
        (tmp_path / "s.json").write_text(content)
        for form, folder in (("ade", ade), ("brat", tmp_path / "brat")):
            write_pair(tmp_path / "brat", "a", "Aspirin helps.", "T1\tDrug 0 7\tAspirin\n")
            assert main(["convert", form, str(folder), out, "--split", "train", "--splits", str(tmp_path / "s.json")]) == 2
            err = capsys.readouterr().err
            assert f"error: {tmp_path / 's.json'}" in err and message in err, err
    assert main(["convert", "brat", str(tmp_path / "brat" / "a.txt"), out]) == 2
    assert "not a folder nor an .ann file" in capsys.readouterr().err
    # lenient, every document unreadable: the summary is printed and written, and the error says so
    (tmp_path / "brat" / "a.txt").write_bytes(b"Aspirin \xff helps.")
    summary = tmp_path / "summary.JSON"
    assert main(["convert", "brat", str(tmp_path / "brat"), out, "--lenient", "--summary", str(summary)]) == 2
    captured = capsys.readouterr()
    assert "not valid UTF-8" in captured.out and "every one was left out" in captured.err
    assert json.loads(summary.read_text())["problems"]  # .JSON is JSON too
    # a listed document left out with a reason is not "not found"
    write_pair(tmp_path / "brat", "b", "Aspirin helps.", "T1\tDrug 0 7\tAspirin\n")
    (tmp_path / "s.json").write_text(json.dumps({"train": ["a", "b"]}))
    assert main(["convert", "brat", str(tmp_path / "brat"), out, "--lenient", "--split", "train",
                 "--splits", str(tmp_path / "s.json")]) == 0
    assert [d._.doc_id for d in load(Path(out))] == ["b"]


def test_convert_head_types(tmp_path):
    text = "Nausea after Aspirin."
    write_pair(
        tmp_path / "in",
        "doc",
        text,
        "T1\tADE 0 6\tNausea\nT2\tDrug 13 20\tAspirin\nR1\tADE-Drug Arg1:T1 Arg2:T2\n",
    )
    out = tmp_path / "out.spacy"
    assert (
        main(
            [
                "convert",
                "brat",
                str(tmp_path / "in"),
                str(out),
                "--head-types",
                "DRUG",
                "--label-map",
                "Drug=DRUG",
                "--relation-map",
                "ADE-Drug=Drug-ADE",
            ]
        )
        == 0
    )
    [doc] = load(out)
    [relation] = doc._.relations
    assert (relation.head.text, relation.head.label_, relation.label, relation.tail.text) == (
        "Aspirin",
        "DRUG",
        "Drug-ADE",
        "Nausea",
    )


def test_convert_ade_split(tmp_path, capsys):
    needs(ADE)
    out = tmp_path / "ade.spacy"
    assert (
        main(["convert", "ade", str(ADE), str(out), "--split", "test", "--label-map", "Adverse_Effect=ADE"])
        == 0
    )
    assert "## Conversion summary" in capsys.readouterr().out
    docs = load(out)
    test_pmids = set(json.loads((ADE / "splits.json").read_text())["test"])
    assert len(docs) == 400 and {d._.doc_id.split("-")[0] for d in docs} <= test_pmids
    labels = {s.label_ for d in docs for s in d.spans["softprompt"]}
    assert "ADE" in labels and "Adverse_Effect" not in labels
    assert main(["convert", "ade", str(ADE), str(out), "--label-map", "Nope=X"]) == 2
    assert "Nope" in capsys.readouterr().err


def test_export_brat_gold_round_trip(sdoh_dev, tmp_path):
    out = tmp_path / "brat"
    assert main(["export-brat", str(sdoh_dev), str(out)]) == 0
    gold = load(sdoh_dev)
    back, summary = read_brat(out, spacy.blank("en"), text_check="strict")
    assert [d._.doc_id for d in back] == [d._.doc_id for d in gold]

    def content(docs: List[Doc]) -> list:
        return [
            (
                sorted((s.start_char, s.end_char, s.label_) for s in d.spans["softprompt"]),
                sorted(r.key() for r in d._.relations),
            )
            for d in docs
        ]

    assert content(back) == content(gold)
    assert (
        main(
            [
                "export-brat",
                str(sdoh_dev),
                str(tmp_path / "n2c2"),
                "--tail-first",
                "--relation-map",
                "Status=Status-Trigger",
            ]
        )
        == 0
    )
    ann = (tmp_path / "n2c2" / f"{gold[0]._.doc_id}.ann").read_text()
    assert " Status-Trigger:T" in ann and " Status:T" not in ann  # event roles renamed on the way out


def test_convert_then_export_gives_the_same_annotations(tmp_path, capsys):
    """The CLI path of the round trip: fragments, events, ``*`` and an empty third column survive."""
    from test_brat_roundtrip import ANN, TEXT, annotation_set

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "doc.txt").write_bytes(TEXT.encode("utf-8"))
    (folder / "doc.ann").write_bytes(ANN.encode("utf-8"))
    assert main(["convert", "brat", str(folder), str(tmp_path / "c.spacy")]) == 0
    assert "kept as a self-relation" in capsys.readouterr().out  # R1: two annotations, one covering span
    assert main(["export-brat", str(tmp_path / "c.spacy"), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "doc.txt").read_bytes() == TEXT.encode("utf-8")
    assert annotation_set((tmp_path / "out" / "doc.ann").read_text(encoding="utf-8")) == annotation_set(ANN)


def test_export_brat_pipeline_predictions(tmp_path, capsys):
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "Drug", "pattern": "aspirin"}])
    nlp.to_disk(tmp_path / "pipeline")
    gold = nlp.make_doc("She took aspirin.")
    gold._.doc_id = "notes/a"
    unnamed = nlp.make_doc("No aspirin today.")
    DocBin(store_user_data=True, docs=[gold, unnamed]).to_disk(tmp_path / "data.spacy")
    assert (
        main(
            [
                "export-brat",
                str(tmp_path / "data.spacy"),
                str(tmp_path / "out"),
                "--pipeline",
                str(tmp_path / "pipeline"),
            ]
        )
        == 0
    )
    assert "predict" in capsys.readouterr().err  # progress on the long part
    assert (tmp_path / "out" / "notes" / "a.ann").read_text() == "T1\tDrug 9 16\taspirin\n"
    assert (tmp_path / "out" / "notes" / "a.txt").read_text() == "She took aspirin."
    assert (tmp_path / "out" / "1.ann").read_text() == "T1\tDrug 3 10\taspirin\n"
    assert main(["export-brat", str(tmp_path / "data.spacy"), str(tmp_path / "gold")]) == 0
    assert (tmp_path / "gold" / "notes" / "a.ann").read_text() == ""


def test_export_brat_user_errors(tmp_path, capsys):
    assert main(["export-brat", str(tmp_path / "missing.spacy"), str(tmp_path / "out")]) == 2
    assert "missing.spacy: not found" in capsys.readouterr().err
    doc = spacy.blank("en").make_doc("text")
    doc._.doc_id = "../escape"
    DocBin(store_user_data=True, docs=[doc]).to_disk(tmp_path / "bad.spacy")
    assert main(["export-brat", str(tmp_path / "bad.spacy"), str(tmp_path / "out")]) == 2
    assert "not a relative path" in capsys.readouterr().err


def test_export_brat_refuses_what_a_scorer_would_misread(tmp_path, capsys):
    """Each once exited 0: a relation map that renames nothing (a typo left every relation under its old name), an
    output folder holding another run's .ann files (a scorer then read both), an empty file (no folder, a report
    of 0 documents). Exporting the same documents again into their folder replaces them."""
    from test_relations import annotated

    doc = annotated(spacy.blank("en"), "Aspirin caused nausea.", [("Aspirin", "Drug"), ("nausea", "ADE")],
                    [(0, 1, "Drug-AE", 1.0)])
    doc._.doc_id = "a"
    DocBin(store_user_data=True, docs=[doc]).to_disk(tmp_path / "one.spacy")
    DocBin().to_disk(tmp_path / "none.spacy")
    out = str(tmp_path / "out")
    for argv, message in ((["--relation-map", "Drug-Ae=ADE-Drug"], "--relation-map Drug-Ae: no such relation label"),
                          ([], None), ([], None)):  # the second export of the same document replaces the first
        assert main(["export-brat", str(tmp_path / "one.spacy"), out, *argv]) == (2 if message else 0)
        assert message is None or message in capsys.readouterr().err
    (tmp_path / "out" / "old.ann").write_text("")
    assert main(["export-brat", str(tmp_path / "one.spacy"), out]) == 2
    assert "already holds 1 .ann file(s) this export does not write (e.g. old.ann)" in capsys.readouterr().err
    assert main(["export-brat", str(tmp_path / "none.spacy"), str(tmp_path / "empty")]) == 2
    assert "holds no documents" in capsys.readouterr().err


def test_convert_brat_split_from_splits_file(tmp_path, capsys):
    """A corpus without split folders (MACCROBAT) is split by a splits.json of document ids:
    only that split's documents are converted, the others are counted in the summary, and an id
    the folder lacks is an error naming the file."""
    for name in ("a", "b", "c"):
        write_pair(tmp_path / "brat", name, "Aspirin helps.", "T1\tDrug 0 7\tAspirin\n")
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"train": ["a", "b"], "test": ["c"]}), encoding="utf-8")
    out = tmp_path / "train.spacy"
    summary = tmp_path / "train.summary.json"
    assert main(["convert", "brat", str(tmp_path / "brat"), str(out), "--split", "train", "--splits", str(splits),
                 "--summary", str(summary)]) == 0
    assert sorted(d._.doc_id for d in load(out)) == ["a", "b"]
    assert "not listed in this split" in summary.read_text()
    splits.write_text(json.dumps({"train": ["a", "zzz"], "test": ["c"]}), encoding="utf-8")
    assert main(["convert", "brat", str(tmp_path / "brat"), str(out), "--split", "train", "--splits", str(splits)]) == 2
    assert "zzz" in capsys.readouterr().err
    assert main(["convert", "brat", str(tmp_path / "brat"), str(out), "--splits", str(splits)]) == 2
    assert "--splits needs --split" in capsys.readouterr().err
    # a misspelt split name read its ids as in no split; a key starting with _ is a comment
    splits.write_text(json.dumps({"_about": "x", "train": ["a"], "validation": ["b"], "test": ["c"]}), encoding="utf-8")
    assert main(["convert", "brat", str(tmp_path / "brat"), str(out), "--split", "train", "--splits", str(splits)]) == 2
    assert f"{splits}: unknown split name(s) 'validation': the splits are train, dev, test" in capsys.readouterr().err
