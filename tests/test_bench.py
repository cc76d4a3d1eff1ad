"""`bench --quick`: the benchmark's whole path (stock transformer+ner and every
strategy, trained with spaCy, scored, measured) on a tiny ADE subset. CI runs it;
its figures are not reported. Also the experiment verbs' shared run helper and
their early checks (missing matplotlib fails before any training)."""
import json
import sys

import pytest
import spacy
from spacy.tokens import DocBin

from spacy_softprompt.cli import main
from spacy_softprompt.cli.bench import SYSTEM_SETS

from conftest import ROOT, SHARED_DATA, check_made_configs, project, require_shared, verb_args


@pytest.mark.slow
def test_bench_quick_measures_every_system(tmp_path):
    from spacy_softprompt.cli.bench import SYSTEMS
    from spacy_softprompt.corpora.ade import read_ade

    ade = require_shared(SHARED_DATA / "ade-corpus-v2")
    nlp = spacy.blank("en")
    for split in ("train", "dev", "test"):
        docs, _ = read_ade(ade, nlp, split=split)
        DocBin(store_user_data=True, docs=docs[:20]).to_disk(tmp_path / f"{split}.spacy")
    report = tmp_path / "bench.md"
    # The systems that exercise every path (stock pipeline and input prompts, and from the PEFT set
    # packed late prompts with an adapter above the prompt layer); all of them would take minutes
    # even in quick form.
    chosen = ["stock_transformer_ner", "soft_prompt_frozen_input"]
    files = ["--train", str(tmp_path / "train.spacy"), "--dev", str(tmp_path / "dev.spacy"),
             "--test", str(tmp_path / "test.spacy"), "--runs", str(tmp_path / "runs")]
    assert main(["bench", "--quick", *files, "--output", str(report), "--only", *chosen]) == 0
    peft_report = tmp_path / "peft.md"
    assert main(["bench", "--quick", *files, "--output", str(peft_report), "--systems", "peft",
                 "--patience", "50", "--only", "lora_upper_soft"]) == 0
    data = json.loads(report.with_suffix(".json").read_text())
    assert [r["system"] for r in data["systems"]] == [s.name for s in SYSTEMS if s.run in chosen]
    assert data["quick"] and data["data"]["train"]["documents"] == 12
    (lora,) = json.loads(peft_report.with_suffix(".json").read_text())["systems"]
    stock, naive = data["systems"]
    for row in (stock, naive, lora):
        assert row["train_seconds"] > 0 and row["peak_train_rss_mb"] > 100 and row["words_per_second"] > 0
        assert row["trainable_parameters"] > 0 and row["pipeline_mb"] > 0
    assert stock["relations_strict_f"] is None and lora["relations_strict_f"] is not None
    # the naive input-prompt path, and late prompts (from layer 4 of the default's 6) for the others
    assert naive["prompt_layer"] == 0 and lora["prompt_layer"] == 4
    # each run keeps the config it trained with: 3 steps, and a schedule of the same length
    run_config = spacy.util.load_config(tmp_path / "runs" / "soft_prompt_frozen_input" / "config.cfg")
    assert run_config["training"]["max_steps"] == 3
    assert run_config["training"]["optimizer"]["learn_rate"]["total_steps"] == 3
    # frozen strategies train only prompts and head (and adapters): far fewer parameters and
    # bytes than the stock pipeline, which fine-tunes the whole backbone
    assert naive["trainable_parameters"] < 0.05 * stock["trainable_parameters"]
    assert naive["component_mb"] < 0.01 * stock["component_mb"]
    assert "quick form: figures mean nothing" in report.read_text()
    # the PEFT set: LoRA in the layers from the prompt layer (4) up to the backbone's last (5)
    assert lora["trainable_parameters"] < 0.05 * stock["trainable_parameters"]
    assert lora["component_mb"] < 0.03 * stock["component_mb"]
    assert lora["steps"] == 3 and lora["dev_curve"][-1][0] == 3
    packed = spacy.util.load_config(tmp_path / "runs" / "lora_upper_soft" / "model-best" / "config.cfg")
    model = packed["components"]["softprompt_ie"]["model"]
    assert model["packed"] is True and model["adapter"]["@misc"] == "spacy_softprompt.LoRA.v1"
    assert model["prompt_layer"] == 4 and model["adapter"]["layers"] == [4, 5]
    assert packed["training"]["patience"] == 50
    assert "stopped after 50 steps without a better dev score" in peft_report.read_text()


def test_run_config_keeps_the_schedule_as_long_as_training(tmp_path):
    from spacy_softprompt.cli import CLIError
    from spacy_softprompt.cli.runs import base_config, write_run_config

    config = base_config("finetune")
    path = write_run_config(config, {"training.max_steps": 42, "paths.train": tmp_path / "t.spacy",
                                     "components.softprompt_ie.model.prompt_layer": 2}, tmp_path / "run.cfg")
    written = spacy.util.load_config(path, interpolate=True)
    assert written["training"]["max_steps"] == 42
    assert written["training"]["optimizer"]["learn_rate"]["total_steps"] == 42
    assert written["corpora"]["train"]["path"] == str(tmp_path / "t.spacy")
    assert written["components"]["softprompt_ie"]["model"]["prompt_layer"] == 2
    assert config["training"]["max_steps"] == 600  # the base config is left as it was
    with pytest.raises(CLIError, match="no \\[nothing.here\\] section"):
        write_run_config(config, {"nothing.here.x": 1}, tmp_path / "bad.cfg")


def test_experiment_without_matplotlib_fails_before_training(tmp_path, toy_docs, monkeypatch, capsys):
    """It used to crash with ModuleNotFoundError after every run had trained."""
    for split in ("train", "dev", "test"):
        DocBin(store_user_data=True, docs=toy_docs).to_disk(tmp_path / f"{split}.spacy")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    args = ["experiment", "prompt-length", "--values", "4", "--max-steps", "1", "--runs", str(tmp_path / "runs"),
            "--output", str(tmp_path / "out"), *(f"--{s}={tmp_path / s}.spacy" for s in ("train", "dev", "test"))]
    assert main(args) != 0
    assert "matplotlib is not installed" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_experiment_no_plot_trains_records_and_resumes_without_matplotlib(tmp_path, toy_docs, tiny_bert, monkeypatch,
                                                                         capsys):
    for split in ("train", "dev", "test"):
        DocBin(store_user_data=True, docs=toy_docs).to_disk(tmp_path / f"{split}.spacy")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    args = ["experiment", "prompt-length", "--values", "4", "--max-steps", "2", "--eval-frequency", "1",
            "--patience", "5", "--set", "components.softprompt_ie.model.max_length=96", "--backbone", tiny_bert,
            "--no-plot", "--runs", str(tmp_path / "runs"), "--output", str(tmp_path / "out"),
            *(f"--{s}={tmp_path / s}.spacy" for s in ("train", "dev", "test"))]
    assert main(args) == 0
    (row,) = json.loads((tmp_path / "out" / "prompt-length.json").read_text())
    assert (row["value"], row["seed"], row["steps"]) == (4, 0, 2)
    assert [step for step, _ in row["dev_curve"]] == [0, 1, 2] and row["train_seconds"] > 0
    table = (tmp_path / "out" / "prompt-length.md").read_text()
    assert "| 4 | 1 |" in table and "(1 run, " in table
    assert f"| 4 | 0 | {100 * row['concepts_strict_f']:.1f} |" in table  # the run's own row, with its dev curve
    assert not (tmp_path / "out" / "prompt-length.png").exists()
    run = tmp_path / "runs" / "prompt-length-4-seed0"
    trained = spacy.util.load_config(run / "model-best" / "config.cfg")
    model = trained["components"]["softprompt_ie"]["model"]
    assert (model["prompt_length"], model["max_length"], model["backbone"]) == (4, 96, tiny_bert)
    assert trained["training"]["patience"] == 5 and (run / "metrics.json").exists()
    # run again: the finished run is read back, not trained again
    capsys.readouterr()
    weights = sorted((run / "model-best").rglob("*.safetensors"))
    stamps = [path.stat().st_mtime_ns for path in weights]
    assert weights and main(args) == 0
    assert "done before" in capsys.readouterr().out
    assert [path.stat().st_mtime_ns for path in weights] == stamps
    assert json.loads((tmp_path / "out" / "prompt-length.json").read_text()) == [row]
    # another preset or test file: the finished run is not this run, refused (it was reported as one)
    (tmp_path / "other_test.spacy").write_bytes((tmp_path / "test.spacy").read_bytes())
    for changed in (args + ["--preset", "deep_prompt_frozen"], [a.replace("test.spacy", "other_test.spacy")
                                                                 for a in args]):
        assert main(changed) == 2
        assert "trained with other settings, config or data" in capsys.readouterr().err
    assert [path.stat().st_mtime_ns for path in weights] == stamps
    # other settings in the same runs folder: an error, not a mix of two sweeps
    changed = [a.replace("max_length=96", "max_length=80") for a in args]
    assert main(changed) == 2
    assert "trained with other settings" in capsys.readouterr().err


def test_prompt_length_project_command_sweeps_packed_late_prompts_until_dev_levels():
    """``sweep-prompt-length`` is the verb on the committed frozen config with --set (packed late prompts, room
    for 3 types x 128 vectors), stopping on dev; ``prompt_length_config`` switches config, report and runs."""
    from pathlib import Path

    from spacy_softprompt.cli.runs import base_config, check_settings, parse_settings

    (script,) = project()["commands"]["sweep-prompt-length"]["script"]
    args = verb_args(script)
    assert args.kind == "prompt-length" and args.values == [8, 16, 32, 64, 128]
    assert (args.max_steps, args.eval_frequency, args.patience) == (555, 185, 370)
    settings = parse_settings(args.settings)
    model = "components.softprompt_ie.model"
    assert settings == {f"{model}.prompt_layer": 4, f"{model}.packed": True, f"{model}.max_length": 512}
    check_settings(base_config(config=ROOT / args.config), settings)
    assert args.output == Path("docs/prompt_length/soft_prompt_frozen")
    (script,) = project({"vars.prompt_length_config": "deep_prompt_frozen"})["commands"]["sweep-prompt-length"]["script"]
    deep = verb_args(script)
    assert (deep.config, deep.output, deep.runs) == (Path("configs/deep_prompt_frozen.cfg"),
                                                     Path("docs/prompt_length/deep_prompt_frozen"),
                                                     Path("training/prompt_length/deep_prompt_frozen"))


def test_fewshot_project_command_trains_either_arm_until_dev_levels():
    """``fewshot``: frozen soft prompts in the prompt-length sweep's layout by default; the unfrozen arm is
    the same command with ``fewshot_strategy`` and ``fewshot_set``, reported and run in folders of its own."""
    from pathlib import Path

    from spacy_softprompt.cli.runs import base_config, check_settings, parse_settings

    commands = project()["commands"]
    frozen = verb_args(commands["fewshot"]["script"][0])
    assert frozen.kind == "fewshot" and frozen.values == [5, 10, 20, 50, 100] and frozen.seeds == [0, 1, 2]
    assert (frozen.max_steps, frozen.eval_frequency, frozen.patience) == (200, 25, 100)
    assert frozen.settings == verb_args(commands["sweep-prompt-length"]["script"][0]).settings
    unfrozen = verb_args(project({"vars.fewshot_strategy": "finetune",
                                  "vars.fewshot_set": "components.softprompt_ie.model.head_lr_scale=50"}
                                 )["commands"]["fewshot"]["script"][0])
    for args in (frozen, unfrozen):
        check_settings(base_config(config=ROOT / args.config), parse_settings(args.settings))
    assert (unfrozen.output, unfrozen.runs) == (Path("docs/fewshot/finetune"), Path("training/fewshot/finetune"))
    assert parse_settings(unfrozen.settings) == {"components.softprompt_ie.model.head_lr_scale": 50}


def test_overlay_project_commands_read_what_the_sweeps_write():
    """``fewshot-overlay``, ``prompt-length-overlay`` and ``prompt-length-steps-overlay`` read the
    reports that ``fewshot`` and ``sweep-prompt-length`` write for each of their arms (each arm:
    the sweep with its own variables)."""
    longer = {"vars.prompt_length_steps": 1110, "vars.prompt_length_suffix": "_1110"}
    for overlay, sweep, arms in (
            ("fewshot-overlay", "fewshot",
             {arm: {"vars.fewshot_strategy": arm} for arm in ("soft_prompt_frozen", "finetune")}),
            ("prompt-length-overlay", "sweep-prompt-length",
             {arm: {"vars.prompt_length_config": arm} for arm in ("soft_prompt_frozen", "deep_prompt_frozen")}),
            ("prompt-length-steps-overlay", "sweep-prompt-length",
             {"soft_555_steps": {}, "soft_1110_steps": longer,
              "deep_555_steps": {"vars.prompt_length_config": "deep_prompt_frozen"},
              "deep_1110_steps": {"vars.prompt_length_config": "deep_prompt_frozen", **longer}})):
        args = verb_args(project()["commands"][overlay]["script"][0])
        assert args.kind == verb_args(project()["commands"][sweep]["script"][0]).kind
        written = []
        for arm, variables in arms.items():
            made = verb_args(project(variables)["commands"][sweep]["script"][0])
            written.append(f"{arm}={made.output / made.kind}.json")
        assert args.arms == written


def test_prompt_length_suffix_keeps_a_longer_sweep_apart():
    """``sweep-prompt-length`` with ``prompt_length_suffix`` at twice the steps writes its report
    and runs elsewhere, so it does not overwrite (or resume from) the default sweep."""
    default = verb_args(project()["commands"]["sweep-prompt-length"]["script"][0])
    longer = verb_args(project({"vars.prompt_length_steps": 1110, "vars.prompt_length_suffix": "_1110"})
                       ["commands"]["sweep-prompt-length"]["script"][0])
    assert (default.max_steps, longer.max_steps) == (555, 1110)
    assert longer.output != default.output and longer.runs != default.runs


def test_dev_curve_reads_spacy_training_log(tmp_path):
    """The report says where dev stopped improving: steps run, best step, and the curve."""
    from spacy_softprompt.cli.bench import dev_curve

    log = tmp_path / "train_log.jsonl"
    rows = [(0, 0, 0.0), (0, 185, 0.41), (1, 370, 0.55), (2, 555, 0.54), (3, 740, 0.549)]
    log.write_text("".join(json.dumps({"epoch": e, "step": s, "score": f, "losses": {}, "scores": {}}) + "\n"
                           for e, s, f in rows))
    assert dev_curve(log) == {"steps": 740, "epochs": 3, "best_step": 370,
                              "dev_curve": [[0, 0.0], [185, 41.0], [370, 55.0], [555, 54.0], [740, 54.9]]}
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert dev_curve(empty)["best_step"] is None


def test_study_set_is_the_papers_strategies_beside_both_stock_pipelines(tmp_path):
    """`bench --systems study` (issue 16 item 3): stock ner and spancat, the paper's four strategies
    (fine-tuning, hard, soft, soft on a frozen backbone), deep prompts and LoRA on the frozen base;
    each system's run config resolves to what its name says."""
    from spacy_softprompt.cli.bench import STUDY_SYSTEMS
    from spacy_softprompt.cli.runs import base_config, write_run_config

    assert len({s.run for s in STUDY_SYSTEMS}) == len(STUDY_SYSTEMS)
    seen = {}
    for system in STUDY_SYSTEMS:
        config = base_config(system.config)
        settings = {f"components.softprompt_ie.model.{k}": v for k, v in system.model}
        written = spacy.util.load_config(write_run_config(config, settings, tmp_path / f"{system.run}.cfg"))
        if system.component == "transformer":
            seen[system.run] = written["nlp"]["pipeline"]
            continue
        model = written["components"]["softprompt_ie"]["model"]
        seen[system.run] = (model["strategy"], model["freeze_backbone"], model["packed"], model["adapter"] is not None)
    assert seen["stock_transformer_ner"] == ["transformer", "ner"]
    assert seen["stock_transformer_spancat"] == ["transformer", "spancat"]
    assert seen["finetune"] == ("none", False, False, False)
    assert seen["hard_prompt_packed"] == ("hard", False, True, False)
    assert seen["soft_prompt_packed"] == ("soft", False, True, False)
    assert seen["soft_prompt_frozen_packed"] == ("soft", True, True, False)
    assert seen["deep_prompt_frozen_packed"] == ("deep", True, True, False)
    assert seen["lora_frozen"] == ("none", True, False, True)


def test_study_project_command_is_the_bench_verb():
    from pathlib import Path

    (script,) = project({"vars.study_corpus": "ade"})["commands"]["study-bench"]["script"]
    args = verb_args(script)
    assert args.systems == "study" and args.patience == 0 and args.max_steps == 351
    assert str(args.train) == "corpus/ade/train.spacy" and args.output == Path("docs/study_ade.md")
    assert args.packed_max_length == 384 and args.max_length is None  # packed SDoH needs 218; the rest as run


def test_transfer_bench_command_converts_maccrobat_and_is_the_bench_verb():
    """`transfer-study`: MACCROBAT converted with Medication read as Drug, then `transfer-bench`, the
    bench verb with that file on frozen and unfrozen systems of the study set for 740 steps (4 ADE
    epochs), dev every epoch, no patience (a name that is not a system would fail argparse)."""
    from pathlib import Path

    config = project()
    commands = config["commands"]
    assert config["workflows"]["transfer-study"] == ["convert", "convert-maccrobat", "transfer-bench"]
    (convert,) = commands["convert-maccrobat"]["script"]
    converted = verb_args(convert)
    assert converted.label_map == ["Medication=Drug"] and converted.output == Path("corpus/maccrobat/all.spacy")
    (bench,) = commands["transfer-bench"]["script"]
    args = verb_args(bench)
    assert args.systems == "study" and args.transfer_test == converted.output
    assert str(converted.output) in commands["transfer-bench"]["deps"]
    assert args.transfer_types == ["Drug", "Dosage"] and str(args.train) == "corpus/ade/train.spacy"
    assert (args.max_steps, args.eval_frequency, args.patience) == (740, 185, 0)
    chosen = {s.run for s in SYSTEM_SETS["study"] if s.run in args.only}
    assert set(args.only) == chosen and {"finetune", "lora_frozen", "soft_prompt_frozen_packed"} <= chosen


def test_study_head_lr_command_makes_its_configs_and_is_the_bench_verb(tmp_path):
    """``study-head-lr``: three init-config lines write the unfrozen presets with head_lr_scale 50
    (only that differs from the committed configs), then bench runs those three systems from them."""
    from pathlib import Path

    *make_configs, bench = project()["commands"]["study-head-lr"]["script"]
    written = check_made_configs(make_configs, tmp_path, "head_lr_scale", 50.0, 1.0)
    assert {Path(out).parent for out, _ in written} == {Path("training/head-lr")}
    presets = [preset for _, preset in written]
    args = verb_args(bench)
    assert args.systems == "study" and args.configs == Path("training/head-lr")
    used = {system.run: system.config for system in SYSTEM_SETS["study"] if system.run in args.only}
    assert set(args.only) == set(used) and set(used.values()) == set(presets) == {"finetune", "hard_prompt", "soft_prompt"}


def test_a_failing_system_is_reported_and_the_others_still_run(tmp_path, toy_docs, tiny_bert, capsys):
    """A long bench used to end at the first system that failed (packed queries over SDoH's 23 types
    do not fit 128 subwords), losing every system after it. Now the failure is listed and the rest run;
    --max-length reaches the softprompt_ie systems, --packed-max-length the packed ones."""
    for split in ("train", "dev", "test"):
        DocBin(store_user_data=True, docs=toy_docs).to_disk(tmp_path / f"{split}.spacy")
    report = tmp_path / "bench.md"
    argv = ["bench", "--quick", *(f"--{s}={tmp_path / s}.spacy" for s in ("train", "dev", "test")),
            "--backbone", tiny_bert, "--runs", str(tmp_path / "runs"), "--output", str(report),
            "--max-length", "64", "--packed-max-length", "8", "--prompt-layer", "1",
            "--only", "soft_prompt_packed", "soft_prompt_frozen"]
    assert main(argv) != 0
    data = json.loads(report.with_suffix(".json").read_text())
    assert [r["run"] for r in data["systems"]] == ["soft_prompt_frozen"]  # trained after the failure
    assert [f["run"] for f in data["failed"]] == ["soft_prompt_packed"]
    assert (data["max_length"], data["packed_max_length"]) == (64, 8)
    error = data["failed"][0]["error"]  # the reason, from the training's own output
    assert error.startswith("training failed (") and "max_length=8 leaves" in error
    assert "Not measured" in report.read_text() and "1 of 2 systems failed" in capsys.readouterr().err

    def max_length(run):
        return spacy.util.load_config(tmp_path / "runs" / run / "config.cfg")["components"]["softprompt_ie"]["model"][
            "max_length"]

    assert (max_length("soft_prompt_packed"), max_length("soft_prompt_frozen")) == (8, 64)


@pytest.mark.slow
def test_study_small_form_trains_stock_spancat_beside_a_strategy(tmp_path, toy_docs, tiny_bert):
    """CI's small form of `study-bench` and `transfer-bench`: stock spancat (overlapping concepts in
    doc.spans) and LoRA on the frozen base train, score and land in one table, and each is scored on a
    second file (two of the four texts) over the shared types, beside the same types on the test file."""
    for split in ("train", "dev", "test"):
        DocBin(store_user_data=True, docs=toy_docs).to_disk(tmp_path / f"{split}.spacy")
    DocBin(store_user_data=True, docs=toy_docs[:2]).to_disk(tmp_path / "other.spacy")  # Drug 2, Dose 1
    report = tmp_path / "study.md"
    argv = ["bench", "--quick", "--systems", "study", *(f"--{s}={tmp_path / s}.spacy" for s in ("train", "dev", "test")),
            "--backbone", tiny_bert, "--prompt-layer", "1", "--runs", str(tmp_path / "runs"), "--output", str(report),
            "--patience", "0", "--only", "stock_transformer_spancat", "lora_frozen",
            "--transfer-test", str(tmp_path / "other.spacy"), "--transfer-types", "Drug", "Dose"]
    assert main(argv) == 0
    data = json.loads(report.with_suffix(".json").read_text())
    assert data["data"]["transfer"]["documents"] == 2
    for row in data["systems"]:
        assert row["transfer"]["in_domain"]["gold"] == {"Drug": 4, "Dose": 1}  # the test file: all four texts
        assert row["transfer"]["transferred"]["gold"] == {"Drug": 2, "Dose": 1}
        metrics = json.loads((tmp_path / "runs" / row["run"] / "metrics_transfer.json").read_text())
        assert set(metrics["concepts_strict_per_type"]) <= {"Drug", "Dose"}  # ADE is not scored there
    text = report.read_text()
    assert "## Cross-corpus transfer" in text and "Gold mentions on the transfer file: Drug 2, Dose 1." in text
    data = json.loads(report.with_suffix(".json").read_text())
    assert [r["run"] for r in data["systems"]] == ["stock_transformer_spancat", "lora_frozen"] and not data["failed"]
    spancat, lora = data["systems"]
    assert spancat["relations_strict_f"] is None and lora["relations_strict_f"] is not None
    assert lora["trainable_parameters"] < 0.05 * spancat["trainable_parameters"]
    assert report.read_text().startswith("# The paper's study")
    trained = spacy.util.load_config(tmp_path / "runs" / "stock_transformer_spancat" / "model-best" / "config.cfg")
    assert trained["components"]["spancat"]["spans_key"] == "softprompt"


def test_a_child_run_passes_its_output_on_and_names_why_it_failed(capsys):
    """bench and the other verbs train in child processes: their output reaches ours, and a
    failure's reason is the child's last line, or the signal that killed it (the OOM killer's)."""
    from spacy_softprompt.cli.runs import run_child

    code, _, reason = run_child([sys.executable, "-c", "print('x' * 100000); raise ValueError('bad thing')"])
    assert (code, reason) == (1, "ValueError: bad thing")
    assert "x" * 100000 in capsys.readouterr().out  # more than a pipe holds: read while the child writes
    code, _, reason = run_child([sys.executable, "-c", "import os, signal; print('step 3'); os.kill(os.getpid(), 9)"])
    assert (code, reason) == (-9, "killed by SIGKILL; its last line: step 3")


def test_a_run_that_cannot_be_scored_is_one_line_naming_it(tmp_path, toy_docs):
    """Runs are scored in the sweep's own process: a failure there is one line naming the pipeline
    and the test file, for the run's report, not a traceback that ends the sweep."""
    from spacy_softprompt.cli import CLIError
    from spacy_softprompt.cli.runs import evaluate

    test = tmp_path / "test.spacy"
    DocBin(store_user_data=True, docs=toy_docs).to_disk(test)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.cfg").write_text("[nlp]\nlang = \"en\"\npipeline = [\"nothing\"]\n")
    (tmp_path / "broken" / "meta.json").write_text("{}")
    with pytest.raises(CLIError, match=r"^evaluation failed \(.+\): .*broken on .*test.spacy$"):
        evaluate(tmp_path / "broken", test, tmp_path / "metrics.json")
    assert not (tmp_path / "metrics.json").exists()


def test_shared_type_scores_read_only_the_shared_types():
    """The in-domain side of the transfer table is micro F1 over the shared types' counts, not the
    test file's overall figure, which includes types the other corpus does not annotate."""
    from spacy_softprompt.cli.bench import shared_type_scores

    def per_type(tp, fp, fn):
        return {"tp": tp, "fp": fp, "fn": fn, "f": 2 * tp / (2 * tp + fp + fn)}

    scores = {f"concepts_{mode}_per_type": {"Drug": per_type(8, 2, 0), "Dosage": per_type(0, 0, 10),
                                            "ADE": per_type(50, 0, 0)} for mode in ("strict", "lenient")}
    summary = shared_type_scores(scores, ["Drug", "Dosage", "Route"])
    assert summary["strict_f"] == summary["lenient_f"] == round(100 * 16 / (16 + 2 + 10), 1)
    assert summary["per_type_strict_f"] == {"Drug": 88.9, "Dosage": 0.0, "Route": None}


def test_transfer_types_are_checked_before_any_training(tmp_path, toy_docs, capsys):
    """A transfer file needs its types, and a type the training file lacks (a typo, an unmapped label)
    stops the run before hours of training end in a column of zeros."""
    for split in ("train", "dev", "test"):
        DocBin(store_user_data=True, docs=toy_docs).to_disk(tmp_path / f"{split}.spacy")
    argv = ["bench", *(f"--{s}={tmp_path / s}.spacy" for s in ("train", "dev", "test")),
            "--output", str(tmp_path / "b.md"), "--runs", str(tmp_path / "runs"),
            "--transfer-test", str(tmp_path / "test.spacy")]
    assert main(argv) != 0
    assert "--transfer-test and --transfer-types go together" in capsys.readouterr().err
    assert main(argv + ["--transfer-types", "Drug", "Medication"]) != 0
    err = capsys.readouterr().err
    assert "--transfer-types Medication: not a concept type of" in err and "ADE, Dose, Drug" in err
    assert not (tmp_path / "runs").exists()
