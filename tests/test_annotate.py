"""``annotate``: folder and JSONL input, bad notes, shards and manifest, kill and resume, JSONL -> Docs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import spacy

from spacy_softprompt.annotate import doc_to_record, read_jsonl, record_to_doc
from spacy_softprompt.cli import main
from spacy_softprompt.cli.annotate import STOP_ENV

from conftest import RELATIONS, TEXTS, annotate, fit_pipeline

NOTES = [t for t, _ in TEXTS] + ["Metformin was stopped because of diarrhea."]


@pytest.fixture(scope="module")
def pipeline(tiny_bert, tmp_path_factory):
    """Barely trained, with low thresholds, so that concepts and relations appear."""
    blank = spacy.blank("en")
    docs = [annotate(blank, t, m, RELATIONS.get(i, ())) for i, (t, m) in enumerate(TEXTS)]
    nlp = fit_pipeline(docs, 10, threshold=0.3, relation_threshold=0.3,
                       model={"backbone": tiny_bert, "strategy": "none", "freeze_backbone": False})
    path = tmp_path_factory.mktemp("annotate") / "pipeline"
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="module")
def nlp(pipeline):
    return spacy.load(pipeline)


@pytest.fixture
def notes_folder(tmp_path):
    """Five good notes in nested folders, one not UTF-8, one empty, one whitespace only."""
    folder = tmp_path / "notes"
    names = ["a.txt", "b/c.txt", "b/d/e.txt", "f.txt", "g.txt"]
    for name, text in zip(names, NOTES):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf8")
    (folder / "b" / "bad.txt").write_bytes(b"caf\xe9 au lait")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "blank.txt").write_text("  \n\t")
    (folder / "skip.md").write_text("not a note")
    return folder


def lines(path: Path) -> list:
    return [json.loads(line) for line in path.read_text(encoding="utf8").splitlines()]


def assert_same(records: list, expected: list) -> None:
    """Equal records, scores to 1e-5: a note annotated alone and in a batch differs in their last digits."""
    def split(record: dict) -> tuple:
        record = json.loads(json.dumps(record))
        return record, [c.pop("score") for c in record["concepts"]] + [r.pop("score") for r in record["relations"]]

    got, want = zip(*map(split, records)), zip(*map(split, expected))
    (got_records, got_scores), (want_records, want_scores) = got, want
    assert got_records == want_records
    assert sum(got_scores, []) == pytest.approx(sum(want_scores, []), abs=1e-5)


def shard_records(out: Path) -> list:
    return [record for shard in sorted(out.glob("part-*.jsonl")) for record in lines(shard)]


def test_folder_gives_nlp_records_in_shards_and_bad_notes_in_errors(pipeline, nlp, notes_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["annotate", str(pipeline), str(notes_folder), str(out), "--shard-size", "3"]) == 0
    order = ["a.txt", "b/bad.txt", "b/c.txt", "b/d/e.txt", "blank.txt", "empty.txt", "f.txt", "g.txt"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(s["name"], s["notes"], s["errors"]) for s in manifest["shards"]] == [
        ("part-00000.jsonl", 2, 1), ("part-00001.jsonl", 1, 2), ("part-00002.jsonl", 2, 0)]
    assert manifest["pipeline"] == str(pipeline.resolve()) and manifest["options"]["shard_size"] == 3
    records = shard_records(out)
    texts = {name: (notes_folder / name).read_text() for name in ["a.txt", "b/c.txt", "b/d/e.txt", "f.txt", "g.txt"]}
    assert [r["id"] for r in records] == [name for name in order if name in texts]
    assert_same(records, [doc_to_record(nlp(texts[r["id"]]), r["id"]) for r in records])
    assert any(r["concepts"] for r in records) and any(r["relations"] for r in records)
    concept = next(c for r in records for c in r["concepts"])
    assert set(concept) == {"label", "start", "end", "text", "score"}
    errors = lines(out / "errors.jsonl")
    assert [e["id"] for e in errors] == ["b/bad.txt", "blank.txt", "empty.txt"]
    assert errors[0]["reason"].startswith("not UTF-8") and errors[1]["reason"] == "empty or whitespace only"
    assert "8 notes read, 5 annotated, 3 failed" in capsys.readouterr().err
    assert not list(out.glob("*.tmp"))


def test_jsonl_columns_max_chars_and_a_bad_line(pipeline, nlp, tmp_path, capsys):
    table = tmp_path / "notes.jsonl"
    rows = [{"note_id": i, "body": text} for i, text in enumerate(NOTES)] + [{"note_id": "x", "body": None}]
    table.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n")
    out = tmp_path / "out"
    arguments = ["annotate", str(pipeline), str(table), str(out), "--id-column", "note_id", "--text-column", "body",
                 "--max-chars", "45", "--no-text"]
    assert main(arguments) == 0
    records = shard_records(out)
    kept = [i for i, text in enumerate(NOTES) if len(text) <= 45]
    assert [r["id"] for r in records] == [str(i) for i in kept] and len(kept) < len(NOTES)
    assert_same(records, [doc_to_record(nlp(NOTES[i]), str(i), with_text=False) for i in kept])
    errors = lines(out / "errors.jsonl")
    assert [e["id"] for e in errors] == [str(i) for i in range(len(NOTES)) if i not in kept] + ["x"]
    assert "over --max-chars 45" in errors[0]["reason"]
    with pytest.raises(ValueError, match="has no text"):
        record_to_doc(records[0], nlp)

    table.write_text(json.dumps({"id": 1, "text": "ok"}) + "\n\n{not json\n")
    assert main(["annotate", str(pipeline), str(table), str(tmp_path / "bad")]) == 2
    assert f"error: {table}, line 3: not a JSON record" in capsys.readouterr().err


def run_cli(pipeline: Path, notes: Path, out: Path, env: dict) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "spacy_softprompt", "annotate", str(pipeline), str(notes), str(out),
               "--shard-size", "2"]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env})


def test_killed_run_resumes_to_the_records_of_an_uninterrupted_one(pipeline, notes_folder, tmp_path, capsys):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert main(["annotate", str(pipeline), str(notes_folder), str(whole), "--shard-size", "2"]) == 0
    killed = run_cli(pipeline, notes_folder, resumed, {STOP_ENV: "1"})
    assert killed.returncode == 1, killed.stderr
    assert [s["name"] for s in json.loads((resumed / "manifest.json").read_text())["shards"]] == ["part-00000.jsonl"]
    # what a kill in the middle of the next shard leaves: its errors written, its shard half written
    with (resumed / "errors.jsonl").open("a") as errors:
        errors.write(json.dumps({"id": "blank.txt", "reason": "empty or whitespace only"}) + "\n")
    (resumed / "part-00001.jsonl.tmp").write_text('{"id": "b/d/e.txt", "n_ch')
    capsys.readouterr()
    assert main(["annotate", str(pipeline), str(notes_folder), str(resumed), "--shard-size", "2"]) == 0
    assert "(1 finished shard(s) of an earlier run kept)" in capsys.readouterr().err
    for name in ["manifest.json", "errors.jsonl", *(p.name for p in whole.glob("part-*.jsonl"))]:
        assert (resumed / name).read_text() == (whole / name).read_text(), name
    assert sorted(p.name for p in resumed.glob("part-*.jsonl")) == sorted(p.name for p in whole.glob("part-*.jsonl"))

    # a finished run re-run: nothing to do, nothing changes
    assert main(["annotate", str(pipeline), str(notes_folder), str(resumed), "--shard-size", "2"]) == 0
    assert shard_records(resumed) == shard_records(whole)


def test_another_runs_folder_is_refused_unless_overwrite(pipeline, notes_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["annotate", str(pipeline), str(notes_folder), str(out), "--shard-size", "2"]) == 0
    capsys.readouterr()
    assert main(["annotate", str(pipeline), str(notes_folder), str(out), "--shard-size", "4"]) == 2
    err = capsys.readouterr().err
    assert "holds the output of another run" in err and "--overwrite" in err
    assert main(["annotate", str(pipeline), str(notes_folder), str(out), "--shard-size", "4", "--overwrite"]) == 0
    assert sorted(p.name for p in out.glob("part-*.jsonl")) == ["part-00000.jsonl", "part-00001.jsonl"]


def test_jsonl_round_trip_back_to_docs(pipeline, nlp, notes_folder, tmp_path):
    import medspacy  # noqa: F401  (registers ConText's span flags)

    out = tmp_path / "out"
    assert main(["annotate", str(pipeline), str(notes_folder), str(out), "--shard-size", "2"]) == 0
    read = list(read_jsonl(out, nlp))
    assert [doc._.doc_id for doc in read] == [r["id"] for r in shard_records(out)]
    for doc in read:
        expected = nlp((notes_folder / doc._.doc_id).read_text())
        assert_same([doc_to_record(doc, doc._.doc_id)], [doc_to_record(expected, doc._.doc_id)])
        assert [(e.start, e.end, e.label_) for e in doc.ents] == [(e.start, e.end, e.label_) for e in expected.ents]
        assert [r.key() for r in doc._.relations] == [r.key() for r in expected._.relations]

    # what the pipeline above does not set: attributes, ConText flags, cats
    doc = annotate(spacy.blank("en"), TEXTS[1][0], TEXTS[1][1], RELATIONS[1])
    from spacy_softprompt import set_span_attributes

    span = doc.spans["softprompt"][0]
    set_span_attributes(span, {"Certainty": "possible"})
    span._.is_negated = True
    doc.cats = {"ADE": 1.0}
    record = json.loads(json.dumps(doc_to_record(doc, "n1")))
    assert record["concepts"][0]["attributes"] == {"Certainty": "possible"} and record["concepts"][0]["is_negated"]
    back = record_to_doc(record, nlp)
    assert doc_to_record(back, "n1") == record and back.spans["softprompt"][0]._.is_negated
