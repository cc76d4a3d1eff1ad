"""``cats-curve`` (cli/cats_curve.py): classification-only training of softprompt_ie ignores the
corpus's concepts and relations, subsamples nest and are seeded, project.yml's ``cats-curve`` is
the verb, and the verb runs in small (two sizes, one seed, two steps of the tiny random BERT,
softprompt_ie against the stock textcat) and resumes without retraining; ``--folds`` tests every
document once and pools the folds' predictions as spaCy's textcat scorer counts them."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import spacy
import torch
from spacy.tokens import DocBin
from spacy.training import Example

from spacy_softprompt.cli import CLIError, main
from spacy_softprompt.cli.init_config import STOCK_TEXTCAT
from spacy_softprompt.cli.cats_curve import (CLASSIFICATION_ONLY, WITH_CONCEPTS, mcnemar_p, paired_counts,
                                             parse_sizes, plot_curve, pooled_scores, run_settings, stratified_folds,
                                             subsample, summarize, to_markdown, with_concepts)
from spacy_softprompt.cli.runs import load_systems

from conftest import ROOT, annotate, check_made_configs, project, verb_args

NOTES = [  # (text, concepts, relations, smoking status)
    ("Patient smokes a pack of cigarettes daily.", [("smokes", "Tobacco"), ("daily", "Frequency")],
     [("smokes", "Frequency", "daily")], "current"),
    ("Current smoker, twenty pack years.", [("smoker", "Tobacco")], [], "current"),
    ("She quit smoking ten years ago.", [("smoking", "Tobacco"), ("ten years ago", "Time")],
     [("smoking", "Time", "ten years ago")], "past"),
    ("Former smoker, stopped in 2001.", [("smoker", "Tobacco")], [], "past"),
    ("Patient denies tobacco use.", [("tobacco", "Tobacco")], [], "never"),
    ("She has never used tobacco.", [("tobacco", "Tobacco")], [], "never"),
    ("He smokes cigars every day.", [("smokes", "Tobacco")], [], "current"),
    ("No history of tobacco.", [("tobacco", "Tobacco")], [], "never"),
]
CLASSES = ("current", "past", "never")


def notes(with_spans: bool = True):
    nlp = spacy.blank("en")
    docs = []
    for text, concepts, relations, status in NOTES:
        doc = annotate(nlp, text, concepts, relations) if with_spans else nlp.make_doc(text)
        doc.cats = {label: float(label == status) for label in CLASSES}
        docs.append(doc)
    return docs


def two_step_run(tmp_path: Path, tiny_bert: str, monkeypatch, output: Path, *options: str):
    """The notes written as train (all 8), dev (the first 4) and test (the last 4) files in
    ``tmp_path``; the arguments of a two-step cats-curve run of finetune.cfg on them, all sizes,
    seed 0, run folder ``tmp_path / "runs"``, with ``options``."""
    docs = notes()
    for split, part in (("train", docs), ("dev", docs[:4]), ("test", docs[4:])):
        DocBin(store_user_data=True, docs=part).to_disk(tmp_path / f"{split}.spacy")
    monkeypatch.setenv("SPACY_CONFIG_OVERRIDES", "--training.optimizer.learn_rate.warmup_steps 1")
    return ["cats-curve", "--systems", str(ROOT / "configs" / "finetune.cfg"), *options,
            "--train", str(tmp_path / "train.spacy"), "--dev", str(tmp_path / "dev.spacy"),
            "--test", str(tmp_path / "test.spacy"), "--sizes", "all", "--seeds", "0", "--max-steps", "2",
            "--eval-frequency", "2", "--backbone", tiny_bert, "--runs", str(tmp_path / "runs"),
            "--output", str(output), "--no-plot"]


def train_losses(tiny_bert: str, docs, steps: int = 2, initialize=CLASSIFICATION_ONLY):
    """A softprompt_ie initialized with ``initialize`` (classification only by default) on ``docs``:
    the component and its loss per step."""
    torch.manual_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("softprompt_ie", config={"exclusive_classes": True, "model": {
        "backbone": tiny_bert, "strategy": "soft", "freeze_backbone": True, "prompt_length": 4, "max_length": 64}})
    nlp.config["initialize"]["components"]["softprompt_ie"] = dict(initialize)
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in docs]
    optimizer = nlp.initialize(lambda: examples)
    losses = [nlp.update(examples, sgd=optimizer, drop=0.0)["softprompt_ie"] for _ in range(steps)]
    return nlp.get_pipe("softprompt_ie"), losses


def test_classification_only_ignores_concepts_and_relations(tiny_bert):
    component, losses = train_losses(tiny_bert, notes(with_spans=True))
    assert component.labels == () and component.schema.triggers == {}
    assert component.cat_labels == tuple(sorted(CLASSES))
    _, plain = train_losses(tiny_bert, notes(with_spans=False))
    assert losses == pytest.approx(plain, rel=1e-5)  # the spans add nothing to the loss


def test_with_concepts_learns_the_concept_types_beside_the_classes(tiny_bert):
    """``--with-concepts`` runs: the notes' concept types are learned (their spans add to the loss),
    relations are not, and the classes are the same exclusive classes."""
    component, losses = train_losses(tiny_bert, notes(with_spans=True), initialize=WITH_CONCEPTS)
    assert component.labels == ("Frequency", "Time", "Tobacco") and component.schema.triggers == {}
    assert component.cat_labels == tuple(sorted(CLASSES))
    _, alone = train_losses(tiny_bert, notes(with_spans=True))
    assert losses[0] > alone[0]  # the concept loss is added to the classes'
    # SYSTEM=Tobacco: that type alone is learned; the notes' other spans are not asked, and train nothing
    one, _ = train_losses(tiny_bert, notes(with_spans=True), initialize={**WITH_CONCEPTS, "labels": ["Tobacco"]})
    assert one.labels == ("Tobacco",) and one.cat_labels == tuple(sorted(CLASSES))


def test_run_settings_initialize_the_classes_alone_or_with_the_chosen_concept_types():
    import argparse

    (_, config), = load_systems([str(ROOT / "configs" / "finetune.cfg")])
    args = argparse.Namespace(max_steps=2, eval_frequency=1, dev_limit=0, backbone="default")

    def initialize(concepts):
        return run_settings(config, Path("t"), Path("d"), args, 0, Path("log"), concepts)["initialize.components.softprompt_ie"]

    assert initialize(None) == CLASSIFICATION_ONLY and initialize(()) == WITH_CONCEPTS
    assert initialize(("Tobacco", "StatusTime")) == {**WITH_CONCEPTS, "labels": ["Tobacco", "StatusTime"]}


def test_with_concepts_adds_a_variant_after_its_system_and_checks_names(tmp_path, capsys):
    systems = load_systems([str(ROOT / "configs" / "finetune.cfg"), "stock_transformer_textcat"])
    variants, learned = with_concepts(systems, ["finetune"])
    assert [name for name, _ in variants] == ["finetune", "finetune+concepts", "stock_transformer_textcat"]
    assert variants[1][1] is variants[0][1]  # the same config: only the initialization differs
    assert learned == {"finetune+concepts": ()}  # every type of the training notes
    assert with_concepts(systems, []) == (systems, {})
    # SYSTEM=TYPE,TYPE: a variant learning those types alone, named by them, after the system's other variants
    some, learned = with_concepts(systems, ["finetune", "finetune=Tobacco,sdoh/Time"])
    assert [name for name, _ in some] == ["finetune", "finetune+concepts", "finetune+concepts-Tobacco-sdoh_Time",
                                          "stock_transformer_textcat"]
    assert learned["finetune+concepts-Tobacco-sdoh_Time"] == ("Tobacco", "sdoh/Time")
    with pytest.raises(CLIError, match="give SYSTEM or SYSTEM=TYPE,TYPE"):
        with_concepts(systems, ["finetune="])
    # a config that is not one of --systems: its variant alone, before the system the others are paired with
    alone, _ = with_concepts(systems, ["finetune", "lora_frozen"])
    assert [name for name, _ in alone] == [
        "finetune", "finetune+concepts", "lora_frozen+concepts", "stock_transformer_textcat"]
    assert alone[2][1]["components"]["softprompt_ie"]["model"]["freeze_backbone"] is True
    with pytest.raises(CLIError, match="--with-concepts 'lora' is neither a .cfg file nor an init-config preset"):
        with_concepts(systems, ["lora"])
    # a system given by its config file is that system; a variant never displaces the last system
    by_path, _ = with_concepts(systems, [str(ROOT / "configs" / "finetune.cfg")])
    assert [name for name, _ in by_path] == [name for name, _ in variants]
    last, _ = with_concepts(list(reversed(systems)), ["finetune"])
    assert [name for name, _ in last] == ["stock_transformer_textcat", "finetune+concepts", "finetune"]
    other = tmp_path / "finetune.cfg"  # another config with the name of one of --systems
    other.write_text((ROOT / "configs" / "lora_frozen.cfg").read_text())
    with pytest.raises(CLIError, match="named 'finetune' too, with another config"):
        with_concepts(systems, [str(other)])
    # training notes without concepts: nothing to learn beside the classes, said before any run
    for split in ("train", "dev", "test"):
        DocBin(docs=notes(with_spans=False)).to_disk(tmp_path / f"{split}.spacy")
    assert main(["cats-curve", "--systems", str(ROOT / "configs" / "finetune.cfg"), "--with-concepts", "finetune",
                 "--train", str(tmp_path / "train.spacy"), "--dev", str(tmp_path / "dev.spacy"),
                 "--test", str(tmp_path / "test.spacy"), "--runs", str(tmp_path / "runs"),
                 "--output", str(tmp_path / "out.md"), "--no-plot"]) == 2
    assert "has no concepts (doc.spans['softprompt'] or doc.ents) for finetune+concepts" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    # a type the training notes do not have: said before any run, with the types they have
    DocBin(docs=notes(with_spans=True)).to_disk(tmp_path / "train.spacy")
    assert main(["cats-curve", "--systems", str(ROOT / "configs" / "finetune.cfg"), "--with-concepts",
                 "finetune=Tobacco,Tobaco", "--train", str(tmp_path / "train.spacy"), "--dev", str(tmp_path / "dev.spacy"),
                 "--test", str(tmp_path / "test.spacy"), "--runs", str(tmp_path / "runs"),
                 "--output", str(tmp_path / "out.md"), "--no-plot"]) == 2
    assert ("has no Tobaco concepts for finetune+concepts-Tobacco-Tobaco (its types: Frequency, Time, Tobacco)"
            in capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()
    with pytest.raises(CLIError, match="only a softprompt_ie system learns concepts"):
        with_concepts(systems, ["stock_transformer_textcat"])
    with pytest.raises(CLIError, match="the same name"):
        with_concepts(systems, ["finetune", "finetune"])


def test_subsamples_are_seeded_nested_and_checked():
    docs = list(range(10))
    assert subsample(docs, 4, 0) == subsample(docs, 4, 0) == subsample(docs, 6, 0)[:4]
    assert subsample(docs, 4, 0) != subsample(docs, 4, 1)
    assert subsample(docs, "all", 3) == docs
    with pytest.raises(CLIError, match="--sizes 11: the documents to train on are only 10; use 'all'"):
        subsample(docs, 11, 0)
    assert parse_sizes(["all", "50", "25"]) == [25, 50, "all"]
    assert main(["cats-curve", "--systems", "finetune", "--train", "nowhere.spacy"]) == 2


def test_inputs_that_would_waste_the_runs_are_refused_before_training(tmp_path, monkeypatch, capsys):
    """A test (or dev) file without doc.cats scored every run 0.0; a size above the pool failed after the smaller
    sizes had trained; a repeated seed counted each run twice."""
    argv = two_step_run(tmp_path, "no-backbone-needed", monkeypatch, tmp_path / "out.md")
    sizes = argv.index("--sizes") + 1
    assert main(argv[:sizes] + ["4", "9"] + argv[sizes + 1:]) == 2
    assert "--sizes 9: the documents to train on are only 8" in capsys.readouterr().err
    assert main(argv + ["--seeds", "0", "0"]) == 2
    assert "--seeds names 0 more than once" in capsys.readouterr().err
    DocBin(docs=[spacy.blank("en")("No status.")]).to_disk(tmp_path / "test.spacy")
    assert main(argv) == 2
    assert f"{tmp_path / 'test.spacy'} has no doc.cats" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "all-seed0").exists()


def test_project_command_is_the_verb():
    """project.yml's ``cats-curve`` (with its default vars) parses as the verb's arguments, and the
    ``smoking-curve`` workflow converts the corpus first (the run itself is tested below, in-process:
    a ``spacy project run`` child would add seconds of imports)."""
    config = project()
    (script,) = config["commands"]["cats-curve"]["script"]
    args = verb_args(script)
    assert args.sizes == ["25", "50", "100", "200", "all"] and args.seeds == [0, 1, 2]
    assert args.systems == ["configs/lora_frozen.cfg", "configs/soft_prompt_frozen.cfg", "configs/finetune.cfg",
                            "configs/stock_transformer_textcat.cfg"]
    assert args.output == Path("docs/smoking_curve.md") and str(args.train) == "corpus/sdoh-smoking/train.spacy"
    assert config["workflows"]["smoking-curve"] == ["convert-sdoh-status", "cats-curve"]
    for system in args.systems:
        assert (ROOT / system).is_file()


def test_alcohol_command_is_the_smoking_curve_on_the_alcohol_files():
    """``cats-curve-alcohol`` differs from ``cats-curve`` only in its corpus, run folder and report, so
    the two curves stay comparable when either command's systems or steps change."""
    config = project()
    smoking, alcohol = (vars(verb_args(config["commands"][name]["script"][0]))
                        for name in ("cats-curve", "cats-curve-alcohol"))
    for split in ("train", "dev", "test"):
        assert str(alcohol.pop(split)) == f"corpus/sdoh-alcohol/{split}.spacy"
        smoking.pop(split)
    assert (alcohol.pop("runs"), smoking.pop("runs")) == (Path("training/cats-alcohol"), Path("training/cats-curve"))
    assert (alcohol.pop("output"), smoking.pop("output")) == (Path("docs/alcohol_curve.md"),
                                                               Path("docs/smoking_curve.md"))
    assert alcohol == smoking
    assert config["workflows"]["alcohol-curve"] == ["convert-sdoh-status", "cats-curve-alcohol"]


def test_folds_command_is_the_smoking_curve_cross_validated(tmp_path):
    """``cats-folds`` is ``cats-curve`` on the same smoking files and steps with ``--folds 5`` at 200
    notes, in its own run folder and report; its init-config lines write the variants it
    compares, each a committed preset with one choice changed (the head's learning rate; the
    classes' questions from configs/smoking_questions.json; the stock textcat's model: each half of
    its ensemble alone), and the stock textcat itself comes last, the system the others are paired with."""
    config = project()
    *make_configs, script = config["commands"]["cats-folds"]["script"]
    folds, curve = vars(verb_args(script)), vars(verb_args(config["commands"]["cats-curve"]["script"][0]))
    assert (folds.pop("folds"), curve.pop("folds")) == (5, 0)
    assert folds.pop("sizes") == ["200"] and folds.pop("seeds") == [0]
    ((head_lr, _),) = check_made_configs(make_configs[:1], tmp_path, "head_lr_scale", 50.0, 1.0)
    hard = shlex.split(make_configs[1])
    assert hard[5:7] == ["--preset", "hard_prompt"]
    made = {shlex.split(line)[4]: shlex.split(line)[5:] for line in make_configs[2:]}
    bags = {args[1]: out for out, args in made.items() if args[2:] == ["--cats-bag-of-words"]}
    assert made[bags["finetune"]] == ["--preset", "finetune", "--cats-bag-of-words"]
    assert made[bags["lora_frozen"]] == ["--preset", "lora_frozen", "--cats-bag-of-words"]
    head_lr_bag = next(out for out, args in made.items() if "--head-lr-scale" in args)
    assert made[head_lr_bag] == ["--preset", "finetune", "--head-lr-scale", "50", "--cats-bag-of-words"]
    halves = {args[-1]: out for out, args in made.items() if args[:2] == ["--preset", STOCK_TEXTCAT]}
    assert set(halves) == {"bow", "attention"} and len(made) == 5
    assert folds.pop("systems") == [
        "configs/lora_frozen.cfg", bags["lora_frozen"], "configs/finetune.cfg", bags["finetune"], head_lr, head_lr_bag,
        hard[4], halves["bow"], halves["attention"], "configs/stock_transformer_textcat.cfg"]
    assert main(["init-config", str(tmp_path / "hard.cfg"), *hard[5:]]) == 0
    made = spacy.util.load_config(tmp_path / "hard.cfg")["components"]["softprompt_ie"]
    committed = spacy.util.load_config(ROOT / "configs" / "hard_prompt.cfg")["components"]["softprompt_ie"]
    questions = json.loads((ROOT / "configs" / "smoking_questions.json").read_text())
    assert dict(made.pop("query_texts")) == questions and set(questions) == {"current", "past", "never", "unknown"}
    committed.pop("query_texts")
    assert made == committed
    assert (folds.pop("runs"), folds.pop("output")) == (Path("training/cats-folds"), Path("docs/smoking_folds.md"))
    assert folds.pop("with_concepts") == ["finetune_head_lr50"] and Path(head_lr).stem == "finetune_head_lr50"
    for key in ("sizes", "seeds", "systems", "runs", "output", "with_concepts"):
        curve.pop(key)
    assert folds == curve


@pytest.mark.slow
def test_cats_curve_runs_in_small_and_resumes(tmp_path, tiny_bert, capsys, monkeypatch):
    """Two sizes, one seed, two steps: softprompt_ie (finetune.cfg) against the stock textcat."""
    docs = notes()
    DocBin(store_user_data=True, docs=docs).to_disk(tmp_path / "train.spacy")
    for split in ("dev", "test"):
        DocBin(store_user_data=True, docs=docs[:4]).to_disk(tmp_path / f"{split}.spacy")
    monkeypatch.setenv("SPACY_CONFIG_OVERRIDES", "--training.optimizer.learn_rate.warmup_steps 1")
    runs, output = tmp_path / "runs", tmp_path / "docs" / "smoking_curve.md"
    finetune = tmp_path / "finetune.cfg"
    finetune.write_text((ROOT / "configs" / "finetune.cfg").read_text())
    argv = ["cats-curve", "--systems", str(finetune), "stock_transformer_textcat",
            "--train", str(tmp_path / "train.spacy"), "--dev", str(tmp_path / "dev.spacy"),
            "--test", str(tmp_path / "test.spacy"), "--sizes", "4", "all", "--seeds", "0", "--max-steps", "2",
            "--eval-frequency", "2", "--backbone", tiny_bert, "--runs", str(runs), "--output", str(output), "--no-plot"]
    assert main(argv) == 0
    assert "[4/4] all documents, seed 0, stock_transformer_textcat: training" in capsys.readouterr().out
    report = json.loads(output.with_suffix(".json").read_text())
    assert [(r["size"], r["system"]) for r in report["runs"]] == [
        (4, "finetune"), (4, "stock_transformer_textcat"), ("all", "finetune"), ("all", "stock_transformer_textcat")]
    assert [(r["size"], r["documents"], r["system"], r["runs"]) for r in report["summary"]] == [
        (4, 4, "finetune", 1), (4, 4, "stock_transformer_textcat", 1),
        ("all", 8, "finetune", 1), ("all", 8, "stock_transformer_textcat", 1)]
    for r in report["runs"]:
        assert r["steps"] == 2 and 0 <= r["cats_macro_f"] <= 100 and set(r["cats_f_per_type"]) == set(CLASSES)
    # one subsample per size and seed: the same file, with the seeded documents, for both systems
    assert report["subsamples"]["4-seed0"]["documents"] == 4 and report["subsamples"]["all-seed0"]["documents"] == 8
    for size in (4, "all"):
        files = {r["train_file"] for r in report["runs"] if r["size"] == size}
        assert files == {str(runs / "data" / f"train-{size}-seed0.spacy")}
        for system in ("finetune", "stock_transformer_textcat"):
            config = spacy.util.load_config(runs / f"{size}-seed0" / system / "config.cfg")
            assert config["paths"]["train"] == files.copy().pop()
        texts = [doc.text for doc in DocBin().from_disk(files.pop()).get_docs(spacy.blank("en").vocab)]
        assert texts == [NOTES[i][0] for i in subsample(range(len(NOTES)), size, 0)]
    # softprompt_ie learned the classes alone: no concept labels, no relation schema
    trained = spacy.util.load_config(runs / "4-seed0" / "finetune" / "config.cfg")
    assert dict(trained["initialize"]["components"]["softprompt_ie"]) == CLASSIFICATION_ONLY
    assert trained["components"]["softprompt_ie"]["exclusive_classes"] is True
    assert dict(trained["training"]["score_weights"]) == {"conc_f": 0.0, "rel_f": 0.0, "ents_f": 0.0, "cats_score": 1.0}
    for system in ("finetune", "stock_transformer_textcat"):  # both selected on cats_score alone
        log = (runs / "4-seed0" / system / "train_log.jsonl").read_text().splitlines()
        assert all(row["score"] == pytest.approx(row["scores"]["cats_score"] / 100) for row in map(json.loads, log))
    assert trained["components"]["softprompt_ie"]["model"]["backbone"] == tiny_bert
    stock = spacy.util.load_config(runs / "4-seed0" / "stock_transformer_textcat" / "config.cfg")
    assert stock["components"]["transformer"]["model"]["name"] == tiny_bert
    table = output.read_text()
    assert "| training documents | finetune | stock_transformer_textcat |" in table
    assert "| 4 | " in table and "| all (8) |" in table and "## F1 per class at all training documents" in table
    assert "every run 2 training steps" in table and "Made by: `python -m spacy_softprompt" in table
    # resumed: every run has its run.json, nothing is trained again
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("skipped") == 4 and ": training" not in out
    assert json.loads(output.with_suffix(".json").read_text())["runs"] == report["runs"]
    # another step count would mix runs: refused
    steps = argv.index("--max-steps") + 1
    assert main([("3" if i == steps else a) for i, a in enumerate(argv)]) == 2
    assert "trained with max_steps 2" in capsys.readouterr().err
    every = argv.index("--eval-frequency") + 1  # as would another dev cadence (the header said it of every run)
    assert main([("1" if i == every else a) for i, a in enumerate(argv)]) == 2
    assert "trained with eval_frequency 2 and dev_limit 0" in capsys.readouterr().err
    # so would a changed config for a system: refused, naming it
    config = spacy.util.load_config(finetune)
    config["training"]["optimizer"]["learn_rate"]["initial_rate"] = 1e-3
    config.to_disk(finetune)
    assert main(argv) == 2
    assert "trained with another config for finetune" in capsys.readouterr().err


@pytest.mark.slow
def test_with_concepts_run_trains_the_concepts_and_is_reported(tmp_path, tiny_bert, capsys, monkeypatch):
    """``--with-concepts finetune``: a second finetune run, initialized with the concept types (no
    relations), still selected on cats_score; the report names it and says what it learned."""
    runs, output = tmp_path / "runs", tmp_path / "smoking_curve.md"
    argv = two_step_run(tmp_path, tiny_bert, monkeypatch, output, "--with-concepts", "finetune", "finetune=Tobacco")
    assert main(argv) == 0
    assert "[3/3] all documents, seed 0, finetune: training" in capsys.readouterr().out
    report = json.loads(output.with_suffix(".json").read_text())
    # the last system (here the only one) is the one the others are paired with: it stays last
    assert report["systems"] == ["finetune+concepts", "finetune+concepts-Tobacco", "finetune"]
    assert report["with_concepts"] == ["finetune+concepts", "finetune+concepts-Tobacco"]
    assert report["concept_types"] == {"finetune+concepts-Tobacco": ["Tobacco"]}
    joint = runs / "all-seed0" / "finetune+concepts"
    config = spacy.util.load_config(joint / "config.cfg")
    assert dict(config["initialize"]["components"]["softprompt_ie"]) == WITH_CONCEPTS
    assert dict(config["training"]["score_weights"])["cats_score"] == 1.0
    component = spacy.load(joint / "model-best").get_pipe("softprompt_ie")
    assert component.labels == ("Frequency", "Time", "Tobacco") and component.schema.triggers == {}
    assert spacy.load(runs / "all-seed0" / "finetune" / "model-best").get_pipe("softprompt_ie").labels == ()
    tobacco = spacy.load(runs / "all-seed0" / "finetune+concepts-Tobacco" / "model-best").get_pipe("softprompt_ie")
    assert tobacco.labels == ("Tobacco",)
    assert ("Except finetune+concepts, finetune+concepts-Tobacco: they learn the training documents' concept types "
            "(finetune+concepts-Tobacco: Tobacco alone)") in output.read_text()


def test_exclusive_classes_score_the_top_class_like_textcat():
    """The curve compares softprompt_ie with the exclusive textcat, which counts the top class
    whatever its probability (threshold 0.0): softprompt_ie's scorer does the same."""
    from spacy.scorer import Scorer

    from spacy_softprompt.scoring import softprompt_score

    nlp = spacy.blank("en")
    examples = []
    for text, status in (("a", "current"), ("b", "past")):
        predicted, gold = nlp.make_doc(text), nlp.make_doc(text)
        predicted.cats = {label: 0.4 if label == status else 0.3 for label in CLASSES}  # right, but below 0.5
        gold.cats = {label: float(label == status) for label in CLASSES}
        examples.append(Example(predicted, gold))
    scores = softprompt_score(examples, cat_labels=CLASSES, exclusive_classes=True)
    textcat = Scorer.score_cats(examples, "cats", labels=CLASSES, multi_label=False, threshold=0.0)
    assert scores["cats_macro_f"] == textcat["cats_macro_f"] and scores["cats_f_per_type"]["current"]["f"] == 1.0


def test_attention_project_command_makes_its_configs_and_is_the_verb(tmp_path):
    """``cats-curve-attention``: two init-config lines write lora_frozen and finetune with attention
    text pooling (only that differs from the committed presets), then the curve runs on them."""
    *make_configs, curve = project()["commands"]["cats-curve-attention"]["script"]
    written = [out for out, _ in check_made_configs(make_configs, tmp_path, "cats_text_pooling", "attention", "mean")]
    args = verb_args(curve)
    assert args.systems == [*written, "configs/stock_transformer_textcat.cfg"]
    assert args.output == Path("docs/smoking_attention.md") and args.runs == Path("training/cats-attention")


def test_folds_are_stratified_disjoint_and_fixed():
    docs = notes() * 3  # 24 documents: 9 current, 6 past, 9 never
    folds = stratified_folds(docs, 3)
    assert sorted(i for fold in folds for i in fold) == list(range(24))  # each document in one fold
    for fold in folds:
        counts = {label: sum(docs[i].cats[label] == 1.0 for i in fold) for label in CLASSES}
        assert counts == {"current": 3, "past": 2, "never": 3}  # each class in proportion
    assert stratified_folds(docs, 3) == folds  # the same dealing whatever the run
    assert main(["cats-curve", "--systems", "finetune", "--folds", "2"]) == 2  # needs test, dev and train


def spacy_cats_scores(pairs, labels=CLASSES):
    """spaCy's exclusive textcat scores of documents whose gold and predicted top classes are ``pairs``."""
    from spacy.scorer import Scorer

    nlp = spacy.blank("en")
    examples = []
    for gold, predicted in pairs:
        doc, reference = nlp.make_doc("x"), nlp.make_doc("x")
        doc.cats = {label: 0.6 if label == predicted else 0.2 for label in CLASSES}
        reference.cats = {label: float(label == gold) for label in CLASSES}
        examples.append(Example(doc, reference))
    return Scorer.score_cats(examples, "cats", labels=labels, multi_label=False)


def test_pooled_scores_count_as_spacys_textcat_scorer():
    """[gold, predicted] pairs counted by ``pooled_scores`` give what spaCy's exclusive textcat
    scorer gives on the same documents scored at once, per class and macro; a class outside the
    labels has no column of its own."""
    pairs = [("current", "current"), ("current", "past"), ("past", "past"), ("never", "current"),
             ("never", "never"), ("never", "never"), ("past", "never")]
    spacy_scores = spacy_cats_scores(pairs)
    pooled = pooled_scores(pairs, sorted(CLASSES))
    assert pooled["macro_f"] == pytest.approx(100 * spacy_scores["cats_macro_f"], abs=0.01)
    for label in CLASSES:
        assert pooled["f_per_type"][label] == pytest.approx(100 * spacy_scores["cats_f_per_type"][label]["f"], abs=0.01)
    assert pooled["documents"] == 7
    widened = pooled_scores(pairs + [("other", "never")], sorted(CLASSES))
    assert "other" not in widened["f_per_type"] and widened["f_per_type"]["never"] < pooled["f_per_type"]["never"]


def test_pairing_counts_the_notes_one_system_alone_gets_right():
    """Matched fold by fold; the exact McNemar p of 10 against 18 notes is 0.185, of 0 against 5
    notes 2/32, of a tie 1."""
    mine = [{"fold": 0, "cats_per_doc": [["past", "past"], ["never", "past"], ["current", "never"]]},
            {"fold": 1, "cats_per_doc": [["never", "never"]]}]
    theirs = [{"fold": 1, "cats_per_doc": [["never", "past"]]},
              {"fold": 0, "cats_per_doc": [["past", "never"], ["never", "never"], ["current", "past"]]}]
    assert paired_counts(mine, theirs) == (2, 1)  # both wrong on the third note: not counted
    theirs[0]["cats_per_doc"] = [["past", "past"]]  # fold 1 scored on another note
    with pytest.raises(CLIError, match="fold 1: twin and finetune were scored on different test notes"):
        paired_counts([dict(r, system="twin") for r in mine], [dict(r, system="finetune") for r in theirs])
    assert mcnemar_p(10, 18) == pytest.approx(0.185, abs=0.001)
    assert mcnemar_p(0, 5) == pytest.approx(2 / 32) and mcnemar_p(4, 4) == 1.0 and mcnemar_p(0, 0) == 1.0


def test_folds_seeds_command_repeats_cats_folds_on_more_seeds(tmp_path):
    """``cats-folds-seeds`` is ``cats-folds`` (same folds, sizes, steps and run folder, so its
    finished runs are resumed) with more seeds, a few of its systems and a report of its own; its
    bag-of-words config is made by the line cats-folds makes it with."""
    config = project()
    folds_make, folds_script = config["commands"]["cats-folds"]["script"][:-1], config["commands"]["cats-folds"]["script"][-1]
    *make_configs, script = config["commands"]["cats-folds-seeds"]["script"]
    *make_configs, weighted = make_configs  # the one config cats-folds does not make: its variant with concepts
    assert set(make_configs) <= set(folds_make)
    seeds, folds = vars(verb_args(script)), vars(verb_args(folds_script))
    assert seeds.pop("seeds") == [0, 1, 2] and folds.pop("seeds") == [0]
    assert set(seeds.pop("systems")) <= set(folds.pop("systems"))
    # the weighted 50x head learning every concept type, and the Tobacco and StatusTime types alone
    weighted_config = shlex.split(weighted)[4]
    assert seeds.pop("with_concepts") == [weighted_config, weighted_config + "=Tobacco,StatusTime"]
    assert folds.pop("with_concepts") == ["finetune_head_lr50"]
    assert shlex.split(weighted)[5:] == ["--preset", "finetune", "--head-lr-scale", "50", "--cats-loss-weight", "100"]
    assert seeds.pop("output") == Path("docs/smoking_folds_seeds.md") and folds.pop("output") == Path("docs/smoking_folds.md")
    assert seeds == folds


@pytest.mark.slow
def test_cross_validation_tests_every_document_once(tmp_path, tiny_bert, capsys, monkeypatch):
    """``--folds 3`` over 8 + 4 + 4 notes: fold i's runs test on fold i, select on fold i+1, train
    on the third; every document is scored once and the pooled table counts all of them."""
    docs = notes()
    runs, output = tmp_path / "runs", tmp_path / "smoking_folds.md"
    argv = two_step_run(tmp_path, tiny_bert, monkeypatch, output, "--folds", "3")
    assert main(argv) == 0
    assert "[3/3] all documents, seed 0, fold 2, finetune: training" in capsys.readouterr().out
    report = json.loads(output.with_suffix(".json").read_text())
    vocab = spacy.blank("en").vocab
    texts = {i: [d.text for d in DocBin().from_disk(runs / "data" / f"fold{i}-test.spacy").get_docs(vocab)]
             for i in range(3)}
    tested = [text for i in range(3) for text in texts[i]]
    assert sorted(tested) == sorted(doc.text for doc in docs * 2)  # 16 documents, each tested once
    status = {text: label for text, _, _, label in NOTES}
    for r in report["runs"]:
        fold = r["fold"]
        config = spacy.util.load_config(runs / f"all-seed0-fold{fold}" / "finetune" / "config.cfg")
        assert config["paths"]["dev"] == str(runs / "data" / f"fold{fold}-dev.spacy")
        dev = [d.text for d in DocBin().from_disk(config["paths"]["dev"]).get_docs(vocab)]
        train = [d.text for d in DocBin().from_disk(config["paths"]["train"]).get_docs(vocab)]
        assert dev == texts[(fold + 1) % 3] and sorted(train) == sorted(texts[(fold + 2) % 3])
        assert [gold for gold, _ in r["cats_per_doc"]] == [status[text] for text in texts[fold]]
        assert {predicted for _, predicted in r["cats_per_doc"]} <= set(CLASSES)  # a class for every note
        # one fold's pairs counted as the pooled table counts them give spaCy's score of that fold
        assert pooled_scores(r["cats_per_doc"], sorted(CLASSES))["macro_f"] == pytest.approx(r["cats_macro_f"], abs=0.01)
    (row,) = report["summary"]
    (pooled,) = row["pooled"]
    pairs = [pair for r in report["runs"] for pair in r["cats_per_doc"]]
    spacy_scores = spacy_cats_scores(pairs)  # the 16 notes scored at once by spaCy
    assert pooled["macro_f"] == pytest.approx(100 * spacy_scores["cats_macro_f"], abs=0.01)
    assert pooled["documents"] == 16
    table = output.read_text()
    assert "## Macro F1 over every document (3 test folds pooled; mean ± sd over seeds)" in table
    assert f"| finetune | 1 | 16 | {pooled['macro_f']:.1f} |" in table and "pooled and dealt into 3 folds" in table
    partial = dict(report, runs=report["runs"][:2])  # the report as written before the last fold
    partial["summary"] = summarize(partial)
    assert partial["summary"][0]["pooled"] == []  # no seed with all its folds
    assert "No seed has all its folds scored yet." in to_markdown(partial)
    # a second system (here one that always answers "past") is paired with the last one, note by note
    twin = [dict(r, system="twin", cats_per_doc=[[gold, "past"] for gold, _ in r["cats_per_doc"]]) for r in report["runs"]]
    both = dict(report, systems=["twin", "finetune"], runs=twin + report["runs"])
    both["summary"] = summarize(both)
    only_twin, only_finetune = paired_counts(twin, report["runs"])
    assert only_twin + only_finetune > 0 and both["summary"][1]["paired"] == []  # the reference is not paired
    plot_curve(both, tmp_path / "folds.png")  # one size of a cross-validation: a row per system
    assert (tmp_path / "folds.png").stat().st_size > 0
    documents = both["summary"][0]["documents"]
    assert (f"| {documents} | twin | 0 | {only_twin} | {only_finetune} | {mcnemar_p(only_twin, only_finetune):.3f} |"
            in to_markdown(both))
    # resumed: nothing trained again; other folds would test other documents, so they are refused
    assert main(argv) == 0
    assert capsys.readouterr().out.count("skipped") == 3
    folds = argv.index("--folds") + 1
    assert main([("4" if i == folds else a) for i, a in enumerate(argv)]) == 2
    assert "and folds 3" in capsys.readouterr().err
    # other notes in the input files move notes between folds: a finished run is not taken for the new ones
    DocBin(store_user_data=True, docs=docs[4:] + docs[:1]).to_disk(tmp_path / "test.spacy")
    assert main(argv) == 2
    assert "on other documents (the input files or the folds changed)" in capsys.readouterr().err
    DocBin(store_user_data=True, docs=docs[4:]).to_disk(tmp_path / "test.spacy")
    # a record without every note's prediction cannot be pooled: refused, not read as 0.0
    record_path = runs / "all-seed0-fold0" / "finetune" / "run.json"
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps(dict(record, cats_per_doc=[[g, None] for g, _ in record["cats_per_doc"]])))
    assert main(argv) == 2
    assert "has no prediction for every test note" in capsys.readouterr().err
