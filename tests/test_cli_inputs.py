"""Bad input to the verbs that convert, score, sample and aggregate: one ``error:`` line naming what is wrong,
before any work, never a traceback, a silently wrong result or a file overwritten (each case was reproduced by a
review: a traceback, a silent last-one-wins, or an error only after the work)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin

from spacy_softprompt.cli import main
from spacy_softprompt.cli.folds import METRICS

SENTENCE = {"tokens": ["Rash", "after", "penicillin", "."], "entities": [
    {"type": "Adverse-Effect", "start": 0, "end": 1}, {"type": "Drug", "start": 2, "end": 3}],
    "relations": [{"type": "Adverse-Effect", "head": 0, "tail": 1}], "orig_id": 1}


def error_line(err: str) -> str:
    """stderr ends with exactly one ``error: ...`` line, and holds no traceback."""
    lines = err.strip().splitlines()
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:] and "Traceback" not in err, err
    return lines[-1]


@pytest.fixture
def spert(tmp_path) -> Path:
    path = tmp_path / "toy.json"
    path.write_text(json.dumps([SENTENCE]))
    return path


@pytest.fixture
def docs(tmp_path) -> Path:
    path = tmp_path / "plain.spacy"
    DocBin(docs=[spacy.blank("en")("Aspirin caused nausea.")]).to_disk(path)
    return path


def test_outputs_in_the_way_are_refused_before_the_work(tmp_path, spert, docs, capsys):
    folder, afile = tmp_path / "folder", tmp_path / "afile"
    folder.mkdir()
    afile.write_text("")
    for argv, message in (
            # a folder in the way failed only after the whole conversion
            (["convert", "spert-json", str(spert), str(folder)], f"OUTPUT {folder} is a folder"),
            (["convert", "spert-json", str(spert), str(tmp_path / "o.spacy"), "--summary", str(folder)],
             f"--summary {folder} is a folder"),
            (["convert", "spert-json", str(spert), str(spert)], "is an input of this command"),
            (["convert", "brat", str(folder), str(tmp_path / "o.spacy"), "--split", "train", "--splits",
              str(spert), "--summary", str(spert)], f"--summary {spert} is an input of this command"),
            # the scores overwrote the gold file; --output and --markdown on one path kept only the markdown
            (["evaluate", "p", str(docs), "--output", str(docs)], f"--output {docs} is an input of this command"),
            (["evaluate", "p", str(docs), "--output", str(tmp_path / "s"), "--markdown", str(tmp_path / "s")],
             "--output and --markdown name one file"),
            (["score-brat", str(folder), str(folder), "--output", str(tmp_path / "s"), "--markdown",
              str(tmp_path / "s")], "--output and --markdown name one file"),
            # a file where the output's folder should be failed after scoring
            (["evaluate", "p", str(docs), "--output", str(afile / "s.json")], f"{afile} is a file, not a folder")):
        assert main(argv) == 2
        assert message in error_line(capsys.readouterr().err)
    assert not (tmp_path / "o.spacy").exists() and json.loads(spert.read_text()) == [SENTENCE]


def test_a_mapping_names_a_label_once(tmp_path, spert, capsys):
    """--label-map Drug=X Drug=Y wrote Y without a word (the last one won); the same for --relation-map."""
    for option in ("--label-map", "--relation-map"):
        assert main(["convert", "spert-json", str(spert), str(tmp_path / "o.spacy"), option, "Drug=X", "Drug=Y"]) == 2
        assert f"{option} maps Drug twice (Drug=X, Drug=Y)" in error_line(capsys.readouterr().err)


def test_scoring_a_folder_against_itself_or_sampling_without_concepts_is_refused(tmp_path, docs, capsys):
    folder = tmp_path / "ann"
    folder.mkdir()
    assert main(["score-brat", str(folder), str(folder)]) == 2  # (scored 100 everywhere)
    assert "is both the gold and the system folder" in error_line(capsys.readouterr().err)
    assert main(["sample", str(docs), str(tmp_path / "s.spacy"), "--shots", "2"]) == 2  # (an empty sample, exit 0)
    assert "no concepts" in error_line(capsys.readouterr().err) and not (tmp_path / "s.spacy").exists()


def test_fold_files_that_name_one_fold_twice_are_refused(tmp_path, capsys):
    """fold_1 and fold_01 (split_0 and split_00): the later file won, the other was dropped without a word."""
    source = tmp_path / "spert"
    source.mkdir()
    for name in ("toy_split_0_train.json", "toy_split_00_train.json"):
        (source / name).write_text(json.dumps([SENTENCE]))
    assert main(["convert", "spert-json", str(source), str(tmp_path / "folds"), "--folds"]) == 2
    assert "are both fold 0's train file" in error_line(capsys.readouterr().err)
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    for name in ("fold_1.json", "fold_01.json"):
        (metrics / name).write_text(json.dumps({key: 0.5 for key, _ in METRICS}))
    assert main(["folds", "aggregate", str(metrics)]) == 2
    assert "are both fold 1's scores" in error_line(capsys.readouterr().err)


@pytest.mark.parametrize("record,message", [
    ({"concepts_strict_f": float("nan")}, "concepts_strict_f nan is not a score in [0, 1]"),
    ({"concepts_strict_f": "abc"}, "concepts_strict_f 'abc' is not a score"),
    ({"concepts_strict_f": 55.0}, "concepts_strict_f 55.0 is not a score in [0, 1]"),
])
def test_aggregate_names_a_fold_score_that_is_not_one(record, message, tmp_path, capsys):
    """NaN or a string was a traceback from statistics; a percentage was averaged in as 5500."""
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "fold_0.json").write_text(json.dumps({**{key: 0.5 for key, _ in METRICS}, **record}))
    assert main(["folds", "aggregate", str(metrics)]) == 2
    assert f"{metrics / 'fold_0.json'}: {message}" in error_line(capsys.readouterr().err)


@pytest.mark.parametrize("previous", [{"systems": 5}, {"name": "x", "per_fold": 5}, {"name": "x", "per_fold": [{"fold": 3}]},
                                      [1, 2]])
def test_aggregate_names_a_previous_report_of_another_shape(previous, tmp_path, capsys):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "fold_0.json").write_text(json.dumps({key: 0.5 for key, _ in METRICS}))
    (tmp_path / "p.json").write_text(json.dumps(previous))
    assert main(["folds", "aggregate", str(metrics), "--previous", str(tmp_path / "p.json")]) == 2
    assert "not a `folds aggregate` report" in error_line(capsys.readouterr().err)


def test_a_fold_run_record_with_a_time_that_is_not_a_number_is_named(tmp_path, capsys):
    metrics, runs = tmp_path / "metrics", tmp_path / "runs" / "fold_0"
    metrics.mkdir()
    runs.mkdir(parents=True)
    (metrics / "fold_0.json").write_text(json.dumps({key: 0.5 for key, _ in METRICS}))
    (runs / "run.json").write_text(json.dumps({"train_seconds": "12"}))
    assert main(["folds", "aggregate", str(metrics), "--runs", str(tmp_path / "runs")]) == 2
    assert "train_seconds '12' is not a number" in error_line(capsys.readouterr().err)


def test_query_texts_that_would_break_the_config_are_refused(tmp_path, capsys):
    """Labels with ':' or '=' (or empty) were written into a config that then would not load; a label given twice
    kept its last question without a word."""
    for text, message in (('{"A:B": "q"}', "label 'A:B': a label cannot hold"),
                          ('{"": "q"}', "both non-empty strings"),
                          ('{"Drug": "a", "Drug": "b"}', "Drug is given more than once")):
        (tmp_path / "q.json").write_text(text)
        assert main(["init-config", str(tmp_path / "c.cfg"), "--query-texts", str(tmp_path / "q.json")]) == 2
        assert message in error_line(capsys.readouterr().err)
    assert not (tmp_path / "c.cfg").exists()


def test_counts_and_weights_out_of_range_are_refused_before_any_work(tmp_path, docs, capsys):
    """Negative steps, a 0 evaluation frequency, a batch of 0 words, an infinite weight (a config that failed to
    validate), a GPU id below -1 (run on the CPU without a word), a fold or a transfer type given twice."""
    files = [f"--{split}={docs}" for split in ("train", "dev", "test")]
    for argv, message in ((["folds", "train", "c.cfg", "--corpus", "x", "--folds", "0", "--metrics", "m",
                            "--runs", "r", "--max-steps", "-5", "--eval-frequency", "1"], "-5: must be at least 1"),
                          (["bench", *files, "--output", "b.md", "--eval-frequency", "0"], "0: must be at least 1"),
                          (["bench", *files, "--output", "b.md", "--dev-limit", "-2"], "-2: must be 0 or more"),
                          (["step-time", "--train", str(docs), "--batch-words", "0"], "0: must be at least 1"),
                          (["init-config", "-", "--head-lr-scale", "inf"], "inf: must be a finite number above 0"),
                          (["init-config", "-", "--cats-loss-weight", "inf"], "inf: must be a finite number"),
                          (["evaluate", "p", str(docs), "--gpu-id", "-7"], "-7: a GPU's number (0 or more), or -1")):
        with pytest.raises(SystemExit):
            main(argv)
        assert message in capsys.readouterr().err
    for argv, message in ((["folds", "train", "c.cfg", "--corpus", "x", "--folds", "0", "0", "--metrics", "m",
                            "--runs", "r", "--max-steps", "5", "--eval-frequency", "1"], "--folds names 0 more than once"),
                          (["bench", *files, "--output", str(tmp_path / "b.md"), "--transfer-test", str(docs),
                            "--transfer-types", "Y", "Y", "AE"], "--transfer-types names Y more than once")):
        assert main(argv) == 2
        assert message in error_line(capsys.readouterr().err)


def test_two_tasks_refuses_texts_with_no_documents_before_building_pipelines(tmp_path, docs, capsys):
    """An empty --texts was a ZeroDivisionError after both pipelines were built and measured."""
    empty = tmp_path / "empty.spacy"
    DocBin().to_disk(empty)
    assert main(["two-tasks", "--first", str(docs), "--second", str(docs), "--texts", str(empty)]) == 2
    assert f"{empty} holds no documents" in error_line(capsys.readouterr().err)


@pytest.mark.parametrize("value,message", [(float("nan"), "not the metrics JSON"), (70.0, "70.0: scores are fractions")])
def test_compare_refuses_a_score_that_is_not_a_fraction(value, message, tmp_path, capsys):
    """NaN and a percentage were tabulated as nan and 7000.0."""
    from spacy_softprompt.cli.compare import METRIC_KEYS

    (tmp_path / "pipe" / "softprompt_ie").mkdir(parents=True)
    (tmp_path / "pipe" / "softprompt_ie" / "cfg.json").write_text("{}")
    (tmp_path / "m.json").write_text(json.dumps({**{key: 0.5 for key in METRIC_KEYS}, METRIC_KEYS[0]: value}))
    assert main(["compare", f"a={tmp_path / 'pipe'}:{tmp_path / 'm.json'}"]) == 2
    assert message in error_line(capsys.readouterr().err)


def test_compare_checks_every_run_before_loading_any(tmp_path, capsys):
    """A repeated name or a malformed spec was found only after the runs before it had been loaded."""
    for runs, message in (([f"a={tmp_path}:m.json", f"a={tmp_path}:m.json"], "two runs are named a"),
                          ([f"a={tmp_path}:m.json", "b=:m.json"], "expected NAME=PIPELINE:METRICS, got 'b=:m.json'")):
        assert main(["compare", *runs]) == 2  # (the first run is no pipeline: loading it would fail first)
        assert message in error_line(capsys.readouterr().err)


def test_devices_take_any_output(tmp_path, capsys):
    """/dev/null for both outputs was accepted before the check for two outputs on one file, and still is."""
    gold = tmp_path / "gold"
    gold.mkdir()
    (gold / "a.txt").write_text("Aspirin.")
    (gold / "a.ann").write_text("T1\tDrug 0 7\tAspirin\n")
    system = tmp_path / "system"
    system.mkdir()
    for name in ("a.txt", "a.ann"):
        (system / name).write_text((gold / name).read_text())
    assert main(["score-brat", str(gold), str(system), "--output", "/dev/null", "--markdown", "/dev/null"]) == 0


def test_remaining_inputs_are_checked_before_the_work(tmp_path, spert, docs, capsys):
    empty = tmp_path / "empty.spacy"
    DocBin().to_disk(empty)
    for argv, message in (
            (["two-tasks", "--first", str(empty), "--second", str(docs), "--texts", str(docs)],
             f"{empty} holds no documents"),
            (["scaling", "--texts", str(docs), "--prompt-layers", "1", "1", "--output", str(tmp_path / "s.md")],
             "--prompt-layers names 1 more than once"),
            (["convert", "spert-json", str(tmp_path), str(spert), "--folds"], f"{spert} is a file: with --folds")):
        assert main(argv) == 2
        assert message in error_line(capsys.readouterr().err)
