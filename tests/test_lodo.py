"""``lodo`` (cli/lodo.py): leave one dataset out in small (two toy corpora, two steps of the tiny
random BERT): the source model trains on the other corpus, the held-out types are added by
description and scored zero-shot, K-shot training runs from that model (a sourced component) and
from scratch; project.yml's ``lodo`` is the verb; a second invocation resumes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin

from spacy_softprompt.cli import main

from conftest import ROOT, annotate, check_made_configs, project, verb_args

CORPORA = {
    "meds": [("Aspirin 100 mg was given.", [("Aspirin", "Medication"), ("100 mg", "meds/Dosage")]),
             ("She took ibuprofen 200 mg.", [("ibuprofen", "Medication"), ("200 mg", "meds/Dosage")]),
             ("Metformin was stopped.", [("Metformin", "Medication")])],
    "ade": [("Rash after penicillin.", [("Rash", "Adverse_Effect"), ("penicillin", "ade/Drug")]),
            ("Nausea from codeine.", [("Nausea", "Adverse_Effect"), ("codeine", "ade/Drug")]),
            ("Warfarin caused bleeding.", [("Warfarin", "ade/Drug"), ("bleeding", "Adverse_Effect")])],
}
TYPES = {"descriptions": {"Medication": "medication name", "meds/Dosage": "medication dose",
                          "ade/Drug": "drug name", "Adverse_Effect": "adverse effect of a drug"},
         "related": {"ade/Drug": ["Medication"]}}


def write_corpora(tmp_path: Path) -> list:
    nlp = spacy.blank("en")
    args = []
    for name, texts in CORPORA.items():
        docs = [annotate(nlp, t, m) for t, m in texts]
        for doc in docs:
            doc._.corpus = name
        for part in ("train", "dev", "test"):
            (tmp_path / name).mkdir(exist_ok=True)
            DocBin(store_user_data=True, docs=docs).to_disk(tmp_path / name / f"{part}.spacy")
        args.append(f"{name}={tmp_path / name}")
    return args


@pytest.mark.slow
def test_lodo_runs_in_small_and_resumes(tmp_path, tiny_bert, capsys, monkeypatch):
    monkeypatch.setenv("SPACY_CONFIG_OVERRIDES", "--training.optimizer.learn_rate.warmup_steps 1")
    (tmp_path / "types.json").write_text(json.dumps(TYPES))
    runs, output = tmp_path / "runs", tmp_path / "docs" / "lodo.md"
    system = tmp_path / "finetune.cfg"
    system.write_text((ROOT / "configs" / "finetune.cfg").read_text())
    argv = ["lodo", "--corpus", *write_corpora(tmp_path), "--held-out", "ade",
            "--systems", str(system), "--types", str(tmp_path / "types.json"),
            "--shots", "1", "--seeds", "0", "--source-steps", "2", "--fewshot-steps", "2", "--eval-frequency", "2",
            "--dev-limit", "5", "--replay", "1", "--zero-shot-thresholds", "0.5", "0.1", "--zero-shot-calibration", "1", "3",
            "--max-length", "128", "--backbone", tiny_bert, "--runs", str(runs), "--output", str(output), "--no-plot"]
    assert main(argv) == 0
    report = json.loads(output.with_suffix(".json").read_text())
    assert [r["kind"] for r in report["runs"]] == ["source", "zero-shot", "transfer", "transfer + replay", "single corpus"]
    source, zero, transfer, replay, single = report["runs"]
    # the source model learned the other corpus's types only, the zero-shot one asks ade's by description
    task = json.loads((runs / "finetune" / "ade" / "zero-shot" / "pipeline" / "softprompt_ie" / "model" / "task.json").read_text())
    assert set(task["schema"]["corpora"]["meds"]) >= {"Medication", "meds/Dosage"}
    assert set(task["schema"]["corpora"]["ade"]) == {"ade/Drug", "Adverse_Effect"}
    assert task["query_texts"]["ade/Drug"] == "drug name"
    for r in (zero, transfer, replay, single):
        assert r["per_type"] and set(r["per_type"]) <= {"ade/Drug", "Adverse_Effect"}
    # the zero-shot model also scored at each threshold, on dev and test (at 0.5: its own scores)
    assert set(zero["dev_by_threshold"]) == set(zero["test_by_threshold"]) == {"0.5", "0.1"}
    assert zero["test_by_threshold"]["0.5"] == {"strict_f": zero["strict_f"], "per_type": zero["per_type"]}
    assert "dev_by_threshold" not in transfer
    # and calibrated at each density scale: its test scores are the zero-shot pipeline's with those label thresholds
    assert set(zero["dev_by_scale"]) == set(zero["test_by_scale"]) == set(zero["calibrated_thresholds"]) == {"1.0", "3.0"}
    # per type on dev too, for the types vote: the types with a dev mention (here the toy dev is the test file)
    assert all(set(scores) == {"ade/Drug", "Adverse_Effect"} for scores in zero["dev_types_by_scale"].values())
    assert "dev_by_scale" not in transfer and report["in_test"] == {"ade": ["Adverse_Effect", "ade/Drug"]}
    calibrated = spacy.load(runs / "finetune" / "ade" / "zero-shot" / "pipeline")
    calibrated.get_pipe("softprompt_ie").cfg["label_thresholds"] = zero["calibrated_thresholds"]["3.0"]
    calibrated.to_disk(tmp_path / "calibrated")
    assert main(["evaluate", str(tmp_path / "calibrated"), str(tmp_path / "ade" / "test.spacy"), "--corpus", "ade",
                 "--concept-types", "ade/Drug", "Adverse_Effect", "--output", str(tmp_path / "calibrated.json")]) == 0
    scores = json.loads((tmp_path / "calibrated.json").read_text())
    assert zero["test_by_scale"]["3.0"]["strict_f"] == round(100 * scores["concepts_strict_f"], 2)
    found = {label: v["tp"] + v["fp"] + v["ignored"] for label, v in scores["concepts_strict_per_type"].items()}
    assert zero["test_by_scale"]["3.0"]["predicted"] == found and sum(found.values()) > 0
    lenient = {label: round(100 * v["f"], 2) for label, v in scores["concepts_lenient_per_type"].items()}
    assert zero["test_by_scale"]["3.0"]["lenient_per_type"] == lenient
    # the transfer model keeps the source corpus's types beside the held-out ones
    trained = json.loads((runs / "finetune" / "ade" / "1shot-seed0" / "transfer" / "model-best" / "softprompt_ie"
                          / "model" / "task.json").read_text())
    assert set(trained["schema"]["corpora"]) == {"meds", "ade"}
    # the source dev folder holds each other corpus's first --dev-limit documents (here all three)
    assert sorted(p.name for p in (runs / "data" / "without-ade" / "dev").iterdir()) == ["meds.spacy"]
    # the transfer run starts from the zero-shot pipeline, the single-corpus run from scratch
    sourced = spacy.util.load_config(runs / "finetune" / "ade" / "1shot-seed0" / "transfer" / "config.cfg")
    assert sourced["components"]["softprompt_ie"]["source"].endswith("zero-shot/pipeline")
    fresh = spacy.util.load_config(runs / "finetune" / "ade" / "1shot-seed0" / "single-corpus" / "config.cfg")
    assert fresh["components"]["softprompt_ie"]["model"]["strategy"] == "hard"
    assert transfer["steps"] == single["steps"] == replay["steps"] == 2
    # transfer + replay: the K-shot sample and K examples per type of the other corpus, from the zero-shot model
    mixed = spacy.util.load_config(runs / "finetune" / "ade" / "1shot-seed0" / "transfer-replay1" / "config.cfg")
    assert mixed["components"]["softprompt_ie"]["source"].endswith("zero-shot/pipeline")
    folder = Path(mixed["paths"]["train"])
    assert sorted(p.name for p in folder.iterdir()) == ["ade.spacy", "meds.spacy"]
    replayed = list(DocBin().from_disk(folder / "meds.spacy").get_docs(spacy.blank("en").vocab))
    assert replayed and {d._.corpus for d in replayed} == {"meds"} and replay["documents"] > transfer["documents"]
    table = output.read_text()
    assert "## Held out: ade" in table and "| ade/Drug | Medication |" in table
    # old types: the source model and the transfer run scored on the other corpus's test file, its types only
    assert set(source["old_f"]) == set(transfer["old_f"]) == set(replay["old_f"]) == {"meds"}
    assert "old_f" not in single
    old = json.loads((runs / "finetune" / "ade" / "1shot-seed0" / "transfer" / "old-types-meds.json").read_text())
    assert set(old["concepts_strict_per_type"]) <= {"Medication", "meds/Dosage"}
    assert "| finetune | source (before) |" in table and "| finetune | K = 1, seed 0 |" in table
    assert "| finetune | K = 1 + replay 1, seed 0 |" in table and "| transfer + replay |" in table
    # resumed: nothing is trained again; a run finished before old types were asked is scored on them
    record = runs / "finetune" / "ade" / "1shot-seed0" / "transfer" / "run.json"
    record.write_text(json.dumps({k: v for k, v in json.loads(record.read_text()).items() if k != "old_f"}))
    capsys.readouterr()
    assert main(argv) == 0
    assert capsys.readouterr().out.count("done before (") == 5
    assert json.loads(record.read_text())["old_f"] == transfer["old_f"]
    # other settings than the finished runs': refused, not mixed in
    length = argv.index("--max-length") + 1
    assert main([("96" if i == length else a) for i, a in enumerate(argv)]) == 2
    assert "made with other settings" in capsys.readouterr().err
    system.write_text(system.read_text().replace("accumulate_gradient = 1", "accumulate_gradient = 2", 1))
    assert main(argv) == 2  # the system's config edited: its runs are not this config's
    assert "made with other settings" in capsys.readouterr().err
    system.write_text((ROOT / "configs" / "finetune.cfg").read_text())
    # another source seed: another source model, in its own folders, trained with that seed
    assert main(argv + ["--source-seed", "7", "--shots"]) == 0
    seeded = spacy.util.load_config(runs / "finetune+seed7" / "ade" / "source" / "config.cfg")
    default = spacy.util.load_config(runs / "finetune" / "ade" / "source" / "config.cfg")
    assert seeded["system"]["seed"] == 7 != default["system"]["seed"]


def test_lodo_refuses_two_systems_with_one_name(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "finetune.cfg").write_text((ROOT / "configs" / "finetune.cfg").read_text())
    (tmp_path / "types.json").write_text(json.dumps(TYPES))
    assert main(["lodo", "--corpus", *write_corpora(tmp_path), "--types", str(tmp_path / "types.json"),
                 "--systems", str(ROOT / "configs" / "finetune.cfg"), str(tmp_path / "a" / "finetune.cfg")]) == 2
    assert "two systems have the same name" in capsys.readouterr().err


def test_lodo_names_a_type_without_description(tmp_path, capsys):
    (tmp_path / "types.json").write_text(json.dumps({"descriptions": {"Medication": "medication name"}}))
    assert main(["lodo", "--corpus", *write_corpora(tmp_path), "--types", str(tmp_path / "types.json")]) == 2
    assert "no description for" in capsys.readouterr().err


def test_project_command_is_the_verb():
    (script,) = project()["commands"]["lodo"]["script"]
    args = verb_args(script)
    assert args.held_out == ["ade", "sdoh", "maccrobat"] and args.shots == [5, 10, 20, 50, 100] and args.replay > 0
    descriptions = json.loads((ROOT / "configs" / "lodo_types.json").read_text())["descriptions"]
    assert {"ade/Drug", "Medication", "sdoh/Drug", "maccrobat/Dosage"} <= set(descriptions)
    for system in args.systems:
        assert (ROOT / system).is_file()


def committed_args(report: str) -> dict:
    """The arguments of the command docs/lodo/<report>.json records it was made by."""
    import shlex

    from spacy_softprompt.cli import build_parser

    committed = json.loads((ROOT / "docs" / "lodo" / f"{report}.json").read_text())["command"]
    return vars(build_parser().parse_args(shlex.split(committed)[3:]))


@pytest.mark.parametrize("command,scoring,report", [("lodo-zero-shot", "dot", "zero_shot_calibrated"),
                                                    ("lodo-zero-shot", "cosine", "zero_shot_cosine_calibrated"),
                                                    ("lodo-zero-shot-seed1", "dot", "zero_shot_seed1"),
                                                    ("lodo-zero-shot-finetune", "dot", "zero_shot_finetune"),
                                                    ("lodo-zero-shot-scheme", "dot", "zero_shot_scheme")])
def test_project_zero_shot_command_is_the_committed_runs(command, scoring, report):
    """lodo-zero-shot (with its vars), lodo-zero-shot-seed1, -finetune and -scheme are the commands each committed
    zero-shot report was made by, held-out order aside."""
    overrides = {"vars.lodo_zero_shot_type_scoring": scoring, "vars.lodo_zero_shot_output": f"docs/lodo/{report}.md"}
    script = project(overrides)["commands"][command]["script"][-1]
    ours, theirs = vars(verb_args(script)), committed_args(report)
    for args in (ours, theirs):
        args["held_out"] = sorted(args["held_out"])
    assert ours == theirs and ours["zero_shot_calibration"] == [1.0, 3.0, 10.0, 30.0]


def test_scheme_lever_changes_only_sdoh_argument_descriptions():
    """Lever 7 (lodo-zero-shot-scheme, -finetune-scheme) is lever 5's (6's) command with lodo_types_scheme.json,
    whose descriptions differ from lodo_types.json only on SDoH argument types of annotation.conf, so only they can
    explain a change."""
    base, scheme = (json.loads((ROOT / "configs" / name).read_text())
                    for name in ("lodo_types.json", "lodo_types_scheme.json"))
    assert scheme["related"] == base["related"] and list(scheme["descriptions"]) == list(base["descriptions"])
    changed = {t for t, text in scheme["descriptions"].items() if text != base["descriptions"][t]}
    arguments = {"Amount", "Extent", "sdoh/Frequency", "sdoh/History", "LivingStatus", "MedicalCondition", "Method",
                 "Other", "sdoh/Time", "Type", "StatusTime", "QuitHistory", "ExposureHistory", "Location"}
    assert {"sdoh/Time", "MedicalCondition"} <= changed <= arguments

    commands = project()["commands"]
    for lever7, before in [("lodo-zero-shot-scheme", "lodo-zero-shot-seed1"),
                           ("lodo-zero-shot-finetune-scheme", "lodo-zero-shot-finetune")]:
        ours, theirs = (vars(verb_args(commands[name]["script"][-1])) for name in (lever7, before))
        assert {k for k in ours if ours[k] != theirs[k]} == {"types", "runs", "output"}
        assert str(ours["types"]).endswith("lodo_types_scheme.json")
        assert commands[lever7]["script"][:-1] == commands[before]["script"][:-1]


def test_long_fewshot_command_changes_only_the_fewshot_steps():
    """lodo-finetune-long is lodo-finetune (SDoH held out, K = 20) with four times the few-shot steps, in its own
    runs folder, so the step count alone can explain a change."""
    commands = project()["commands"]
    ours, theirs = (vars(verb_args(commands[name]["script"][-1])) for name in ("lodo-finetune-long", "lodo-finetune"))
    assert {k for k in ours if ours[k] != theirs[k]} == {"fewshot_steps", "runs", "output"}
    assert ours["fewshot_steps"] == 4 * theirs["fewshot_steps"] and ours["held_out"] == ["sdoh"]
    assert commands["lodo-finetune-long"]["script"][:-1] == commands["lodo-finetune"]["script"][:-1]
    assert ours == committed_args("sdoh_finetune_long")  # the command the committed report was made by


@pytest.mark.parametrize("held_out", ["ade", "maccrobat", "sdoh"])
def test_project_frozen_command_is_the_committed_frozen_run(held_out):
    """lodo-frozen (with its held-out var) is the command each docs/lodo/<held-out>.md was made by, so the frozen
    and unfrozen arms (lodo-finetune) differ in their system alone."""
    shots = "5 10 20 50 100"  # each frozen report has the whole curve
    overrides = {"vars.lodo_frozen_held_out": held_out, "vars.lodo_frozen_shots": shots}
    commands = project(overrides)["commands"]
    ours, theirs = vars(verb_args(commands["lodo-frozen"]["script"][-1])), committed_args(held_out)
    assert (ours.pop("gpu_id"), theirs.pop("gpu_id")) == (-1, -1)
    assert ours == theirs and 20 in ours["shots"] and ours["systems"] == ["configs/lora_frozen.cfg"]
    unfrozen = vars(verb_args(commands["lodo-finetune"]["script"][-1]))
    assert {k for k in ours if ours[k] != unfrozen.get(k)} <= {"systems", "held_out", "shots", "output", "gpu_id"}


@pytest.mark.parametrize("held_out,shots,suffix", [("ade", "5 10 20 50", ""), ("ade", "100", "_k100"),
                                                   ("maccrobat", "5 10 20 50 100", ""), ("sdoh", "5 10 20 50 100", "")])
def test_project_finetune_command_is_the_committed_unfrozen_run(held_out, shots, suffix, tmp_path):
    """lodo-finetune (with its vars) is the command each docs/lodo/<held-out>_finetune<suffix>.md was made by, and
    the system it writes is the finetune preset with prompts and heads at 50x, so they are the same arm."""
    # (`spacy project run` reads a lone number on its command line as a number)
    overrides = {"vars.lodo_finetune_held_out": held_out, "vars.lodo_finetune_shots": int(shots) if shots.isdigit()
                 else shots, "vars.lodo_finetune_suffix": suffix}
    make_config, run = project(overrides)["commands"]["lodo-finetune"]["script"]
    ours, theirs = vars(verb_args(run)), committed_args(f"{held_out}_finetune{suffix}")
    assert (ours.pop("gpu_id"), theirs.pop("gpu_id")) == (-1, -1)
    assert ours == theirs and ours["shots"] == [int(k) for k in shots.split()] and ours["held_out"] == [held_out]
    assert check_made_configs([make_config], tmp_path, "head_lr_scale", 50.0, 1.0) == [(ours["systems"][0], "finetune")]


def test_strategy_is_one_that_asks_by_description(capsys):
    from spacy_softprompt.cli import build_parser

    parser = build_parser()
    base = ["lodo", "--corpus", "a=x", "b=y"]
    assert parser.parse_args(base).strategy == "hard"
    assert parser.parse_args(base + ["--strategy", "hard_soft"]).strategy == "hard_soft"
    with pytest.raises(SystemExit):  # soft prompts per type: a held-out type would have no trained prompt
        parser.parse_args(base + ["--strategy", "soft"])
    assert "invalid choice: 'soft'" in capsys.readouterr().err


def test_query_part_settings_name_their_runs():
    """--packed-types corpus, --shuffle-types and --type-scoring cosine are model settings of every run, named in the
    run folders, so their runs never resume the committed runs' (made with neither)."""
    from spacy_softprompt.cli import build_parser
    from spacy_softprompt.cli.lodo import run_name

    parser = build_parser()
    base = ["lodo", "--corpus", "a=x", "b=y"]
    assert run_name("lora_frozen", parser.parse_args(base)) == "lora_frozen"
    args = parser.parse_args(base + ["--packed-types", "corpus", "--shuffle-types", "--strategy", "hard_soft",
                                     "--type-scoring", "cosine"])
    assert (args.packed_types, args.shuffle_types, args.type_scoring) == ("corpus", True, "cosine")
    assert run_name("lora_frozen", args) == "lora_frozen+hard_soft+corpus+shuffled+cosine"
    # another source seed is another source model: its own run folders, never the default seed's
    assert run_name("lora_frozen", parser.parse_args(base + ["--source-seed", "1"])) == "lora_frozen+seed1"


def test_zero_shot_threshold_is_chosen_on_the_other_held_out_corpora():
    """Each held-out corpus gets the threshold best on average over the other held-out corpora's dev
    files (ties: the higher), never one its own labels chose; the report scores it there."""
    from spacy_softprompt.cli.lodo import THRESHOLDS, chosen_values, to_markdown

    def zero(held_out, dev, test_f):
        return {"system": "s", "kind": "zero-shot", "held_out": held_out, "shots": 0, "seed": None, "strict_f": 1.0,
                "per_type": {f"{held_out}/T": 1.0}, "dev_by_threshold": dev,
                "test_by_threshold": {t: {"strict_f": f, "per_type": {f"{held_out}/T": f}} for t, f in test_f.items()}}

    runs = [zero("a", {"0.1": 90.0, "0.5": 0.0}, {"0.1": 11.0, "0.5": 0.0}),  # a's own dev would pick 0.1
            zero("b", {"0.1": 10.0, "0.5": 20.0}, {"0.1": 12.0, "0.5": 22.0}),
            zero("c", {"0.1": 30.0, "0.5": 30.0}, {"0.1": 13.0, "0.5": 23.0})]
    chosen = chosen_values(runs, THRESHOLDS)
    assert chosen[("s", "a")] == "0.5"  # mean of b, c: 20 at 0.1, 25 at 0.5
    assert chosen[("s", "b")] == "0.1"  # a, c: 60 against 15
    assert chosen[("s", "c")] == "0.1"  # a, b: 50 against 10
    assert chosen_values(runs[:1], THRESHOLDS) == {}  # no other held-out corpus: nothing chosen
    report = {"command": "lodo", "backbone": "x", "source_steps": 1, "fewshot_steps": 1, "wall_seconds": 1.0,
              "types": {h: [f"{h}/T"] for h in "abc"}, "related": {}, "runs": runs}
    table = to_markdown(report)
    assert "| a/T | - | 1.0 | 0.0 |" in table and "| s | 0 (zero-shot, p = 0.5) | 0.0 |" in table
    assert "| s | a | 90.0 | **0.0** |" in table


def test_zero_shot_calibration_is_reported_at_the_scale_the_other_corpora_choose():
    """The calibration scale is chosen as the threshold is, on the other held-out corpora's dev
    files; the per-type table counts the types with a related type and a test mention above 0."""
    from spacy_softprompt.cli.lodo import CALIBRATION, chosen_values, to_markdown

    def zero(held_out, dev, per_type):
        return {"system": "s", "kind": "zero-shot", "held_out": held_out, "shots": 0, "seed": None, "strict_f": 0.0,
                "per_type": {label: 0.0 for label in per_type}, "dev_by_scale": dev,
                "test_by_scale": {k: {"strict_f": 5.0, "per_type": per_type} for k in dev}}

    runs = [zero("a", {"1.0": 50.0, "3.0": 0.0}, {"a/T": 2.0, "a/U": 0.0}),
            zero("b", {"1.0": 0.0, "3.0": 10.0}, {"b/T": 1.0, "b/U": 3.0})]
    assert chosen_values(runs, CALIBRATION) == {("s", "a"): "3.0", ("s", "b"): "1.0"}
    report = {"command": "lodo", "backbone": "x", "source_steps": 1, "fewshot_steps": 1, "wall_seconds": 1.0,
              "types": {h: [f"{h}/T", f"{h}/U"] for h in "ab"}, "runs": runs,
              "related": {"a/T": ["b/T"], "a/U": ["b/U"], "b/T": ["a/T"], "b/U": []},
              "in_test": {"a": ["a/T", "a/U"], "b": ["b/T", "b/U"]}}
    table = to_markdown(report)
    assert "| s | 0 (zero-shot, calibrated, density × 3.0) | 5.0 |" in table
    assert "| a/T | b/T | 0.0 | 2.0 |" in table
    assert "| **related types above 0** | | 0 of 2 | 1 of 2 |" in table  # a
    assert "| **related types above 0** | | 0 of 1 | 1 of 1 |" in table  # b: b/U has no related type
    assert "## Zero-shot calibration" in table and "| s | a | **50.0** | 0.0 |" not in table
    assert "| s | a | 50.0 | **0.0** |" in table


def test_types_vote_picks_the_scale_at_which_the_other_corpora_find_most_related_types():
    """Lever 5: the types vote gives a held-out corpus the scale at which the other held-out corpora find
    the largest mean share of their related types on dev (types without a related type, or without a dev
    mention, do not count; ties: micro F1), where the micro-F1 vote may give another."""
    from spacy_softprompt.cli.lodo import CALIBRATION, CALIBRATION_BY_TYPES, chosen_values, to_markdown

    def zero(held_out, dev, dev_types):
        return {"system": "s", "kind": "zero-shot", "held_out": held_out, "shots": 0, "seed": None, "strict_f": 0.0,
                "per_type": {}, "dev_by_scale": dev, "dev_types_by_scale": dev_types,
                "test_by_scale": {k: {"strict_f": float(k), "per_type": {f"{held_out}/T": float(k)},
                                      "lenient_per_type": {f"{held_out}/T": 10 * float(k)}} for k in dev}}

    related = {"a/T": ["b/T"], "b/T": ["a/T"], "b/U": ["a/T"], "c/T": ["a/T"]}
    runs = [zero("a", {"1.0": 9.0, "3.0": 1.0}, {"1.0": {"a/T": 0.0}, "3.0": {"a/T": 2.0}}),
            # b finds its one related type at 1.0 and both at 3.0; b/V has no related type and is not counted
            zero("b", {"1.0": 40.0, "3.0": 10.0}, {"1.0": {"b/T": 5.0, "b/U": 0.0, "b/V": 9.0},
                                                   "3.0": {"b/T": 5.0, "b/U": 1.0, "b/V": 0.0}}),
            zero("c", {"1.0": 6.0, "3.0": 5.0}, {"1.0": {"c/T": 0.0}, "3.0": {"c/T": 0.0}})]
    # micro F1 of the other two is best at 1.0 for each; their share of related types found at 3.0:
    # a's others b, c: 1/2 and 0 at 1.0, 1 and 0 at 3.0; b's: a 0 and c 0, then 1 and 0; c's: 0 and 1/2, then 1 and 1
    assert chosen_values(runs, CALIBRATION) == {("s", h): "1.0" for h in "abc"}
    assert chosen_values(runs, CALIBRATION_BY_TYPES, related) == {("s", h): "3.0" for h in "abc"}
    # a corpus with no related type in dev does not vote: with c alone as the other, micro F1 decides
    assert chosen_values([runs[0], runs[2]], CALIBRATION_BY_TYPES, {}) == {("s", "a"): "1.0", ("s", "c"): "1.0"}
    report = {"command": "lodo", "backbone": "x", "source_steps": 1, "fewshot_steps": 1, "wall_seconds": 1.0,
              "types": {h: [f"{h}/T"] for h in "abc"}, "related": related, "runs": runs}
    table = to_markdown(report)
    assert "## Zero-shot calibration, types vote" in table
    assert "| s | a | 0 of 1 | **1 of 1** |" in table and "| s | b | 1 of 2 | **2 of 2** |" in table
    assert "| s | c | 0 of 1 | **0 of 1** |" in table and "| s | c | **6.0** | 5.0 |" in table
    assert "| s | 0 (zero-shot, calibrated, types vote, density × 3.0) | 3.0 |" in table
    # beside the types vote's column, its lenient F1 per type, counted apart from the strict target
    assert "| s, calibrated, types vote, density × 3.0, lenient F1 |" in table
    assert "| a/T | b/T | n/r | 1.0 | 3.0 | 30.0 |" in table
    report["in_test"] = {h: [f"{h}/T"] for h in "abc"}
    assert "| **related types above 0** | | 0 of 1 | 1 of 1 | 1 of 1 | 1 of 1 (lenient) |" in to_markdown(report)


def test_plot_only_where_there_are_few_shot_curves(tmp_path):
    """A zero-shot-only report has no curve to draw (its PNG was empty panels): none is written; one with few-shot
    runs gets its plot."""
    pytest.importorskip("matplotlib")
    from spacy_softprompt.cli.lodo import write_report

    def run(kind, shots, seed=None):
        return {"system": "s", "kind": kind, "held_out": "a", "shots": shots, "seed": seed, "strict_f": 10.0,
                "per_type": {"a/T": 10.0}}

    report = {"command": "lodo", "backbone": "x", "source_steps": 1, "fewshot_steps": 1, "types": {"a": ["a/T"]},
              "related": {}, "runs": [run("source", None), run("zero-shot", 0)]}
    write_report(report, tmp_path / "zero.md", True, 1.0)
    assert (tmp_path / "zero.md").is_file() and not (tmp_path / "zero.png").exists()
    report["runs"] += [run("transfer", 5, 0), run("single corpus", 5, 0)]
    write_report(report, tmp_path / "curves.md", True, 1.0)
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_old_type_scores_added_on_resume_keep_a_run_identity(tmp_path):
    """A source run finished before old types were scored gets them on resume; the runs built on it
    recorded its identity then, and must still match it after (else every rerun is refused)."""
    import hashlib

    from spacy_softprompt.cli.lodo import _stamp

    path = tmp_path / "run.json"
    path.write_text(json.dumps({"kind": "source", "steps": 2}, indent=2) + "\n")
    before = _stamp(path)
    assert before == hashlib.sha1(path.read_bytes()).hexdigest()[:12]  # as the stamps already recorded
    path.write_text(json.dumps({"kind": "source", "steps": 2, "old_f": {"meds": 50.0}}, indent=2) + "\n")
    assert _stamp(path) == before
    # so do a zero-shot run's threshold scores, added when a rerun asks for them
    zero = tmp_path / "zero.json"
    zero.write_text(json.dumps({"kind": "zero-shot", "strict_f": 1.0}, indent=2) + "\n")
    stamp = _stamp(zero)
    zero.write_text(json.dumps({"kind": "zero-shot", "strict_f": 1.0, "dev_by_threshold": {"0.5": 1.0},
                                "test_by_threshold": {"0.5": {"strict_f": 1.0, "per_type": {}}},
                                "dev_by_scale": {"1.0": 1.0}, "test_by_scale": {"1.0": {"strict_f": 1.0, "per_type": {}}},
                                "calibrated_thresholds": {"1.0": {"T": 0.1}}}, indent=2) + "\n")
    assert _stamp(zero) == stamp
    path.write_text(json.dumps({"kind": "source", "steps": 3, "old_f": {"meds": 50.0}}, indent=2) + "\n")
    assert _stamp(path) != before


def test_old_types_caption_names_replay_only_when_a_replay_arm_ran():
    from spacy_softprompt.cli.lodo import REPLAY, _old_types_table

    source = {"system": "s", "kind": "source", "old_f": {"ade": 80.0}}
    transfer = {"system": "s", "kind": "transfer", "shots": 20, "seed": 0, "old_f": {"ade": 60.0}}
    replay = {**transfer, "kind": REPLAY, "replay": 5, "old_f": {"ade": 75.0}}
    plain = _old_types_table([source, transfer])
    assert "replay" not in plain[0] and "| s | K = 20, seed 0 | 60.0 (-20.0) |" in plain
    both = _old_types_table([source, transfer, replay])
    assert "transfer + replay of R examples" in both[0] and "| s | K = 20 + replay 5, seed 0 | 75.0 (-5.0) |" in both


@pytest.mark.parametrize("option,values", [("--seeds", ["0", "1", "0"]), ("--shots", ["5", "5"]),
                                           ("--held-out", ["ade", "ade"])])
def test_a_repeated_seed_shot_or_corpus_is_refused(option, values, tmp_path, capsys):
    """Each repeat was run (or read back) again and counted twice in the means."""
    assert main(["lodo", "--corpus", *write_corpora(tmp_path), option, *values]) == 2
    assert f"{option} names {values[-1]} more than once" in capsys.readouterr().err


@pytest.mark.parametrize("content,message", [
    ('{"descriptions": {},}', "not JSON (line 1"),
    ('["Medication"]', 'expected an object with "descriptions"'),
    ('{"descriptions": {"Medication": 5}}', "Medication: a description is a non-empty string"),
    ('{"descriptions": {}, "related": {"ade/Drug": "Medication"}}', "ade/Drug: a description is"),
    ('{"descriptions": {"Medication": "m"}}', "no description for Adverse_Effect, ade/Drug, meds/Dosage"),
    (json.dumps({**TYPES, "related": {"ade/Drug": ["Medicaton"]}}), "related names Medicaton, which"),
])
def test_a_bad_types_table_is_named_before_any_training(content, message, tmp_path, capsys):
    """A types table that is not JSON, not of its shape, or names a type it does not describe: one error naming
    the file (was: a traceback, or a run that trained the source model and then failed or reported a typo)."""
    types = tmp_path / "types.json"
    types.write_text(content)
    assert main(["lodo", "--corpus", *write_corpora(tmp_path), "--types", str(types),
                 "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert f"{types}:" in err and message in err and not (tmp_path / "runs").exists()


def test_bad_corpora_and_seeds_are_refused_before_any_training(tmp_path, capsys):
    corpora = write_corpora(tmp_path)
    (tmp_path / "types.json").write_text(json.dumps(TYPES))
    base = ["lodo", "--types", str(tmp_path / "types.json"), "--runs", str(tmp_path / "runs")]
    # a corpus named twice replaced the first silently
    assert main([*base, "--corpus", *corpora, corpora[0]]) == 2
    assert "--corpus names meds twice" in capsys.readouterr().err
    # forgetting measured for a seed with no transfer run: never measured, without a word
    assert main([*base, "--corpus", *corpora, "--seeds", "0", "1", "--forgetting-seeds", "7"]) == 2
    assert "--forgetting-seeds 7: not among --seeds 0 1" in capsys.readouterr().err
    # K = 0 failed only after the source model had trained
    with pytest.raises(SystemExit):
        main([*base, "--corpus", *corpora, "--shots", "0"])
    assert "0: must be at least 1" in capsys.readouterr().err
    # an empty corpus file
    DocBin().to_disk(tmp_path / "ade" / "dev.spacy")
    assert main([*base, "--corpus", *corpora]) == 2
    assert f"{tmp_path / 'ade' / 'dev.spacy'}: no documents" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_prompts_alone_command_differs_from_the_frozen_arm_in_its_system_and_strategy():
    """lodo-frozen-prompts is lodo-frozen (ADE held out, K = 20) with soft prompts alone on the frozen backbone,
    asked after a shared learned prompt, so system and strategy alone can explain a change."""
    commands = project({"vars.lodo_frozen_held_out": "ade"})["commands"]
    ours, theirs = (vars(verb_args(commands[name]["script"][-1])) for name in ("lodo-frozen-prompts", "lodo-frozen"))
    assert {k for k in ours if ours[k] != theirs[k]} == {"systems", "strategy", "output"}
    assert ours["systems"] == ["configs/soft_prompt_frozen.cfg"] and ours["strategy"] == "hard_soft"
    assert ours["held_out"] == ["ade"] and ours["shots"] == [20]
    assert ours == committed_args("ade_prompts")  # the command the committed report was made by


def test_a_corpus_without_concepts_to_learn_is_refused(tmp_path, capsys):
    corpora = write_corpora(tmp_path)
    (tmp_path / "types.json").write_text(json.dumps(TYPES))
    train = tmp_path / "ade" / "train.spacy"
    docs = list(DocBin(store_user_data=True).from_disk(train).get_docs(spacy.blank("en").vocab))
    for doc in docs:
        doc.spans.clear()
    DocBin(store_user_data=True, docs=docs).to_disk(train)
    assert main(["lodo", "--corpus", *corpora, "--types", str(tmp_path / "types.json")]) == 2
    assert f"{tmp_path / 'ade' / 'train'}.spacy: no concepts" in capsys.readouterr().err


def test_prompts_alone_second_seed_is_the_same_source_run_again_zero_shot_only():
    """lodo-frozen-prompts-seed1 is lodo-frozen-prompts with another source seed and no few-shot runs."""
    commands = project()["commands"]
    ours, theirs = (vars(verb_args(commands[name]["script"][-1]))
                    for name in ("lodo-frozen-prompts-seed1", "lodo-frozen-prompts"))
    assert {k for k in ours if ours[k] != theirs[k]} == {"shots", "source_seed", "output"}
    assert ours["shots"] == [] and ours["source_seed"] == 1
    assert ours == committed_args("ade_prompts_seed1")  # the command the committed report was made by
