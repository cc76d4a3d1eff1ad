"""The command line: every verb listed and documented; clear errors for bad input."""
import json
import subprocess
import sys

import pytest
import spacy
from spacy.tokens import DocBin

from spacy_softprompt.cli import VERBS, CLIError, build_parser, main


def test_help_lists_every_verb_with_a_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for verb in VERBS:
        assert verb in out


@pytest.mark.parametrize("verb", list(VERBS))
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "spacy_softprompt", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "convert" in out.stdout


def test_render_with_a_missing_pipeline_is_a_clear_error(tmp_path, capsys):
    assert main(["render", str(tmp_path / "nope"), "some text"]) == 2
    assert "pipeline not found" in capsys.readouterr().err


def test_every_pipeline_argument_takes_a_package_name_too():
    """A ``pipeline`` argument typed as a path cannot name an installed package."""
    subparsers = next(a for a in build_parser()._actions if a.dest == "verb").choices
    found = [(verb, action) for verb, parser in subparsers.items() for action in parser._actions
             if action.dest == "pipeline"]
    assert {verb for verb, _ in found} >= {"evaluate", "render", "export-brat"}
    assert [verb for verb, action in found if action.type is not None] == []


def _one_error_line(err: str) -> str:
    """stderr ends with exactly one line ``error: ...`` (after any progress bar), and no traceback."""
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == lines[-1:] and "Traceback" not in err, err
    return lines[-1]


@pytest.fixture
def docbin_file(tmp_path):
    path = tmp_path / "docs.spacy"
    doc = spacy.blank("en")("Aspirin caused nausea.")
    doc.ents = [doc.char_span(0, 7, label="Drug")]  # (a concept, so that `sample` has something to sample by)
    DocBin(docs=[doc]).to_disk(path)
    return path


@pytest.mark.parametrize("verb", [["sample", "--shots", "1"], ["export-brat"], ["evaluate-blank"]])
def test_a_file_that_is_not_a_docbin_is_one_line(verb, tmp_path, capsys):
    """spaCy's E1014, with the file named and what to pass instead."""
    bad = tmp_path / "notes.txt"
    bad.write_text("not a DocBin\n")
    if verb == ["evaluate-blank"]:
        spacy.blank("en").to_disk(tmp_path / "pipeline")
        argv = ["evaluate", str(tmp_path / "pipeline"), str(bad)]
    else:
        argv = [verb[0], str(bad), str(tmp_path / "out"), *verb[1:]]
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "DocBin" in line and "convert" in line and str(bad) in line


@pytest.mark.parametrize("verb", [["sample", "--shots", "1"], ["export-brat"]])
def test_a_misspelt_spans_key_or_an_empty_file_is_refused(verb, tmp_path, capsys):
    """A --spans-key no document has read every document's doc.ents in silence; an empty file gave an empty
    sample (export-brat refused it already)."""
    blank = spacy.blank("en")
    doc = blank("Aspirin caused nausea.")
    doc.spans["softprompt"] = [doc.char_span(0, 7, label="Drug")]
    data, empty = tmp_path / "docs.spacy", tmp_path / "empty.spacy"
    DocBin(store_user_data=True, docs=[doc]).to_disk(data)
    DocBin().to_disk(empty)
    assert main([verb[0], str(data), str(tmp_path / "out"), *verb[1:], "--spans-key", "softprompts"]) == 2
    assert "--spans-key 'softprompts': no document of" in _one_error_line(capsys.readouterr().err)
    assert main([verb[0], str(empty), str(tmp_path / "out2"), *verb[1:]]) == 2
    assert "holds no documents" in _one_error_line(capsys.readouterr().err)
    assert main([verb[0], str(data), str(tmp_path / "out3"), *verb[1:], "--spans-key", "softprompt"]) == 0


def test_evaluate_output_folder_is_refused_before_scoring(tmp_path, docbin_file, capsys):
    spacy.blank("en").to_disk(tmp_path / "pipeline")  # (scoring it would fail: it has no component)
    for option in ("--output", "--markdown"):
        assert main(["evaluate", str(tmp_path / "pipeline"), str(docbin_file), option, str(tmp_path)]) == 2
        assert f"{option} {tmp_path} is a folder" in _one_error_line(capsys.readouterr().err)


def test_export_brat_checks_the_pipelines_span_group(tmp_path, docbin_file, capsys):
    """As evaluate and render: a pipeline with no component predicts nothing (it wrote empty .ann files)."""
    spacy.blank("en").to_disk(tmp_path / "pipeline")
    assert main(["export-brat", str(docbin_file), str(tmp_path / "out"), "--pipeline", str(tmp_path / "pipeline")]) == 2
    assert "has no components" in _one_error_line(capsys.readouterr().err)


def test_a_folder_that_is_not_a_pipeline_is_one_line(tmp_path, docbin_file, capsys):
    folder = tmp_path / "model-best"
    folder.mkdir()
    (folder / "config.cfg").write_text("[nlp]\nlang = \"en\"\n")  # meta.json missing: spaCy's E053
    assert main(["evaluate", str(folder), str(docbin_file)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"{folder} is not a spaCy pipeline folder" in line and "training/model-best" in line


@pytest.mark.parametrize("verb", ["sample", "convert"])
def test_an_unwritable_output_is_one_line(verb, tmp_path, docbin_file, capsys):
    """An output folder that cannot be made (a file is in the way): named, with what to check."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    if verb == "sample":
        argv = ["sample", str(docbin_file), str(blocker / "out.spacy"), "--shots", "1"]
    else:
        (tmp_path / "brat").mkdir()
        (tmp_path / "brat" / "a.txt").write_text("Aspirin caused nausea.")
        (tmp_path / "brat" / "a.ann").write_text("T1\tDrug 0 7\tAspirin\n")
        argv = ["convert", "brat", str(tmp_path / "brat"), str(blocker / "sub" / "out.spacy")]
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(blocker) in line and ("folder can be created" in line or f"{blocker} is a file, not a folder" in line)


def test_a_permission_error_is_one_line(tmp_path, docbin_file, monkeypatch, capsys):
    out = tmp_path / "out.spacy"

    def refuse(self, path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(DocBin, "to_disk", refuse)
    assert main(["sample", str(docbin_file), str(out), "--shots", "1"]) == 2
    assert _one_error_line(capsys.readouterr().err).startswith(f"error: Permission denied: {out}.")


def _raise_in_package(args):
    from spacy_softprompt import Relation, set_relations

    doc, other = spacy.blank("en")("a b"), spacy.blank("en")("a b")
    set_relations(doc, [Relation(other[0:1], other[1:2], "R")])  # ValueError raised in relations.py


def _package_errors():
    from spacy_softprompt.artifact import BackboneMismatch
    from spacy_softprompt.backbone import BackboneNotFound

    not_found = BackboneNotFound("Cannot find backbone 'x'. Tried:\n  - local path x (does not exist)\nUse 'default'.")
    return [
        (not_found, "error: Cannot find backbone 'x'. Tried: local path x (does not exist); Use 'default'."),
        (BackboneMismatch("the backbone changed; retrain"), "error: the backbone changed; retrain"),
        (CLIError("bad option"), "error: bad option"),
    ]


@pytest.mark.parametrize("position", ["before", "after"])
@pytest.mark.parametrize("case", range(4))
def test_package_errors_are_one_line_and_debug_shows_the_traceback(case, position, monkeypatch, capsys):
    import spacy_softprompt.cli.sample as sample

    if case < 3:
        error, expected = _package_errors()[case]

        def run(args):
            raise error
    else:
        run, expected = _raise_in_package, "error: Relation("
    monkeypatch.setattr(sample, "run", run)
    argv = ["sample", "in.spacy", "out.spacy", "--shots", "1"]
    assert main(argv) == 2
    assert _one_error_line(capsys.readouterr().err).startswith(expected)
    assert main(["--debug", *argv] if position == "before" else [*argv, "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.strip().splitlines()[-1].startswith(expected)


def test_a_bug_keeps_its_traceback(monkeypatch):
    """A ValueError raised outside the package is not a message for the user: it propagates."""
    import spacy_softprompt.cli.sample as sample

    def run(args):
        raise ValueError("an internal mistake")

    monkeypatch.setattr(sample, "run", run)
    with pytest.raises(ValueError, match="an internal mistake"):
        main(["sample", "in.spacy", "out.spacy", "--shots", "1"])


def test_experiment_table_and_plot_average_over_seeds(tmp_path):
    from spacy_softprompt.cli.experiment import plot, to_markdown

    results = [
        {"value": 5, "seed": 0, "concepts_strict_f": 0.2, "concepts_lenient_f": 0.4,
         "relations_strict_f": 0.1, "relations_lenient_f": 0.2},
        {"value": 5, "seed": 1, "concepts_strict_f": 0.4, "concepts_lenient_f": 0.6,
         "relations_strict_f": 0.1, "relations_lenient_f": 0.2},
        {"value": 10, "seed": 0, "concepts_strict_f": 0.5, "concepts_lenient_f": 0.7,
         "relations_strict_f": 0.3, "relations_lenient_f": 0.4},
    ]
    table = to_markdown("fewshot", results)
    # mean of 20 and 40 is 30; sample sd of (20, 40) is 14.1
    assert "| 5 | 2 | 30.0 ± 14.1 | 50.0 ± 14.1 | 10.0 ± 0.0 | 20.0 ± 0.0 |" in table
    assert "| 10 | 1 | 50.0 ± 0.0 |" in table
    plot("fewshot", results, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _report(path, rows):
    """An experiment report (.json) with one run per (value, seed, concept F1, relation F1)."""
    path.write_text(json.dumps([{"value": v, "seed": seed, "concepts_strict_f": c, "concepts_lenient_f": c,
                                 "relations_strict_f": r, "relations_lenient_f": r} for v, seed, c, r in rows]))
    return path


def test_overlay_puts_arms_side_by_side_at_each_value(tmp_path):
    frozen = _report(tmp_path / "frozen.json", [(5, 0, 0.2, 0.0), (5, 1, 0.4, 0.02), (20, 0, 0.5, 0.1)])
    tuned = _report(tmp_path / "tuned.json", [(20, 0, 0.6, 0.2), (20, 1, 0.6, 0.3)])
    out = tmp_path / "docs" / "overlay.md"
    assert main(["overlay", "fewshot", f"frozen={frozen}", f"tuned={tuned}", "--output", str(out)]) == 0
    table = out.read_text()
    assert ("| shots per type | frozen: concept F1 strict | tuned: concept F1 strict | frozen: relation F1 strict "
            "| tuned: relation F1 strict |") in table
    assert "| 5 | 30.0 ± 14.1 (n = 2) | – | 1.0 ± 1.4 (n = 2) | – |" in table
    assert "| 20 | 50.0 ± 0.0 (n = 1) | 60.0 ± 0.0 (n = 2) | 10.0 ± 0.0 (n = 1) | 25.0 ± 7.1 (n = 2) |" in table
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_overlay_names_what_it_cannot_read(tmp_path, capsys):
    good = _report(tmp_path / "good.json", [(8, 0, 0.5, 0.2)])
    (tmp_path / "metrics.json").write_text(json.dumps({"concepts_strict_f": 0.5}))
    (tmp_path / "broken.json").write_text("[{")
    text = json.loads(good.read_text())
    text[0]["concepts_strict_f"] = "x"  # a metric that is not a number: once a TypeError from statistics
    (tmp_path / "text.json").write_text(json.dumps(text))
    for arms, message in (([str(good)], "expected NAME=REPORT"),
                          ([f"a={good}", f"a={good}"], "each arm needs its own name"),
                          ([f"a={tmp_path / 'missing.json'}"], "missing.json: no such file"),
                          ([f"a={tmp_path / 'metrics.json'}"], "metrics.json: not an `experiment` report"),
                          ([f"a={tmp_path / 'text.json'}"], "text.json: not an `experiment` report"),
                          ([f"a={good}", f"b={tmp_path / 'broken.json'}"], "broken.json: not JSON (line 1")):
        assert main(["overlay", "prompt-length", *arms, "--output", str(tmp_path / "o.md")]) == 2
        assert message in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "o.md").exists()


def test_overlay_refuses_a_run_counted_twice_or_a_percentage(tmp_path, capsys):
    """A report with one (value, seed) twice was averaged as two runs; F1 written as 55.0 printed 5500.0."""
    twice = _report(tmp_path / "twice.json", [(8, 0, 0.5, 0.2), (8, 0, 0.5, 0.2)])
    percent = _report(tmp_path / "percent.json", [(8, 0, 55.0, 20.0)])
    for report, message in ((twice, "value 8 seed 0 appears more than once"),
                            (percent, "concepts_strict_f 55.0: scores are fractions in [0, 1]")):
        assert main(["overlay", "prompt-length", f"a={report}", "--output", str(tmp_path / "o.md")]) == 2
        assert f"{report}: {message}" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "o.md").exists()


def test_study_verbs_check_counts_and_outputs_before_any_run(tmp_path, capsys):
    """Numbers that failed only after a run had trained or timed (K = 0, a negative seed), or never (a negative
    --limit dropped the last text; a repeated --types was timed twice); an output in the way found when the first
    report was written, after the first run."""
    data, folder, afile = tmp_path / "toy.spacy", tmp_path / "report.md", tmp_path / "table.md"
    DocBin(docs=[spacy.blank("en")("Aspirin caused nausea.")]).to_disk(data)
    folder.mkdir()
    afile.write_text("")
    files = [f"--{split}={data}" for split in ("train", "dev", "test")]
    for argv, message in ((["experiment", "fewshot", *files, "--output", str(tmp_path), "--values", "5", "0"],
                           "0: must be at least 1"),
                          (["experiment", "fewshot", *files, "--output", str(tmp_path), "--seeds", "-1"],
                           "-1: must be 0 or more"),
                          (["cats-curve", "--systems", "x.cfg", *files, "--seeds", "-1"], "-1: must be 0 or more"),
                          (["scaling", "--texts", str(data), "--limit", "-1", "--output", str(afile)],
                           "-1: must be 0 or more"),
                          (["calibrate", "p", "n.jsonl", "out", "--density", "inf"], "inf: must be a finite number"),
                          (["calibrate", "p", "n.jsonl", "out", "--density", "1", "--scale", "nan"],
                           "nan: must be a finite number")):
        with pytest.raises(SystemExit):
            main(argv)
        assert message in capsys.readouterr().err
    empty = tmp_path / "empty.spacy"
    DocBin().to_disk(empty)
    for argv, message in ((["experiment", "fewshot", *files, "--output", str(afile)], f"--output {afile} is a file"),
                          (["cats-curve", "--systems", "x.cfg", *files, "--output", str(folder)], f"--output {folder} is a folder"),
                          (["lodo", "--corpus", "a=x", "b=y", "--output", str(folder)], f"--output {folder} is a folder"),
                          (["scaling", "--texts", str(data), "--types", "2", "2", "--output", str(afile)],
                           "--types names 2 more than once"),
                          (["scaling", "--texts", str(data), "--real", f"a={data}", f"a={data}", "--output", str(afile)],
                           "--real names a more than once"),
                          (["scaling", "--texts", str(data), "--real", "a=", "--output", str(afile)],
                           "--real expects NAME=PATH, got 'a='"),
                          (["scaling", "--texts", str(empty), "--backbone", "default", "--output", str(tmp_path / "s.md")],
                           f"{empty}: no documents to time")):
        assert main(argv) == 2
        assert message in _one_error_line(capsys.readouterr().err)


def test_set_reads_json_values_and_rejects_what_is_not_a_setting():
    from spacy_softprompt.cli.runs import base_config, check_settings, parse_settings

    settings = parse_settings(["a.b=512", "a.c=true", "a.d=[4, 5]", "a.e=mean"])
    assert settings == {"a.b": 512, "a.c": True, "a.d": [4, 5], "a.e": "mean"}
    for bad in ("no_equals", "nodot=1", "a.b="):
        with pytest.raises(CLIError, match="expected SECTION.KEY=VALUE"):
            parse_settings([bad])
    config = base_config("soft_prompt_frozen")
    check_settings(config, {"components.softprompt_ie.model.packed": True, "training.patience": 3})
    with pytest.raises(CLIError, match="prompt_lenght: the config has no such setting"):
        check_settings(config, {"components.softprompt_ie.model.prompt_lenght": 8})


def test_experiment_with_a_misspelt_setting_fails_before_training(tmp_path, capsys):
    files = []
    for split in ("train", "dev", "test"):
        (tmp_path / f"{split}.spacy").write_bytes(b"")
        files += [f"--{split}", str(tmp_path / f"{split}.spacy")]
    code = main(["experiment", "prompt-length", *files, "--output", str(tmp_path / "out"), "--no-plot",
                 "--runs", str(tmp_path / "runs"), "--set", "components.softprompt_ie.model.packd=true"])
    assert code == 2 and "packd: the config has no such setting" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_experiment_missing_inputs_are_clear_errors(tmp_path, capsys):
    code = main(["experiment", "fewshot", "--config", str(tmp_path / "x.cfg"), "--train", "a", "--dev", "b",
                 "--test", "c", "--output", str(tmp_path)])
    assert code == 2 and "not found" in capsys.readouterr().err


def test_a_damaged_run_record_is_named(tmp_path):
    """experiment, cats-curve and lodo read finished runs back: a run.json cut short while written gave a
    JSONDecodeError traceback."""
    from spacy_softprompt.cli import CLIError
    from spacy_softprompt.cli.runs import finished_run

    record = tmp_path / "run.json"
    record.write_text('{"strict_f": ')
    with pytest.raises(CLIError, match="run.json: not JSON .line 1.*a finished run's record"):
        finished_run(record, "run", lambda done: None)


@pytest.mark.parametrize("verb", [["compare", "a=b.json"], ["overlay", "fewshot", "a=b.json"],
                                  ["folds", "aggregate", "m"]])
def test_a_report_output_named_like_its_sibling_is_refused(verb, tmp_path, capsys):
    """--output cmp.json left only the JSON (it overwrote the table); overlay --output ov.png replaced the table with
    the plot while saying both were there."""
    for name in ("cmp.json", "ov.PNG"):
        with pytest.raises(SystemExit):
            main([*verb, "--output", str(tmp_path / name)])
        assert "name the markdown report (e.g." in capsys.readouterr().err


def test_measuring_verbs_check_their_inputs_before_measuring(tmp_path, capsys):
    """bench, scaling, step-time and two-tasks: a file that is not a DocBin was spaCy's E1014 with no path; an
    output folder in the way failed after the measuring; step-time --only with a typo ran the others in silence;
    counts of 0 were tracebacks (step-time --steps 0) or errors after the measuring (two-tasks --limit 0)."""
    bad, folder = tmp_path / "notes.txt", tmp_path / "report.md"
    bad.write_text("not a DocBin\n")
    folder.mkdir()
    for argv in (["bench", "--quick", "--train", str(bad), "--dev", str(bad), "--test", str(bad),
                  "--output", str(tmp_path / "b.md")],
                 ["scaling", "--texts", str(bad), "--types", "2", "--output", str(tmp_path / "s.md")],
                 ["step-time", "--train", str(bad)]):
        assert main(argv) == 2
        assert f"{bad} is not a DocBin" in _one_error_line(capsys.readouterr().err)
    for argv in (["bench", "--train", str(bad), "--dev", str(bad), "--test", str(bad), "--output", str(folder)],
                 ["scaling", "--texts", str(bad), "--types", "2", "--output", str(folder)],
                 ["step-time", "--train", str(bad), "--output", str(folder)],
                 ["two-tasks", "--first", str(bad), "--second", str(bad), "--texts", str(bad), "--output", str(folder)]):
        assert main(argv) == 2
        assert f"--output {folder} is a folder" in _one_error_line(capsys.readouterr().err)
    assert main(["bench", "--train", str(bad), "--dev", str(bad), "--test", str(bad), "--output", str(tmp_path / "b.md"),
                 "--systems", "strategies", "--only", "finetune", "lora"]) == 2  # lora: the peft set's (was skipped)
    assert "--only lora: not a system of the 'strategies' set" in _one_error_line(capsys.readouterr().err)
    assert main(["step-time", "--train", str(bad), "--only", "typo"]) == 2
    assert "--only 'typo': not a system here" in _one_error_line(capsys.readouterr().err)
    for argv in (["step-time", "--steps", "0"], ["two-tasks", "--limit", "0"], ["two-tasks", "--repeats", "0"]):
        with pytest.raises(SystemExit):
            main(argv)
        assert "0: must be at least 1" in capsys.readouterr().err


def test_a_file_that_is_not_a_training_config_is_named(tmp_path):
    """folds train, cats-curve --systems, bench --configs, lodo --systems: a ConfigValidationError traceback (in
    bench it escaped the per-system error handling and ended the benchmark)."""
    from spacy_softprompt.cli import CLIError
    from spacy_softprompt.cli.runs import base_config, load_systems

    bad = tmp_path / "bad.cfg"
    bad.write_text("[paths]\ntrain = 3\n[nlp\n")
    for load in (lambda: base_config(config=bad), lambda: load_systems([str(bad)])):
        with pytest.raises(CLIError, match=r"bad.cfg is not a training config \(Source contains parsing errors.*line  3"):
            load()


def test_a_prompt_layer_past_the_backbone_is_refused_before_any_system_runs(tmp_path, tiny_bert, capsys):
    """scaling timed the stock, none and naive rows on every text set first; bench trained the systems before
    the first late-prompt one."""
    from spacy.tokens import DocBin

    data = tmp_path / "toy.spacy"
    DocBin(docs=[spacy.blank("en")("Aspirin caused nausea.")]).to_disk(data)
    assert main(["scaling", "--texts", str(data), "--types", "2", "--backbone", tiny_bert, "--prompt-layers", "1", "2",
                 "--output", str(tmp_path / "s.md")]) == 2
    assert "--prompt-layers 2: the backbone has 2 layers (0 to 1)" in _one_error_line(capsys.readouterr().err)
    files = [f"--{split}={data}" for split in ("train", "dev", "test")]
    assert main(["bench", *files, "--backbone", tiny_bert, "--prompt-layer", "3", "--output", str(tmp_path / "b.md"),
                 "--only", "stock_transformer_ner", "soft_prompt_frozen"]) == 2
    assert "--prompt-layer 3: the backbone has 2 layers" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "s.md").exists() and not (tmp_path / "b.md").exists()
