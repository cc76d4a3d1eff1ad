"""docs/gpu_check.py (the GPU paths on a CUDA machine; no GPU here): its comparison of the
``annotate`` outputs of two devices reads the records that ``annotate`` writes, ignores scores and
tells a changed concept apart; and the script's command line parses."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

from spacy_softprompt.annotate.records import doc_to_record
from spacy_softprompt.relations import Relation, set_relations

from conftest import ROOT, annotate

SCRIPT = ROOT / "docs" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(folder, docs):
    folder.mkdir()
    lines = [json.dumps(doc_to_record(doc, f"note{i}")) for i, doc in enumerate(docs)]
    (folder / "part-00000.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "errors.jsonl").write_text('{"id": "broken", "error": "x"}\n')  # not a record


def test_records_compare_concepts_and_relations_not_scores(tmp_path, blank_nlp):
    records = load_script().records
    text = "Aspirin caused nausea."
    gold = annotate(blank_nlp, text, [("Aspirin", "Drug"), ("nausea", "ADE")], [("nausea", "Drug-AE", "Aspirin")])
    rescored = annotate(blank_nlp, text, [("Aspirin", "Drug"), ("nausea", "ADE")], [])
    drug, effect = rescored.spans["softprompt"]
    set_relations(rescored, [Relation(effect, drug, "Drug-AE", 0.51)])
    other = annotate(blank_nlp, text, [("Aspirin", "Drug")], [])
    write(tmp_path / "gpu", [gold, other])
    write(tmp_path / "cpu", [rescored, gold])
    gpu, cpu = records(tmp_path / "gpu"), records(tmp_path / "cpu")
    assert set(gpu) == set(cpu) == {"note0", "note1"}  # errors.jsonl is not read as records
    assert gpu["note0"] == cpu["note0"]  # same concepts and relation, another score
    assert gpu["note1"] != cpu["note1"]  # a concept fewer
    assert gpu["note0"][0] == [(0, 7, "Drug"), (15, 21, "ADE")]


def test_command_line_parses():
    done = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--backbone" in done.stdout and "--no-cats" in done.stdout
