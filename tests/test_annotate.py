"""``annotate``: folder and JSONL input, bad notes, shards and manifest, kill and resume, JSONL -> Docs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import spacy

from spacy_softprompt.annotate import doc_to_record, read_annotations, record_to_doc
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
    err = capsys.readouterr().err  # this run's counts; the earlier run's apart
    assert "6 notes read, 4 annotated, 2 failed" in err
    assert "kept from an earlier run: 1 finished shard(s), 1 notes annotated, 1 failed" in err
    for name in ["manifest.json", "errors.jsonl", *(p.name for p in whole.glob("part-*.jsonl"))]:
        assert (resumed / name).read_text() == (whole / name).read_text(), name
    assert sorted(p.name for p in resumed.glob("part-*.jsonl")) == sorted(p.name for p in whole.glob("part-*.jsonl"))

    # a finished run re-run: nothing to do, nothing changes
    assert main(["annotate", str(pipeline), str(notes_folder), str(resumed), "--shard-size", "2"]) == 0
    assert shard_records(resumed) == shard_records(whole)
    assert "0 notes read, 0 annotated, 0 failed" in capsys.readouterr().err


def test_another_runs_folder_is_refused_unless_overwrite(pipeline, notes_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["annotate", str(pipeline), str(notes_folder), str(out), "--shard-size", "2"]) == 0
    capsys.readouterr()
    assert main(["annotate", str(pipeline), str(notes_folder), str(out), "--shard-size", "4"]) == 2
    err = capsys.readouterr().err
    assert "holds the output of another run" in err and "--overwrite" in err
    assert main(["annotate", str(pipeline), str(notes_folder), str(out), "--shard-size", "4", "--overwrite"]) == 0
    assert sorted(p.name for p in out.glob("part-*.jsonl")) == ["part-00000.jsonl", "part-00001.jsonl"]


def test_a_pipeline_retrained_in_place_is_not_resumed_with(pipeline, notes_folder, tmp_path, capsys):
    """The settings named the pipeline's path alone: one retrained there was resumed with, the records
    mixing two models' predictions."""
    import shutil

    copy, out = tmp_path / "pipeline", tmp_path / "out"
    shutil.copytree(pipeline, copy)
    arguments = ["annotate", str(copy), str(notes_folder), str(out), "--shard-size", "2"]
    assert main(arguments) == 0
    assert main(arguments) == 0  # the same pipeline: resumed (nothing left to do)
    weights = next(copy.rglob("*.safetensors"))
    weights.write_bytes(weights.read_bytes())  # written again, as a retraining writes it
    os.utime(weights, ns=(0, 0))
    capsys.readouterr()
    assert main(arguments) == 2
    assert "(its files changed since: retrained or replaced)" in capsys.readouterr().err


def test_overwrite_removes_the_runs_files_and_no_other(pipeline, tmp_path, capsys):
    """--overwrite once removed every .json/.jsonl/.parquet in the folder: the input beside the output too;
    and it removed nothing where a Ray run, cut short, had written records but no manifest."""
    out = tmp_path / "out"
    out.mkdir()
    table, config = out / "notes.jsonl", out / "study.json"
    table.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(NOTES)))
    config.write_text("{}")
    arguments = ["annotate", str(pipeline), str(table), str(out), "--shard-size", "2"]
    assert main(arguments) == 0
    records = shard_records(out)
    assert [r["id"] for r in records] == [str(i) for i in range(len(NOTES))]
    from spacy_softprompt.annotate import iter_records

    assert list(iter_records(out)) == records  # the input and other files in the folder are not records
    ray_left = out / "part-ray_1f2e_000000.json"
    ray_left.write_text(json.dumps({"id": "ghost", "n_chars": 0, "concepts": [], "relations": []}) + "\n")
    (out / "manifest.json").unlink()
    assert main([*arguments, "--overwrite"]) == 0
    assert table.is_file() and config.is_file() and not ray_left.exists()
    assert list(iter_records(out)) == records


def test_bad_unicode_goes_to_errors_and_bad_tables_are_named(pipeline, tmp_path, capsys):
    table = tmp_path / "notes.jsonl"
    table.write_bytes(b'{"id": "ok", "text": "Aspirin caused nausea."}\n'
                      b'{"id": "surrogate", "text": "pain \\ud83d aspirin"}\n'
                      b'{"id": "latin1", "text": "caf\xe9 nausea"}\n'
                      b'{"id": "null", "text": null}\n')
    out = tmp_path / "out"
    assert main(["annotate", str(pipeline), str(table), str(out)]) == 0
    assert [r["id"] for r in shard_records(out)] == ["ok"]
    reasons = {e["id"]: e["reason"] for e in lines(out / "errors.jsonl")}
    assert reasons == {"surrogate": "not valid Unicode (a lone surrogate at character 5)",
                       "latin1": "not UTF-8 (invalid continuation byte at byte 29 of the line)",
                       "null": "empty or whitespace only"}
    capsys.readouterr()
    for content, message in (
            (b'{"id": 1, "text": "ok"}\n{"id": 2, "body": "no text field"}\n', "line 2: no 'text' field"),
            (b'\n[{"id": 1, "text": "an array"}]\n', "a JSON array; annotate reads JSON Lines"),
            (b'{"id": "caf\xe9", "text": "ok"}\n', "line 1: its 'id' is not UTF-8"),
            (b'{"id": "\\udc80", "text": "ok"}\n', "line 1: id '\\\\udc80' is not valid Unicode"),
            (b'"Warfarin led to bleeding."\n', "line 1: not a JSON object (str)")):
        table.write_bytes(content)
        assert main(["annotate", str(pipeline), str(table), str(tmp_path / "bad")]) == 2
        assert f"error: {table}" in (err := capsys.readouterr().err) and message in err, err


def test_resuming_a_grown_input_gives_an_uninterrupted_runs_shards(pipeline, notes_folder, tmp_path, capsys):
    """A run that ended on a short shard, resumed on an input that grew, once started a new shard after it
    (shards of 2, 1, 2 where one run gives 2, 2, 1): the short shard is annotated again, filled."""
    grown, whole = tmp_path / "grown", tmp_path / "whole"
    arguments = ["--shard-size", "3"]
    assert main(["annotate", str(pipeline), str(notes_folder), str(grown), *arguments]) == 0
    (notes_folder / "zz.txt").write_text("Aspirin caused nausea.")
    (notes_folder / "zzz.txt").write_text("Metformin caused diarrhea.")
    assert main(["annotate", str(pipeline), str(notes_folder), str(grown), *arguments]) == 0
    assert main(["annotate", str(pipeline), str(notes_folder), str(whole), *arguments]) == 0
    for name in ["manifest.json", "errors.jsonl", *(p.name for p in whole.glob("part-*.jsonl"))]:
        assert (grown / name).read_text().replace(str(grown), "") == (whole / name).read_text().replace(str(whole), ""), name


def test_brat_resume_keeps_the_earlier_notes_file_names(pipeline, tmp_path):
    """A resumed brat run once forgot the names the earlier run wrote: a later note with the same name
    overwrote an earlier note's files."""
    table, out = tmp_path / "notes.jsonl", tmp_path / "brat"
    table.write_text(json.dumps({"id": "a", "text": NOTES[0]}) + "\n")
    arguments = ["annotate", str(pipeline), str(table), str(out), "--format", "brat", "--shard-size", "1"]
    assert main(arguments) == 0
    with table.open("a") as more:
        more.write(json.dumps({"id": "a.txt", "text": NOTES[1]}) + "\n")
    assert main(arguments) == 0
    assert (out / "a.txt").read_text() == NOTES[0]
    assert [e["id"] for e in lines(out / "errors.jsonl")] == ["a.txt"]
    assert lines(out / "errors.jsonl")[0]["reason"].startswith("a note before it has the brat file name 'a'")


def test_a_changed_short_last_shard_is_refused_when_the_input_grows(pipeline, tmp_path, capsys):
    """The short last shard was made again without a check: its note replaced by others, the run resumed and the
    replaced note's brat pair stayed in the folder, listed nowhere."""
    table, out = tmp_path / "notes.jsonl", tmp_path / "brat"
    write = lambda ids: table.write_text("".join(json.dumps({"id": i, "text": NOTES[0]}) + "\n" for i in ids))  # noqa: E731
    arguments = ["annotate", str(pipeline), str(table), str(out), "--format", "brat", "--shard-size", "2"]
    write("abc")
    assert main(arguments) == 0
    write("abcd")  # grown: the short shard [c] is made again as [c, d]
    assert main(arguments) == 0
    assert [s["files"] for s in json.loads((out / "manifest.json").read_text())["shards"]] == [["a", "b"], ["c", "d"]]
    write("abcde")
    assert main(arguments) == 0
    write("abcdxy")  # grown, and the short shard's note replaced: refused, as any other changed note
    capsys.readouterr()
    assert main(arguments) == 2
    assert "its notes 5 to 5 are not the ones its shard part-00002 was made from" in capsys.readouterr().err
    assert not (out / "x.ann").exists()


def test_records_a_manifest_does_not_list_are_refused(pipeline, tmp_path, capsys):
    """A Ray run cut short leaves record files and no manifest: a later run wrote beside them, and reading the folder
    gave both runs' records."""
    table, out = tmp_path / "notes.jsonl", tmp_path / "out"
    table.write_text(json.dumps({"id": "n0", "text": NOTES[0]}) + "\n")
    out.mkdir()
    (out / "part-ray_abc123_000000.json").write_text(json.dumps({"id": "n0", "text": "old"}) + "\n")
    assert main(["annotate", str(pipeline), str(table), str(out)]) == 2
    assert "holds records of a run that left no manifest (part-ray_abc123_000000.json" in capsys.readouterr().err
    assert main(["annotate", str(pipeline), str(table), str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["errors.jsonl", "manifest.json", "part-00000.jsonl"]


def test_brat_output_in_the_input_folder_says_why(pipeline, notes_folder, capsys):
    assert main(["annotate", str(pipeline), str(notes_folder), str(notes_folder), "--format", "brat"]) == 2
    assert "is the input folder: each note's .txt written there would replace the note itself" in capsys.readouterr().err


def test_brat_ids_naming_one_file_are_told_apart(pipeline, tmp_path):
    """'./a' and 'a', 'x//y' and 'x/y' named the same files: the second overwrote the first, both counted annotated."""
    table, out = tmp_path / "notes.jsonl", tmp_path / "brat"
    ids = ["a", "./a", "x//y", "x/y", "A", "./b/"]
    table.write_text("".join(json.dumps({"id": i, "text": NOTES[k % 2]}) + "\n" for k, i in enumerate(ids)))
    assert main(["annotate", str(pipeline), str(table), str(out), "--format", "brat"]) == 0
    assert [e["id"] for e in lines(out / "errors.jsonl")] == ["./a", "x/y", "A", "./b/"]
    assert (out / "a.txt").read_text() == NOTES[0] and (out / "x" / "y.txt").read_text() == NOTES[0]
    assert json.loads((out / "manifest.json").read_text())["shards"][0]["files"] == ["a", "x/y"]


def test_ray_options_are_refused_by_the_local_engine_and_upper_case_txt_is_read(pipeline, tmp_path, capsys):
    notes, out = tmp_path / "notes", tmp_path / "out"
    notes.mkdir()
    (notes / "A.TXT").write_text(NOTES[0])
    (notes / "b.txt").write_text(NOTES[1])
    for option in (["--workers", "4"], ["--gpus-per-worker", "1"], ["--ray-address", "auto"]):
        assert main(["annotate", str(pipeline), str(notes), str(out), *option]) == 2
        assert "options of --engine ray" in capsys.readouterr().err
    assert main(["annotate", str(pipeline), str(notes), str(out)]) == 0
    assert [r["id"] for r in shard_records(out)] == ["A.TXT", "b.txt"]


def test_a_note_added_before_where_a_run_resumes_is_refused(pipeline, notes_folder, tmp_path, capsys):
    """Resuming skips as many notes as the finished shards hold: a note added before that point once shifted them
    (one annotated twice, the new one never); added after it, it is simply annotated next."""
    notes, out = notes_folder, tmp_path / "out"  # a folder of this test's own
    arguments = ["annotate", str(pipeline), str(notes), str(out), "--shard-size", "2"]
    assert main(arguments) == 0
    before = len(shard_records(out))
    (notes / "zz.txt").write_text("Aspirin caused nausea.")  # sorts last: read after every finished shard
    capsys.readouterr()
    assert main(arguments) == 0
    assert [r["id"] for r in shard_records(out)][before:] == ["zz.txt"]
    (notes / "0.txt").write_text("Ibuprofen caused a rash.")  # sorts first: every note after it moves
    assert main(arguments) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "the input changed since the earlier run" in err and "its notes 1 to 2 are not the ones its shard" in err


def test_resume_refuses_changed_notes_and_missing_shards(pipeline, notes_folder, tmp_path, capsys):
    """Resuming checked one note id where the finished shards end: a note rewritten in place, or removed and
    another added, kept the old records; a shard file deleted since was taken as done, its notes lost."""
    out = tmp_path / "out"
    arguments = ["annotate", str(pipeline), str(notes_folder), str(out), "--shard-size", "2"]
    assert main(arguments) == 0
    (notes_folder / "f.txt").write_text("Warfarin led to bleeding.")  # same name, same place, new text
    capsys.readouterr()
    assert main(arguments) == 2
    assert "its notes 7 to 8 are not the ones its shard part-00003.jsonl was made from" in capsys.readouterr().err
    assert main([*arguments, "--overwrite"]) == 0
    (out / "part-00001.jsonl").unlink()
    assert main(arguments) == 2
    assert "(part-00001.jsonl missing, where its manifest counts 2 annotated notes" in capsys.readouterr().err
    assert main([*arguments, "--overwrite"]) == 0
    shard = out / "part-00003.jsonl"
    shard.write_text(shard.read_text().splitlines(keepends=True)[0])
    assert main(arguments) == 2
    assert "(1 records in part-00003.jsonl, where its manifest counts 2" in capsys.readouterr().err


def test_an_error_id_with_a_line_separator_survives_a_resume(pipeline, tmp_path):
    """errors.jsonl was split with str.splitlines, which also splits on U+2028: a resumed run wrote a broken line."""
    table, out = tmp_path / "notes.jsonl", tmp_path / "out"
    table.write_text(json.dumps({"id": "a\u2028b", "text": ""}) + "\n" + json.dumps({"id": "c", "text": NOTES[0]}) + "\n")
    arguments = ["annotate", str(pipeline), str(table), str(out), "--shard-size", "1"]
    assert main(arguments) == 0
    with table.open("a") as more:
        more.write(json.dumps({"id": "d", "text": " "}) + "\n")
    assert main(arguments) == 0
    errors = (out / "errors.jsonl").read_text(encoding="utf8").split("\n")
    assert [json.loads(line)["id"] for line in errors if line] == ["a\u2028b", "d"]


def test_an_older_manifest_resumes_by_its_last_ids(pipeline, notes_folder, tmp_path, capsys):
    """A manifest of the annotate before digests (each shard's last note id) is resumed, not refused."""
    out = tmp_path / "out"
    arguments = ["annotate", str(pipeline), str(notes_folder), str(out), "--shard-size", "2"]
    assert main(arguments) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    read = [n for n in sorted(p.relative_to(notes_folder).as_posix() for p in notes_folder.rglob("*.txt"))]
    for k, shard in enumerate(manifest["shards"]):
        shard.pop("digest")
        shard["last_id"] = read[2 * k + 1]
    (out / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(arguments) == 0 and "kept from an earlier run: 4 finished shard(s)" in capsys.readouterr().err
    (notes_folder / "0.txt").write_text("Ibuprofen caused a rash.")  # every note after it moves
    assert main(arguments) == 2


def test_odd_folder_entries_are_not_notes(tmp_path):
    """A file named just '.txt' was read as a note whose brat name is empty; a linked folder named x.txt stopped
    the run as a broken link, though linked folders are not followed."""
    from spacy_softprompt.annotate.notes import txt_files
    from spacy_softprompt.annotate.shards import brat_stem

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    (tmp_path / "notes" / ".txt").write_text("x")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "notes" / "x.txt").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert [p.name for p in txt_files(tmp_path / "notes")] == ["a.txt"]
    for note_id in (".txt", "b/.txt"):
        with pytest.raises(ValueError, match="leaves no file name"):
            brat_stem(note_id)


def test_a_repeated_id_goes_to_errors_also_across_a_resume(pipeline, tmp_path):
    """Two notes with one id were two records with that id, which nothing downstream could tell apart."""
    table, out = tmp_path / "notes.jsonl", tmp_path / "out"
    table.write_text("".join(json.dumps({"id": i, "text": NOTES[0]}) + "\n" for i in ("1", "2", "1")))
    arguments = ["annotate", str(pipeline), str(table), str(out), "--shard-size", "2"]
    assert main(arguments) == 0
    with table.open("a") as more:
        more.write(json.dumps({"id": "2", "text": NOTES[1]}) + "\n")  # the earlier "2" is in a finished shard
    assert main(arguments) == 0
    assert [r["id"] for r in shard_records(out)] == ["1", "2"]
    assert lines(out / "errors.jsonl") == [{"id": i, "reason": "an earlier note has the same id"} for i in ("1", "2")]

def test_unreadable_parts_of_a_folder_are_refused(pipeline, notes_folder, tmp_path, monkeypatch, capsys):
    """A .txt link pointing nowhere, or a sub-folder that cannot be listed, was left out without a word."""
    from spacy_softprompt.annotate import notes as notes_module

    out = tmp_path / "out"
    (notes_folder / "x.txt").symlink_to(tmp_path / "nowhere.txt")
    assert main(["annotate", str(pipeline), str(notes_folder), str(out)]) == 2
    assert f"{notes_folder / 'x.txt'}: not a file that can be read (a broken link?)" in capsys.readouterr().err
    (notes_folder / "x.txt").unlink()
    scandir = os.scandir

    def locked(path):
        if Path(path) == notes_folder / "b" / "d":
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(notes_module.os, "scandir", locked)
    assert main(["annotate", str(pipeline), str(notes_folder), str(out)]) == 2
    assert f"{notes_folder / 'b' / 'd'}: the folder cannot be read (Permission denied)" in capsys.readouterr().err
    assert not out.exists()


def test_output_folders_that_would_go_wrong_are_refused_before_the_work(pipeline, notes_folder, tmp_path, capsys):
    """Brat output inside the input folder was read as notes by the next run; a file as the output failed after a
    shard's work; a damaged manifest was a traceback, even with --overwrite."""
    inside = notes_folder / "ann"
    assert main(["annotate", str(pipeline), str(notes_folder), str(inside), "--format", "brat"]) == 2
    assert "is inside the input folder" in capsys.readouterr().err and not inside.exists()
    (tmp_path / "file").write_text("x")
    assert main(["annotate", str(pipeline), str(notes_folder), str(tmp_path / "file")]) == 2
    assert f"{tmp_path / 'file'} is a file; the output is a folder" in capsys.readouterr().err
    out = tmp_path / "out"
    out.mkdir()
    for damaged in ('{"version": 1,', '["a"]'):
        (out / "manifest.json").write_text(damaged)
        assert main(["annotate", str(pipeline), str(notes_folder), str(out)]) == 2
        assert f"{out / 'manifest.json'}: not an annotate manifest" in capsys.readouterr().err
    assert main(["annotate", str(pipeline), str(notes_folder), str(out), "--overwrite"]) == 0


def test_jsonl_round_trip_back_to_docs(pipeline, nlp, notes_folder, tmp_path):
    import medspacy  # noqa: F401  (registers ConText's span flags)

    out = tmp_path / "out"
    assert main(["annotate", str(pipeline), str(notes_folder), str(out), "--shard-size", "2"]) == 0
    read = list(read_annotations(out, nlp))
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


def test_context_flags_read_back_without_medspacy_imported(nlp):
    """The flags were dropped in silence where medspaCy had not registered them in the reading process."""
    from spacy.tokens import Span

    saved = Span.get_extension("is_negated")
    if saved is not None:
        Span.remove_extension("is_negated")
    try:
        record = {"id": "n", "text": "No nausea.", "relations": [],
                  "concepts": [{"start": 3, "end": 9, "label": "AE", "score": 0.9, "is_negated": True}]}
        back = record_to_doc(record, nlp)
        assert back.spans["softprompt"][0]._.is_negated and doc_to_record(back, "n")["concepts"][0]["is_negated"]
    finally:
        Span.remove_extension("is_negated")
        if saved is not None:
            Span.set_extension("is_negated", default=saved[0], force=True)


def test_parquet_and_docbin_inputs_give_the_jsonl_inputs_records(pipeline, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from spacy.tokens import DocBin

    rows = [{"note_id": f"n{i}", "body": text} for i, text in enumerate(NOTES)] + [{"note_id": "x", "body": " "}]
    jsonl, parquet, docbin = tmp_path / "notes.jsonl", tmp_path / "notes.parquet", tmp_path / "notes.spacy"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    blank = spacy.blank("en")
    docs = [blank.make_doc(row["body"]) for row in rows]
    for doc, row in zip(docs, rows):
        doc._.doc_id = row["note_id"]
    DocBin(store_user_data=True, docs=docs).to_disk(docbin)
    columns = ["--id-column", "note_id", "--text-column", "body"]
    outputs = {}
    for path in (jsonl, parquet, docbin):
        out = tmp_path / f"out-{path.suffix[1:]}"
        assert main(["annotate", str(pipeline), str(path), str(out), "--shard-size", "3", *columns]) == 0
        outputs[path.suffix] = (shard_records(out), lines(out / "errors.jsonl"))
    assert outputs[".parquet"] == outputs[".jsonl"] == outputs[".spacy"]
    assert outputs[".jsonl"][1] == [{"id": "x", "reason": "empty or whitespace only"}]

    capsys.readouterr()
    assert main(["annotate", str(pipeline), str(parquet), str(tmp_path / "bad")]) == 2
    assert f"error: {parquet}: no column 'id' (columns: note_id, body; pass --id-column)" in capsys.readouterr().err
    (tmp_path / "notes.csv").write_text("id,text\n")
    assert main(["annotate", str(pipeline), str(tmp_path / "notes.csv"), str(tmp_path / "bad")]) == 2
    assert ".csv is not one of" in capsys.readouterr().err


def test_parquet_output_holds_the_jsonl_records_and_reads_back(pipeline, nlp, notes_folder, tmp_path):
    import medspacy  # noqa: F401  (ConText's flags round-trip through the schema)
    import pyarrow.parquet as pq
    from spacy_softprompt.annotate import iter_records
    from spacy_softprompt.annotate.records import records_to_table, table_to_records

    as_jsonl, as_parquet = tmp_path / "jsonl", tmp_path / "parquet"
    for out, fmt in ((as_jsonl, "jsonl"), (as_parquet, "parquet")):
        assert main(["annotate", str(pipeline), str(notes_folder), str(out), "--shard-size", "2", "--format", fmt]) == 0
    assert sorted(p.name for p in as_parquet.glob("part-*")) == [f"part-0000{i}.parquet" for i in range(4)]
    table = pq.read_table([str(p) for p in sorted(as_parquet.glob("part-*.parquet"))])  # one table
    assert table.num_rows == 5 and table.column_names[:3] == ["id", "n_chars", "text"]
    assert list(iter_records(as_parquet)) == shard_records(as_jsonl)
    assert [doc_to_record(d, d._.doc_id) for d in read_annotations(as_parquet, nlp)] == shard_records(as_jsonl)
    assert lines(as_parquet / "errors.jsonl") == lines(as_jsonl / "errors.jsonl")

    doc = annotate(spacy.blank("en"), TEXTS[1][0], TEXTS[1][1], RELATIONS[1])
    from spacy_softprompt import set_span_attributes

    set_span_attributes(doc.spans["softprompt"][0], {"Certainty": "possible"})
    doc.spans["softprompt"][1]._.is_negated = True
    doc.cats = {"ADE": 1.0, "none": 0.0}
    record = doc_to_record(doc, "n1")
    assert table_to_records(records_to_table([record])) == [record]


def test_brat_output_reads_back_with_tail_first_and_bad_ids_in_errors(pipeline, nlp, tmp_path):
    from spacy_softprompt.corpora.brat import read_brat

    table = tmp_path / "notes.jsonl"
    ids = ["notes/a.txt", "b", "../escape", "/abs"]
    table.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(ids, NOTES)))
    out = tmp_path / "brat"
    assert main(["annotate", str(pipeline), str(table), str(out), "--format", "brat", "--tail-first",
                 "--relation-map", "Drug-AE=ADE-Drug"]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.ann")) == ["b.ann", "notes/a.ann"]
    assert [e["id"] for e in lines(out / "errors.jsonl")] == ["../escape", "/abs"]
    assert "not a relative path" in lines(out / "errors.jsonl")[0]["reason"]
    docs, _ = read_brat(out, spacy.blank("en"), relation_map={"ADE-Drug": "Drug-AE"}, head_types=["Drug"])
    back = {doc._.doc_id: doc for doc in docs}
    for note_id, name in (("notes/a.txt", "notes/a"), ("b", "b")):
        expected = doc_to_record(nlp(NOTES[ids.index(note_id)]), note_id)
        got = doc_to_record(back[name], note_id)
        for record in (expected, got):
            for item in record["concepts"] + record["relations"]:
                item.pop("score")
        assert got == expected
    for ann in out.rglob("*.ann"):  # n2c2 2018 order: Arg1 the attribute, Arg2 the Drug
        lines_ = [line.split("\t") for line in ann.read_text().splitlines()]
        labels = {fields[0]: fields[1].split()[0] for fields in lines_ if fields[0].startswith("T")}
        for fields in lines_:
            if fields[0].startswith("R"):
                label, arg1, arg2 = fields[1].split()
                assert label in ("ADE-Drug", "Drug-Dose") and labels[arg2[5:]] == "Drug" != labels[arg1[5:]]


def test_brat_ids_that_name_no_file_go_to_errors_and_overwrite_removes_the_pairs(pipeline, tmp_path):
    """An id too long for a file name, or holding a NUL, stopped the whole run; --overwrite left the earlier
    run's pairs beside the new ones."""
    table, out = tmp_path / "notes.jsonl", tmp_path / "brat"
    table.write_text("".join(json.dumps({"id": i, "text": NOTES[0]}) + "\n" for i in ("x" * 300, "a\0b", "c")))
    assert main(["annotate", str(pipeline), str(table), str(out), "--format", "brat"]) == 0
    reasons = [e["reason"] for e in lines(out / "errors.jsonl")]
    assert "longer than a file name may be" in reasons[0] and "not a relative path" in reasons[1]
    assert (out / "c.ann").is_file()
    (out / "mine.txt").write_text("not the run's")
    table.write_text(json.dumps({"id": "new", "text": NOTES[0]}) + "\n")
    assert main(["annotate", str(pipeline), str(table), str(out), "--format", "brat", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["errors.jsonl", "manifest.json", "mine.txt", "new.ann", "new.txt"]


@pytest.mark.slow
def test_ray_engine_gives_the_local_records_and_errors(pipeline, notes_folder, tmp_path, capsys):
    pytest.importorskip("ray")
    from spacy_softprompt.annotate import iter_records

    local = tmp_path / "local"
    (notes_folder / "_b.txt").write_text(NOTES[1])  # Ray's own folder listing skipped these two
    (notes_folder / "b" / ".c.TXT").write_text(NOTES[2])
    assert main(["annotate", str(pipeline), str(notes_folder), str(local), "--shard-size", "3"]) == 0
    for fmt in ("jsonl", "parquet"):
        out = tmp_path / f"ray-{fmt}"
        capsys.readouterr()
        assert main(["annotate", str(pipeline), str(notes_folder), str(out), "--engine", "ray", "--format", fmt,
                     "--batch-size", "2"]) == 0
        err = capsys.readouterr().err
        assert "10 notes read, 7 annotated, 3 failed" in err, err[-300:]
        by_id = lambda records: sorted(records, key=lambda r: r["id"])  # noqa: E731
        assert_same(by_id(iter_records(out)), by_id(shard_records(local)))
        assert by_id(iter_records(out / "errors")) == by_id(lines(local / "errors.jsonl"))
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["engine"] == "ray" and manifest["notes"] == 7 and manifest["errors"] == 3
    assert main(["annotate", str(pipeline), str(notes_folder), str(out), "--engine", "ray"]) == 2
    assert "a Ray run is not resumed" in capsys.readouterr().err


@pytest.mark.slow
def test_ray_engine_leaves_out_every_note_of_a_repeated_id(pipeline, tmp_path, capsys):
    """The local engine sent a repeated id to the errors; Ray annotated both notes into two records with one id."""
    pytest.importorskip("ray")
    from spacy_softprompt.annotate import iter_records
    from spacy_softprompt.annotate.ray_engine import REPEATED_ID

    table, out = tmp_path / "notes.jsonl", tmp_path / "out"
    rows = [("a", NOTES[0]), ("b", NOTES[1]), ("a", NOTES[2]), ("c", ""), ("c", NOTES[0])]
    table.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in rows))
    assert main(["annotate", str(pipeline), str(table), str(out), "--engine", "ray"]) == 0
    assert "5 notes read, 1 annotated, 4 failed" in capsys.readouterr().err
    assert [r["id"] for r in iter_records(out)] == ["b"]
    errors = [(r["id"], r["reason"]) for r in iter_records(out / "errors")]
    assert sorted(errors)[:3] == [("a", REPEATED_ID)] * 2 + [("c", REPEATED_ID)]
    assert [reason for i, reason in errors if i == "c" and reason != REPEATED_ID] == ["empty or whitespace only"]
