"""``folds`` (cli/folds.py): aggregation of per-fold metrics on synthetic JSONs, and project.yml's
``spert-folds`` workflow (convert with a dev split, train and score a fold, aggregate) run in
small: two steps of the tiny random BERT on a few sentences of fold 0, so it cannot rot."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import spacy

from spacy_softprompt.cli import main
from spacy_softprompt.cli.folds import METRICS

from conftest import ROOT, SHARED_DATA



def scores(entity_macro: float, relation: float) -> dict:
    values = {key: 0.5 for key, _ in METRICS}
    values.update(concepts_strict_macro_f=entity_macro, relations_strict_f=relation)
    return values


def test_aggregate_mean_sd_per_fold_and_literature(tmp_path, capsys):
    metrics, runs = tmp_path / "metrics", tmp_path / "runs"
    metrics.mkdir()
    for fold, (e, r) in {0: (0.80, 0.60), 1: (0.84, 0.70), 3: (0.82, 0.65)}.items():
        (metrics / f"fold_{fold}.json").write_text(json.dumps(scores(e, r)))
    (metrics / "other.json").write_text("{}")  # not a fold file: ignored
    (runs / "fold_1").mkdir(parents=True)
    (runs / "fold_1" / "run.json").write_text(json.dumps(
        {"steps": 740, "epochs": 4, "best_step": 555, "train_seconds": 812.3, "backbone": "default"}))
    out = tmp_path / "docs" / "ade_spert.md"
    assert main(["folds", "aggregate", str(metrics), "--runs", str(runs), "--output", str(out), "--name", "x"]) == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["folds"] == [0, 1, 3] and summary["n_folds"] == 3
    assert summary["concepts_strict_macro_f"] == {"label": METRICS[0][1], "mean": 82.0, "sd": 2.0, "n": 3}
    assert summary["relations_strict_f"]["mean"] == 65.0 and summary["relations_strict_f"]["sd"] == 5.0
    assert summary["per_fold"][1]["steps"] == 740 and summary["per_fold"][0]["steps"] is None
    table = out.read_text()
    assert table == capsys.readouterr().out
    assert "**3 of 10 folds** (0, 1, 3): the papers average all 10" in table
    assert "| entity F1, strict, macro over types (literature) | `concepts_strict_macro_f` | 82.0 ± 2.0 |" in table
    assert "| 1 | 84.0 | 70.0 | 50.0 | 50.0 | 50.0 | 50.0 | 740 (555) | 4 | 812 |" in table
    assert "| 0 | 80.0 | 60.0 | 50.0 | 50.0 | 50.0 | 50.0 | n/r | n/r | n/r |" in table
    for anchor in ("| 89.3 | 78.8 |", "| 89.6 | 80.0 |", "| 92.6 | 85.6 |", "110M", "22M"):
        assert anchor in table
    # one fold: no sd; no fold file: an error
    for fold in (1, 3):
        (metrics / f"fold_{fold}.json").unlink()
    assert main(["folds", "aggregate", str(metrics)]) == 0
    assert "| `concepts_strict_macro_f` | 80.0 |" in capsys.readouterr().out
    # a damaged fold file or run record: named, not a traceback (nor a fold counted with no scores)
    for path, text, message in ((metrics / "fold_2.json", "{", "fold_2.json: not JSON (line 1"),
                                (metrics / "fold_2.json", "[1]", "fold_2.json is a JSON list: not a fold's scores"),
                                (metrics / "fold_2.json", "{}", "fold_2.json lacks concepts_strict_f"),
                                (runs / "fold_0" / "run.json", '{"steps": ', "run.json: not JSON")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        assert main(["folds", "aggregate", str(metrics), "--runs", str(runs)]) == 2
        assert message in capsys.readouterr().err
        path.unlink()
    (metrics / "fold_0.json").unlink()
    assert main(["folds", "aggregate", str(metrics)]) == 2
    assert "no fold_<i>.json" in capsys.readouterr().err


def test_aggregate_compares_systems_in_one_table(tmp_path, capsys):
    """A folder of systems (metrics/ade-spert/<system>/fold_<i>.json): one row each, then each one's folds."""
    metrics, runs = tmp_path / "metrics", tmp_path / "runs"
    systems = {"finetune": {0: (0.86, 0.74)}, "lora_frozen": {0: (0.84, 0.70), 1: (0.88, 0.74)},
               "stock_spancat": {0: (0.85, 0.0)}}
    for system, folds in systems.items():
        (metrics / system).mkdir(parents=True)
        for fold, (e, r) in folds.items():
            counts = {"relations_strict_tp": 0, "relations_strict_fp": 0} if system == "stock_spancat" else {}
            (metrics / system / f"fold_{fold}.json").write_text(json.dumps({**scores(e, r), **counts}))
            (runs / system / f"fold_{fold}").mkdir(parents=True)
            (runs / system / f"fold_{fold}" / "run.json").write_text(json.dumps(
                {"steps": 740, "epochs": 4, "best_step": 740, "train_seconds": 600.0}))
    (metrics / "empty").mkdir()  # no fold files: not a system
    out = tmp_path / "ade_spert.md"
    assert main(["folds", "aggregate", str(metrics), "--runs", str(runs), "--output", str(out)]) == 0
    table = out.read_text()
    assert "| finetune | 0 | 86.0 | 74.0 | 50.0 | 50.0 | 50.0 | 50.0 | 600 |" in table
    assert "| lora_frozen | 0, 1 | 86.0 ± 2.8 | 72.0 ± 2.8 | 50.0 ± 0.0 |" in table
    assert "## Each fold: lora_frozen" in table and "empty" not in table
    # no relation predicted in any fold (no relation component): no relation F1, said so, not 0.0
    assert "| stock_spancat | 0 | 85.0 | n/r | 50.0 |" in table
    assert "stock_spancat predicted no relation in any fold" in table
    assert "| 1 | 88.0 | 74.0 | 50.0 | 50.0 | 50.0 | 50.0 | 740 (740) | 4 | 600 |" in table
    assert "(they average all 10): finetune, lora_frozen, stock_spancat." in table
    report = json.loads(out.with_suffix(".json").read_text())
    assert [s["name"] for s in report["systems"]] == ["finetune", "lora_frozen", "stock_spancat"]
    assert main(["folds", "aggregate", str(metrics / "empty")]) == 2
    assert "or its subfolders" in capsys.readouterr().err
    # a system with all 10 folds is the papers' figure: only the others are named as short of it
    for fold in range(2, 10):
        (metrics / "lora_frozen" / f"fold_{fold}.json").write_text(json.dumps(scores(0.86, 0.72)))
    assert main(["folds", "aggregate", str(metrics), "--output", str(out)]) == 0
    table = out.read_text()
    assert "**10 of 10 folds** (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)." in table
    assert "(they average all 10): finetune, stock_spancat." in table


def test_train_needs_the_dev_split(tmp_path, capsys):
    (tmp_path / "fold_0").mkdir()
    for part in ("train", "test"):
        (tmp_path / "fold_0" / f"{part}.spacy").write_bytes(b"")
    assert main(["folds", "train", str(ROOT / "configs" / "lora_frozen.cfg"), "--corpus", str(tmp_path),
                 "--folds", "0", "--runs", str(tmp_path / "r"), "--metrics", str(tmp_path / "m"),
                 "--max-steps", "2", "--eval-frequency", "1"]) == 2
    assert "fold_0/dev.spacy" in capsys.readouterr().err


def small_fold_files(folder: Path) -> None:
    """Fold 0 in small: its first 16 train and 4 test sentences (a synthetic stand-in without the
    shared data)."""
    folder.mkdir(parents=True)
    source = SHARED_DATA / "ade-spert-splits"
    for part, n in (("train", 16), ("test", 4)):
        path = source / f"ade_split_0_{part}.json"
        if path.is_file():
            documents = json.loads(path.read_text(encoding="utf-8"))[:n]
        else:
            documents = [{"tokens": ["Rash", "after", f"drug{i}", "."], "orig_id": i + (100 if part == "test" else 0),
                          "entities": [{"type": "Adverse-Effect", "start": 0, "end": 1},
                                       {"type": "Drug", "start": 2, "end": 3}],
                          "relations": [{"type": "Adverse-Effect", "head": 0, "tail": 1}]} for i in range(n)]
        (folder / f"ade_split_0_{part}.json").write_text(json.dumps(documents), encoding="utf-8")


@pytest.mark.slow
def test_spert_folds_workflow_runs_in_small(tmp_path, tiny_bert):
    root = tmp_path / "clone"
    root.mkdir()
    (root / "project.yml").symlink_to(ROOT / "project.yml")
    (root / "configs").symlink_to(ROOT / "configs")
    small_fold_files(root / "assets" / "ade-spert-splits")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1",
               SPACY_CONFIG_OVERRIDES="--training.optimizer.learn_rate.warmup_steps 1 "
               "--components.softprompt_ie.model.prompt_layer 1")  # the tiny BERT has 2 layers
    command = [sys.executable, "-m", "spacy", "project", "run", "spert-folds", ".", "--vars.backbone", tiny_bert,
               "--vars.spert_steps", "2", "--vars.spert_eval_frequency", "2", "--vars.spert_tag", "_long",
               "--vars.spert_patience", "7"]
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-5000:]}"
    assert sorted(p.name for p in (root / "corpus" / "ade-spert" / "fold_0").glob("*.spacy")) == [
        "dev.spacy", "test.spacy", "train.spacy"]
    metrics = json.loads((root / "metrics" / "ade-spert" / "lora_frozen_long" / "fold_0.json").read_text())
    assert "concepts_strict_macro_f" in metrics and "relations_strict_f" in metrics
    run_dir = root / "training" / "ade-spert" / "lora_frozen_long" / "fold_0"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["steps"] == 2 and run["backbone"] == tiny_bert and run["train_seconds"] > 0 and run["patience"] == 7
    assert spacy.util.load_config(run_dir / "config.cfg")["training"]["patience"] == 7
    summary = json.loads((root / "docs" / "ade_spert.json").read_text())
    assert summary["folds"] == [0] and summary["per_fold"][0]["steps"] == 2
    assert "**1 of 10 folds** (0)" in (root / "docs" / "ade_spert.md").read_text()


def test_aggregate_keeps_the_folds_of_a_previous_report(tmp_path, capsys):
    """metrics/ is not committed: a fresh checkout that scores fold 3 adds it to the committed
    report's folds 0-1 (--previous), marks them carried, and keeps a system it did not rerun."""
    metrics, first = tmp_path / "metrics", tmp_path / "first.md"
    for system, folds in {"lora_frozen": {0: (0.84, 0.70), 1: (0.88, 0.74)}, "finetune": {0: (0.86, 0.74)}}.items():
        (metrics / system).mkdir(parents=True)
        for fold, (e, r) in folds.items():
            (metrics / system / f"fold_{fold}.json").write_text(json.dumps(scores(e, r)))
    assert main(["folds", "aggregate", str(metrics), "--output", str(first)]) == 0
    fresh = tmp_path / "fresh"
    (fresh / "lora_frozen").mkdir(parents=True)
    (fresh / "lora_frozen" / "fold_3.json").write_text(json.dumps(scores(0.80, 0.72)))
    (fresh / "lora_frozen" / "fold_1.json").write_text(json.dumps(scores(0.90, 0.76)))  # rescored: the new file wins
    out = tmp_path / "second.md"
    assert main(["folds", "aggregate", str(fresh), "--previous", str(first.with_suffix(".json")),
                 "--output", str(out)]) == 0
    report = {s["name"]: s for s in json.loads(out.with_suffix(".json").read_text())["systems"]}
    lora = report["lora_frozen"]
    assert lora["folds"] == [0, 1, 3] and lora["concepts_strict_macro_f"]["mean"] == 84.67
    assert [r.get("carried", False) for r in lora["per_fold"]] == [True, False, False]
    assert report["finetune"]["folds"] == [0] and report["finetune"]["per_fold"][0]["carried"]
    table = out.read_text()
    assert "| 0* | 84.0 | 70.0 |" in table and "| 3 | 80.0 | 72.0 |" in table and "carried over" in table
    capsys.readouterr()
    assert main(["folds", "aggregate", str(fresh), "--previous", str(tmp_path / "none.json")]) == 0  # first report
    assert "carried over" not in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert main(["folds", "aggregate", str(fresh), "--previous", str(bad)]) == 2
    assert "not a `folds aggregate` report" in capsys.readouterr().err


def test_train_refuses_another_configs_folds_and_a_metrics_file(tmp_path, capsys):
    """Config A on folds 0-2, then config B on folds 0-1 into the same folders left A's fold 2 beside B's, and
    aggregate averaged the two; a --metrics that is a file failed after fold 0 had trained. Both before training."""
    from spacy.tokens import DocBin

    from conftest import ROOT

    for part in ("train", "dev", "test"):
        (tmp_path / "corpus" / "fold_2").mkdir(parents=True, exist_ok=True)
        DocBin().to_disk(tmp_path / "corpus" / "fold_2" / f"{part}.spacy")
    (tmp_path / "runs" / "fold_2").mkdir(parents=True)
    (tmp_path / "runs" / "fold_2" / "run.json").write_text(json.dumps({"fold": 2, "config": "configs/a.cfg"}))
    (tmp_path / "metrics.json").write_text("{}")
    base = ["folds", "train", str(ROOT / "configs" / "finetune.cfg"), "--corpus", str(tmp_path / "corpus"),
            "--folds", "2", "--runs", str(tmp_path / "runs"), "--max-steps", "1", "--eval-frequency", "1"]
    assert main(base + ["--metrics", str(tmp_path / "metrics.json")]) == 2
    assert "is a file: pass the folder" in capsys.readouterr().err
    assert main(base + ["--metrics", str(tmp_path / "metrics")]) == 2
    assert "holds a run of another config (configs/a.cfg)" in capsys.readouterr().err
    assert not (tmp_path / "metrics").exists() and not (tmp_path / "runs" / "fold_2" / "config.cfg").exists()
