"""`step-time`: the shape of the breakdown (its figures live in docs/step_time.md)."""
import json

from spacy.tokens import DocBin

from spacy_softprompt.cli import main
from spacy_softprompt.cli.step_time import PARTS


def test_step_time_splits_every_step(tiny_bert, toy_docs, tmp_path):
    DocBin(store_user_data=True, docs=toy_docs * 3).to_disk(tmp_path / "train.spacy")
    report = tmp_path / "step_time.md"
    code = main(["step-time", "--train", str(tmp_path / "train.spacy"), "--backbone", tiny_bert, "--steps", "2",
                 "--batch-words", "20", "--prompt-layer", "1", "--only", "soft prompts, frozen, packed, cached",
                 "--output", str(report)])
    assert code == 0
    (row,) = json.loads(report.with_suffix(".json").read_text())
    assert row["steps"] == 2 and row["words_per_s"] > 0
    assert all(row[part] >= 0 for part in PARTS) and row["forward"] > 0 and row["backward"] > 0
    assert sum(row[part] for part in PARTS) <= row["total_s"] / row["steps"] * 1000 + 1e-6


def test_step_time_leaves_the_component_module_as_it_was(tiny_bert, toy_docs, tmp_path):
    from spacy_softprompt import component, targets

    DocBin(store_user_data=True, docs=toy_docs * 3).to_disk(tmp_path / "train.spacy")
    assert main(["step-time", "--train", str(tmp_path / "train.spacy"), "--backbone", tiny_bert, "--steps", "1",
                 "--batch-words", "20", "--prompt-layer", "1", "--only", "soft prompts, frozen"]) == 0
    assert component.training_queries is targets.training_queries
