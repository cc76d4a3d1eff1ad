"""Verbs that need a trained pipeline: render (terminal and HTML) and compare."""
import pytest
import spacy

from spacy_softprompt.cli import main

from conftest import RELATIONS, TEXTS, annotate, fit_pipeline


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



def test_render_with_context_marks_negation(trained_pipeline, capsys):
    pytest.importorskip("medspacy")
    # a training sentence (the fitted pipeline finds metformin in it) that ConText reads as negated
    assert main(["render", str(trained_pipeline), TEXTS[2][0], "--context"]) == 0
    concepts = capsys.readouterr().out.split("Concepts:")[1].split("Relations:")[0].strip().splitlines()
    assert len(concepts) == 1
    assert concepts[0].split()[:2] == ["metformin", "Drug"] and concepts[0].endswith("[negated]")


def test_render_context_without_medspacy_says_what_to_install(trained_pipeline, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "medspacy", None)  # import fails as if not installed
    assert main(["render", str(trained_pipeline), "text", "--context"]) == 1
    assert "pip install 'spacy_softprompt[medspacy]'" in capsys.readouterr().err
