"""Verbs that need a trained pipeline: render (terminal and HTML), evaluate and compare."""
import json

import pytest
import spacy
from spacy.tokens import DocBin, Span

from spacy_softprompt.cli import main

from conftest import RELATIONS, TEXTS, annotate, fit_pipeline
from pipeline_package import install_pipeline_package


@pytest.fixture(scope="module")
def trained_pipeline(tiny_bert, tmp_path_factory):
    blank = spacy.blank("en")
    docs = [annotate(blank, t, m, RELATIONS.get(i, ())) for i, (t, m) in enumerate(TEXTS)]
    nlp = fit_pipeline(docs, 80, model={"backbone": tiny_bert, "strategy": "none", "freeze_backbone": False})
    path = tmp_path_factory.mktemp("render") / "pipeline"
    nlp.to_disk(path)
    return path


def test_render_terminal_and_html(trained_pipeline, tmp_path, capsys):
    page = tmp_path / "out.html"
    assert main(["render", str(trained_pipeline), TEXTS[1][0], "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert "[ibuprofen]{Drug}" in out
    assert "ibuprofen (Drug) --Drug-AE--> rash (ADE)" in out
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "ibuprofen" in html and "Drug-Dose" in html
    assert "<script" not in html  # self-contained, nothing fetched or run


def test_export_brat_names_a_relation_the_pipeline_lacks_before_predicting(trained_pipeline, gold_file, tmp_path,
                                                                          monkeypatch, capsys):
    """--relation-map with a typo was refused only after every document had been predicted; a relation the
    pipeline knows but did not predict here is no typo."""
    import spacy.language

    def no_prediction(*args, **kwargs):
        raise AssertionError("predicted before refusing")

    monkeypatch.setattr(spacy.language.Language, "pipe", no_prediction)
    out = tmp_path / "brat"
    assert main(["export-brat", str(gold_file), str(out), "--pipeline", str(trained_pipeline),
                 "--relation-map", "Drug-Ae=ADE"]) == 2
    assert "--relation-map Drug-Ae: no such relation label in the pipeline (Drug-AE, Drug-Dose)" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["export-brat", str(gold_file), str(out), "--pipeline", str(trained_pipeline),
                 "--relation-map", "Drug-AE=ADE"]) == 0


def test_compare_counts_trainable_parameters_and_size(trained_pipeline, tmp_path, capsys):
    import json

    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"concepts_strict_f": 0.5, "concepts_lenient_f": 0.75,
                                   "relations_strict_f": 0.25, "relations_lenient_f": 0.5}))
    out = tmp_path / "table.md"
    assert main(["compare", f"finetune={trained_pipeline}:{metrics}", "--output", str(out)]) == 0
    row = json.loads(out.with_suffix(".json").read_text())[0]
    nlp = spacy.load(trained_pipeline)
    network = nlp.get_pipe("softprompt_ie").network
    assert row["trainable_parameters"] == sum(p.numel() for p in network.parameters())  # unfrozen: all
    files = [p for p in (trained_pipeline / "softprompt_ie").rglob("*") if p.is_file()]
    assert row["artifact_bytes"] == sum(p.stat().st_size for p in files)
    assert "| finetune | 50.0 | 75.0 | 25.0 | 50.0 |" in out.read_text()



def test_render_with_context_marks_negation_without_debug_lines(trained_pipeline, capfd):
    # medspacy is part of `make install` (extra "medspacy"): missing, this fails rather than skips
    # a training sentence (the fitted pipeline finds metformin in it) that ConText reads as negated
    assert main(["render", str(trained_pipeline), TEXTS[2][0], "--context"]) == 0
    out, err = capfd.readouterr()
    concepts = out.split("Concepts:")[1].split("Relations:")[0].strip().splitlines()
    assert len(concepts) == 1
    assert concepts[0].split()[:2] == ["metformin", "Drug"] and concepts[0].endswith("[negated]")
    assert "DEBUG" not in err  # medspaCy's PyRuSH logs every sentence at DEBUG through loguru
    assert main(["render", str(trained_pipeline), TEXTS[2][0], "--context", "--debug"]) == 0
    assert "DEBUG" in capfd.readouterr().err  # asked for: shown


@pytest.fixture(scope="module")
def gold_file(tmp_path_factory):
    blank = spacy.blank("en")
    path = tmp_path_factory.mktemp("gold") / "test.spacy"
    docs = [annotate(blank, t, m, RELATIONS.get(i, ())) for i, (t, m) in enumerate(TEXTS)]
    DocBin(store_user_data=True, docs=docs).to_disk(path)
    return path


def test_what_would_score_nothing_is_refused(trained_pipeline, gold_file, tmp_path, capsys):
    """Each once exited 0 with a table of zeros (or saved a pipeline calibrated on no notes): a batch size of 0, a
    concept type neither side has, an empty file, a span group the pipeline does not write; compare and overlay
    name a metrics file they cannot use instead of a traceback or a row of zeros."""
    DocBin().to_disk(tmp_path / "empty.spacy")
    metrics = tmp_path / "m.json"
    for argv, message in (
            (["evaluate", str(trained_pipeline), str(gold_file), "--batch-size", "0"], "0: must be at least 1"),
            (["calibrate", str(trained_pipeline), str(gold_file), str(tmp_path / "c"), "--labels", "Drug",
              "--density", "1", "--batch-size", "0"], "0: must be at least 1"),
            (["evaluate", str(trained_pipeline), str(gold_file), "--concept-types", "Drug", "Nope"],
             "--concept-types Nope: neither the pipeline nor"),
            (["evaluate", str(trained_pipeline), str(tmp_path / "empty.spacy")], "holds no documents"),
            (["render", str(trained_pipeline), "Aspirin.", "--spans-key", "typo"], "--spans-key 'typo': the pipeline"),
            (["compare", f"a={trained_pipeline}:{metrics}"], "m.json: not JSON (line 1"),
    ):
        metrics.write_text("{")
        try:
            code = main(argv)
        except SystemExit as stop:  # argparse refuses an argument's value itself
            code = stop.code
        assert code == 2 and message in capsys.readouterr().err, argv
    for content in ("[1, 2]", json.dumps({"concepts_strict_f": 0.5})):
        metrics.write_text(content)
        assert main(["compare", f"a={trained_pipeline}:{metrics}"]) == 2
        assert "not the metrics JSON that `evaluate --output` writes" in _single_error(capsys.readouterr().err)


@pytest.fixture
def installed_name(trained_pipeline, tmp_path, monkeypatch) -> str:
    """The trained pipeline as the installed package ``en_softprompt_test``."""
    install_pipeline_package(trained_pipeline, "en_softprompt_test", tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "en_softprompt_test"


@pytest.mark.parametrize("verb", ["render", "evaluate"])
def test_every_verb_loads_an_installed_package_by_name(verb, installed_name, gold_file, capsys):
    arguments = [TEXTS[1][0]] if verb == "render" else [str(gold_file)]
    assert main([verb, installed_name, *arguments]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert ("[ibuprofen]{Drug}" in out) if verb == "render" else ("concepts (micro)" in out)


def test_evaluate_with_an_unknown_spans_key_is_an_error(trained_pipeline, gold_file, capsys):
    """It used to score doc.ents silently."""
    assert main(["evaluate", str(trained_pipeline), str(gold_file), "--spans-key", "typo"]) == 2
    err = capsys.readouterr().err
    assert "--spans-key 'typo'" in err and "'softprompt'" in err and "pass --spans-key softprompt" in err


def test_evaluate_refuses_gold_whose_concepts_are_in_another_span_group(trained_pipeline, tmp_path, capsys):
    """Gold converted into another span group was read from doc.ents: nested concepts lost, silently."""
    nlp = spacy.blank("en")
    doc = nlp("lung cancer treated with cisplatin")
    doc.spans["other"] = [Span(doc, 0, 2, "Disease"), Span(doc, 0, 1, "Anatomy"), Span(doc, 4, 5, "Drug")]
    DocBin(docs=[doc]).to_disk(tmp_path / "other.spacy")
    assert main(["evaluate", str(trained_pipeline), str(tmp_path / "other.spacy")]) == 2
    err = capsys.readouterr().err
    assert "has no span group 'softprompt', which the pipeline writes (its groups: other)" in err


def test_evaluate_on_a_pipeline_without_softprompt_ie(tmp_path, gold_file, capsys):
    """No component: an error. Others (stock ner, as bench compares): a warning naming them."""
    blank = spacy.blank("en")
    blank.to_disk(tmp_path / "blank")
    assert main(["evaluate", str(tmp_path / "blank"), str(gold_file)]) == 2
    assert "has no components, so it predicts nothing" in capsys.readouterr().err
    stock = spacy.blank("en")
    stock.add_pipe("ner").add_label("Drug")
    stock.initialize()
    stock.to_disk(tmp_path / "stock")
    assert main(["evaluate", str(tmp_path / "stock"), str(gold_file)]) == 0
    captured = capsys.readouterr()
    assert "warning:" in captured.err and "no softprompt_ie component (ner)" in captured.err
    assert "concepts (micro)" in captured.out
    assert main(["evaluate", str(tmp_path / "stock"), str(gold_file), "--spans-key", "typo"]) == 2
    assert "--spans-key 'typo': no predicted document has that span group" in capsys.readouterr().err


def test_render_context_without_medspacy_says_what_to_install(trained_pipeline, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "medspacy", None)  # import fails as if not installed
    assert main(["render", str(trained_pipeline), "text", "--context"]) == 2
    assert "pip install 'spacy_softprompt[medspacy]'" in capsys.readouterr().err


def referencing_pipeline(tiny_bert, base):
    """base/pipeline, trained briefly, names its frozen backbone base/backbone (a copy of the tiny BERT) instead of
    storing it; returned."""
    import shutil

    shutil.copytree(tiny_bert, base / "backbone")
    blank = spacy.blank("en")
    docs = [annotate(blank, t, m, RELATIONS.get(i, ())) for i, (t, m) in enumerate(TEXTS)]
    nlp = fit_pipeline(docs, 2, model={"backbone": str(base / "backbone"), "strategy": "soft",
                                       "freeze_backbone": True, "prompt_length": 8})
    nlp.to_disk(base / "pipeline")
    return nlp


@pytest.fixture(scope="module")
def frozen_pipeline(tiny_bert, tmp_path_factory):
    """A pipeline that references its frozen backbone (a copy of the tiny BERT) instead of storing it."""
    base = tmp_path_factory.mktemp("frozen")
    referencing_pipeline(tiny_bert, base)
    return base


def test_a_moved_backbone_is_named_at_load(tiny_bert, tmp_path):
    """A pipeline naming its frozen backbone by folder: once the folder moves, the error says how to name its new
    place, and naming it in the loading config loads the pipeline (the weights checked against the saved hash), which
    saved again names the new place; another backbone there is refused."""
    import shutil

    import torch
    from transformers import BertModel

    from spacy_softprompt.artifact import BackboneMismatch
    from spacy_softprompt.backbone import BackboneNotFound

    nlp = referencing_pipeline(tiny_bert, tmp_path)
    texts = [t for t, _ in TEXTS]
    expected = [[(s.start, s.end, s.label_) for s in d.spans["softprompt"]] for d in nlp.pipe(texts)]
    (tmp_path / "backbone").rename(tmp_path / "moved")
    with pytest.raises(BackboneNotFound, match=r"If it moved, name its new place when loading"):
        spacy.load(tmp_path / "pipeline")
    moved = {"components.softprompt_ie.model.backbone": str(tmp_path / "moved")}
    loaded = spacy.load(tmp_path / "pipeline", config=moved)
    assert [[(s.start, s.end, s.label_) for s in d.spans["softprompt"]] for d in loaded.pipe(texts)] == expected
    loaded.to_disk(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "softprompt_ie" / "model" / "task.json").read_text())["backbone"][
        "name"] == str(tmp_path / "moved")
    spacy.load(tmp_path / "again")
    other = BertModel.from_pretrained(tmp_path / "moved")
    with torch.no_grad():
        other.embeddings.word_embeddings.weight.add_(1.0)
    shutil.copytree(tmp_path / "moved", tmp_path / "other")
    other.save_pretrained(tmp_path / "other", safe_serialization=True)
    with pytest.raises(BackboneMismatch, match="now resolves to weights with hash"):
        spacy.load(tmp_path / "pipeline", config={"components.softprompt_ie.model.backbone": str(tmp_path / "other")})


def _single_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in err, err
    return lines[-1]


def test_a_changed_or_missing_backbone_is_one_error_line(frozen_pipeline, tmp_path, capsys):
    """BackboneMismatch and BackboneNotFound reach the user as a message, not a traceback."""
    import shutil

    import torch
    from transformers import BertModel

    # the pipeline names its backbone by absolute path: change the weights there, then restore them
    original = frozen_pipeline / "backbone"
    saved = tmp_path / "original_backbone"
    shutil.copytree(original, saved)
    try:
        model = BertModel.from_pretrained(original)
        with torch.no_grad():
            model.embeddings.word_embeddings.weight.add_(1.0)
        model.save_pretrained(original, safe_serialization=True)
        assert main(["render", str(frozen_pipeline / "pipeline"), "Aspirin caused nausea."]) == 2
        line = _single_error(capsys.readouterr().err)
        assert "backbone" in line and "hash" in line  # BackboneMismatch's message
        assert main(["render", str(frozen_pipeline / "pipeline"), "Aspirin caused nausea.", "--debug"]) == 2
        assert "Traceback" in capsys.readouterr().err
        shutil.rmtree(original)
        assert main(["render", str(frozen_pipeline / "pipeline"), "Aspirin caused nausea."]) == 2
        assert "error: Cannot find backbone" in _single_error(capsys.readouterr().err)  # BackboneNotFound
    finally:
        shutil.rmtree(original, ignore_errors=True)
        shutil.copytree(saved, original)


@pytest.fixture(scope="module")
def concepts_pipeline(tiny_bert, tmp_path_factory):
    """A pipeline of concepts only, fitted to the toy texts, and a gold file of them; seeded, so that
    its scores do not depend on which tests ran before."""
    spacy.util.fix_random_seed(0)
    blank = spacy.blank("en")
    docs = [annotate(blank, t, m) for t, m in TEXTS]
    nlp = fit_pipeline(docs, 40, model={"backbone": tiny_bert, "strategy": "none", "freeze_backbone": False})
    folder = tmp_path_factory.mktemp("concepts")
    nlp.to_disk(folder / "pipeline")
    DocBin(store_user_data=True, docs=docs).to_disk(folder / "gold.spacy")
    return folder / "pipeline", folder / "gold.spacy"


def test_evaluate_at_several_thresholds_is_evaluating_at_each(concepts_pipeline, tmp_path):
    """--thresholds: one pass down to the lowest, scored at each, gives what evaluating a copy of
    the pipeline set to that threshold gives; the main scores stay at the component's own."""
    import json

    trained_pipeline, gold_file = concepts_pipeline
    assert main(["evaluate", str(trained_pipeline), str(gold_file), "--output", str(tmp_path / "own.json")]) == 0
    assert main(["evaluate", str(trained_pipeline), str(gold_file), "--thresholds", "1e-9", "0.9",
                 "--output", str(tmp_path / "both.json"), "--markdown", str(tmp_path / "both.md")]) == 0
    own, both = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("own", "both"))
    assert both["concepts_strict_f"] == own["concepts_strict_f"]
    for threshold in (1e-9, 0.9):
        nlp = spacy.load(trained_pipeline)
        nlp.get_pipe("softprompt_ie").cfg["threshold"] = threshold
        nlp.to_disk(tmp_path / f"at{threshold}")
        assert main(["evaluate", str(tmp_path / f"at{threshold}"), str(gold_file),
                     "--output", str(tmp_path / f"at{threshold}.json")]) == 0
        alone = json.loads((tmp_path / f"at{threshold}.json").read_text())
        at = both["by_threshold"][str(threshold)]
        for key in ("concepts_strict_p", "concepts_strict_r", "concepts_strict_f", "concepts_strict_per_type"):
            assert at[key] == alone[key], (threshold, key)
    table = (tmp_path / "both.md").read_text()  # the markdown has the grid too, lowest first
    assert table.index("| concepts (micro) at p = 1e-09 |") < table.index(
        f"| concepts (micro) at p = 0.9 | {100 * both['by_threshold']['0.9']['concepts_strict_p']:.2f} |")
    low, high = both["by_threshold"]["1e-09"], both["by_threshold"]["0.9"]
    assert low["concepts_strict_r"] >= high["concepts_strict_r"] and low["concepts_strict_p"] < high["concepts_strict_p"]


def test_thresholds_are_refused_where_relations_hang_on_the_concepts(trained_pipeline, gold_file, capsys):
    """A pipeline with relation types: its triggers are concepts at its threshold, so one pass at a
    lower threshold would change its relations; refused, as is a threshold outside (0, 1]."""
    assert main(["evaluate", str(trained_pipeline), str(gold_file), "--thresholds", "0.1"]) == 2
    assert "has relation types" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", str(trained_pipeline), str(gold_file), "--thresholds", "0"])
    assert "a threshold is a probability in (0, 1]" in capsys.readouterr().err


def test_a_label_threshold_keeps_that_type_down_to_it(concepts_pipeline, tmp_path):
    """label_thresholds: that type's concepts are kept down to its own threshold (what filtering one
    pass at the lowest keeps), the others stay at the component's; saved with the pipeline, and a
    config given at load adds to (and wins over) the saved ones."""
    from spacy_softprompt.cli.evaluate import concepts_above

    pipeline, _ = concepts_pipeline
    texts = [t for t, _ in TEXTS]
    nlp = spacy.load(pipeline)
    pipe = nlp.get_pipe("softprompt_ie")
    pipe.cfg["threshold"] = 1e-9
    everything = list(nlp.pipe(texts))
    pipe.cfg["threshold"] = 0.5
    plain = list(nlp.pipe(texts))
    pipe.cfg["label_thresholds"] = {"Drug": 1e-9}
    own = list(nlp.pipe(texts))

    def concepts(docs):
        return [[(s.start, s.end, s.label_) for s in doc.spans["softprompt"]] for doc in docs]

    assert concepts(own) == concepts(concepts_above(d, "softprompt", 0.5, {"Drug": 1e-9}) for d in everything)
    drugs = [sum(label == "Drug" for *_, label in doc) for doc in concepts(own)]
    assert sum(drugs) > sum(sum(label == "Drug" for *_, label in doc) for doc in concepts(plain))
    others = [[c for c in doc if c[2] != "Drug"] for doc in concepts(own)]
    assert others == [[c for c in doc if c[2] != "Drug"] for doc in concepts(plain)]
    nlp.to_disk(tmp_path / "own")
    assert spacy.load(tmp_path / "own").get_pipe("softprompt_ie").cfg["label_thresholds"] == {"Drug": 1e-9}
    loaded = spacy.load(tmp_path / "own", config={"components": {"softprompt_ie": {"label_thresholds": {"Drug": 0.9, "ADE": 0.2}}}})
    assert loaded.get_pipe("softprompt_ie").cfg["label_thresholds"] == {"Drug": 0.9, "ADE": 0.2}
    with pytest.raises(ValueError, match=r"are probabilities in \(0, 1\], not \{'Drug': 0(\.0)?\}"):
        spacy.load(tmp_path / "own", config={"components": {"softprompt_ie": {"label_thresholds": {"Drug": 0}}}})
    with pytest.raises(ValueError, match=r"name \['Drugs'\], which are not its concept types"):
        spacy.load(tmp_path / "own", config={"components": {"softprompt_ie": {"label_thresholds": {"Drugs": 0.1}}}})
    # a pipeline saved before the setting existed (neither its cfg nor its config.cfg has it) loads without any
    import json
    import shutil

    shutil.copytree(pipeline, tmp_path / "old")
    cfg = json.loads((tmp_path / "old" / "softprompt_ie" / "cfg").read_text())
    cfg.pop("label_thresholds", None)
    (tmp_path / "old" / "softprompt_ie" / "cfg").write_text(json.dumps(cfg))
    config = (tmp_path / "old" / "config.cfg").read_text()
    (tmp_path / "old" / "config.cfg").write_text(config.replace("[components.softprompt_ie.label_thresholds]\n", ""))
    assert "label_thresholds" not in (tmp_path / "old" / "config.cfg").read_text()
    old = spacy.load(tmp_path / "old")
    assert old.get_pipe("softprompt_ie").cfg["label_thresholds"] == {}
    assert concepts(old.pipe(texts)) == concepts(plain)


def test_a_loading_config_changes_what_it_changes_and_keeps_what_code_changed(concepts_pipeline, tmp_path):
    """Settings at load: what the loading config changes (spacy.load(..., config=...), an edited config.cfg) wins
    over the saved cfg; what code changed before saving (and the config.cfg never said) stays; on disk and bytes."""
    import json

    pipeline, _ = concepts_pipeline
    nlp = spacy.load(pipeline)
    pipe = nlp.get_pipe("softprompt_ie")
    pipe.cfg.update(threshold=0.3, label_thresholds={"Drug": 0.2, "ADE": 0.4})  # in code: config.cfg still 0.5, {}
    nlp.to_disk(tmp_path / "p")

    def settings(loaded):  # a saved cfg keeps 10 decimals: 0.3 reads back 0.30000000000000004
        cfg = loaded.get_pipe("softprompt_ie").cfg
        return pytest.approx((cfg["threshold"], cfg["relation_threshold"])), {
            label: pytest.approx(p) for label, p in cfg["label_thresholds"].items()}

    assert settings(spacy.load(tmp_path / "p")) == ((0.3, 0.5), {"Drug": 0.2, "ADE": 0.4})
    override = {"components": {"softprompt_ie": {"threshold": 0.9, "relation_threshold": 0.7,
                                                 "label_thresholds": {"ADE": 0.6}}}}
    loaded = spacy.load(tmp_path / "p", config=override)
    assert settings(loaded) == ((0.9, 0.7), {"Drug": 0.2, "ADE": 0.6})
    # what the model was trained with stays, with a warning; a training setting (for more training) is followed
    trained = {"components": {"softprompt_ie": {"query_texts": {"Drug": "Which medication?"}, "cats_loss_weight": 2.0}}}
    with pytest.warns(UserWarning, match=r"trained with query_texts = \{\}; the loading config's query_texts = "
                                         r"\{'Drug': 'Which medication\?'\} is not applied"):
        cfg = spacy.load(tmp_path / "p", config=trained).get_pipe("softprompt_ie").cfg
    assert (cfg["query_texts"], cfg["cats_loss_weight"]) == ({}, 2.0)
    # bytes: a pipeline built from the overriding config keeps its settings over the bytes' ones
    again = spacy.util.load_model_from_config(loaded.config, auto_fill=False).from_bytes(nlp.to_bytes())
    assert settings(again) == ((0.9, 0.7), {"Drug": 0.2, "ADE": 0.6})
    # what a saved, overridden pipeline was built with is its new config: an edit of that removes a type's threshold
    loaded.to_disk(tmp_path / "q")
    config = spacy.util.load_config(tmp_path / "q" / "config.cfg")
    assert dict(config["components"]["softprompt_ie"]["label_thresholds"]) == {"ADE": pytest.approx(0.6)}
    config["components"]["softprompt_ie"]["label_thresholds"] = {}
    config.to_disk(tmp_path / "q" / "config.cfg")
    assert settings(spacy.load(tmp_path / "q")) == ((0.9, 0.7), {"Drug": 0.2})
    # a component saved before its cfg kept what it was built with: the loading config wins where they differ,
    # its label thresholds add to the saved ones (as they did then)
    cfg_path = tmp_path / "p" / "softprompt_ie" / "cfg"
    cfg = json.loads(cfg_path.read_text())
    del cfg["built_with"]
    cfg_path.write_text(json.dumps(cfg))
    assert settings(spacy.load(tmp_path / "p")) == ((0.5, 0.5), {"Drug": 0.2, "ADE": 0.4})
    assert settings(spacy.load(tmp_path / "p", config=override)) == ((0.9, 0.7), {"Drug": 0.2, "ADE": 0.6})


def test_calibrate_finds_each_type_as_often_as_asked(concepts_pipeline, tmp_path, capsys):
    """Each type's threshold is set so that it is found density x tokens times on the notes: here
    6 of each, beyond the 4 true Drug and ADE mentions the toy pipeline scores near 1, into its
    negatives' scores (1e-5 to 1e-4, well apart); the saved pipeline predicts exactly the counts
    reported, and its config.cfg holds the thresholds."""
    import json

    pipeline, _ = concepts_pipeline
    notes = tmp_path / "notes.jsonl"
    notes.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, (t, _) in enumerate(TEXTS)))
    out, report = tmp_path / "calibrated", tmp_path / "report.json"
    assert main(["calibrate", str(pipeline), str(notes), str(out), "--labels", "Drug", "ADE", "--density", "18",
                 "--floor", "1e-6", "--report", str(report)]) == 0
    assert "| Drug |" in capsys.readouterr().out
    found = json.loads(report.read_text())["types"]
    nlp = spacy.load(out)
    wanted = round(0.18 * sum(len(nlp.make_doc(t)) for t, _ in TEXTS))
    assert wanted == 6
    thresholds = nlp.get_pipe("softprompt_ie").cfg["label_thresholds"]
    # (srsly's JSON reader can be one double off the 10 decimals written; compared in float32 anyway)
    assert thresholds == pytest.approx({label: v["threshold"] for label, v in found.items()}, rel=1e-12, abs=0)
    assert all(1e-6 < t < 0.5 for t in thresholds.values()), thresholds
    assert nlp.config["components"]["softprompt_ie"]["label_thresholds"] == pytest.approx(thresholds, rel=1e-12, abs=0)
    counts = {label: 0 for label in thresholds}
    for doc in nlp.pipe(t for t, _ in TEXTS):
        for span in doc.spans["softprompt"]:
            if span.label_ in counts:
                counts[span.label_] += 1
    assert counts == {label: v["found"] for label, v in found.items()} == {"Drug": wanted, "ADE": wanted}
    # the calibrated config.cfg is what the pipeline was built with: editing a threshold out of it takes it away
    config = spacy.util.load_config(out / "config.cfg")
    del config["components"]["softprompt_ie"]["label_thresholds"]["ADE"]
    config.to_disk(out / "config.cfg")
    assert list(spacy.load(out).get_pipe("softprompt_ie").cfg["label_thresholds"]) == ["Drug"]


def test_calibrate_says_what_is_wrong(concepts_pipeline, tmp_path, capsys):
    pipeline, _ = concepts_pipeline
    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"id": 1, "text": "Aspirin."}\nnot json\n')
    base = ["calibrate", str(pipeline), str(notes), str(tmp_path / "out"), "--density", "1"]
    for extra, message in ((["--labels", "Drug"], "notes.jsonl, line 2: not a JSON record"),
                           ([], "name the types to calibrate"),
                           (["--labels", "Nope"], "--labels Nope: not concept types of the component"),
                           (["--labels", "Drug", "--floor", "1e-12"], "--floor 1e-12: between 1e-09"),
                           (["--labels", "Drug", "--floor", "0.9"], "and the component's threshold, 0.5")):
        assert main(base + extra) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base + ["--labels", "Drug", "--scale", "0"])
    assert "0: must be a finite number above 0" in capsys.readouterr().err
    assert main(["calibrate", str(pipeline), str(tmp_path / "none.jsonl"), str(tmp_path / "out"), "--density", "1",
                 "--labels", "Drug"]) == 2
    assert "notes not found" in capsys.readouterr().err
    notes.write_text('{"id": 1, "text": "Aspirin."}\n')  # a --report folder failed after the pipeline was saved
    assert main(base + ["--labels", "Drug", "--report", str(tmp_path)]) == 2
    assert f"--report {tmp_path} is a folder" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(base[:3] + [str(tmp_path / "file")] + base[4:] + ["--labels", "Drug"]) == 2
    assert "is a file: the calibrated pipeline is saved as a folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_calibrate_counts_what_concept_queries_find(trained_pipeline, tmp_path):
    """A pipeline with relations is calibrated on concepts only: no relation is asked (a trigger
    down at the floor would ask one per candidate), and a type's count is what the concept queries
    find, not also the relation arguments a relation adds to the span group."""
    import json

    notes = tmp_path / "notes.jsonl"
    notes.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, (t, _) in enumerate(TEXTS)))
    report = tmp_path / "report.json"
    assert main(["calibrate", str(trained_pipeline), str(notes), str(tmp_path / "out"), "--density", "18",
                 "--labels", "Drug", "ADE", "--report", str(report)]) == 0
    found = json.loads(report.read_text())["types"]
    nlp = spacy.load(tmp_path / "out")
    pipe = nlp.get_pipe("softprompt_ie")
    with pipe.concepts_only():
        docs = list(nlp.pipe(t for t, _ in TEXTS))
    assert all(not doc._.relations for doc in docs)
    counts = {label: sum(s.label_ == label for d in docs for s in d.spans["softprompt"]) for label in found}
    assert counts == {label: v["found"] for label, v in found.items()}
    assert any(doc._.relations for doc in nlp.pipe(t for t, _ in TEXTS))  # asked again outside


def test_thresholds_with_label_thresholds_vary_every_type(concepts_pipeline, tmp_path):
    """--thresholds on a pipeline whose types have their own thresholds: the main scores stay at
    them (as without --thresholds), and each p is every type at p (as a copy without them)."""
    import json

    pipeline, gold = concepts_pipeline
    nlp = spacy.load(pipeline)
    nlp.get_pipe("softprompt_ie").cfg["label_thresholds"] = {"Drug": 1e-9}
    nlp.to_disk(tmp_path / "own")
    nlp.get_pipe("softprompt_ie").cfg["label_thresholds"] = {}
    nlp.get_pipe("softprompt_ie").cfg["threshold"] = 0.9
    nlp.to_disk(tmp_path / "plain")
    runs = {"own": ["own"], "both": ["own", "--thresholds", "0.9"], "plain": ["plain"]}
    for name, (folder, *extra) in runs.items():
        assert main(["evaluate", str(tmp_path / folder), str(gold), *extra, "--output", str(tmp_path / f"{name}.json")]) == 0
    own, both, plain = (json.loads((tmp_path / f"{n}.json").read_text()) for n in runs)
    for key in ("concepts_strict_p", "concepts_strict_r", "concepts_strict_per_type"):
        assert both[key] == own[key] and both["by_threshold"]["0.9"][key] == plain[key], key
    assert own["concepts_strict_p"] < plain["concepts_strict_p"]  # Drug down to 1e-9: not the same scores
