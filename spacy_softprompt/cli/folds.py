"""``folds``: k-fold cross-validation as the ADE literature evaluates (SpERT's 10 folds).

``folds train`` trains a config on each fold's ``train.spacy`` (model selection on the fold's
``dev.spacy``, carved from its train file by ``convert spert-json --folds --dev-fraction``),
scores ``model-best`` on the fold's ``test.spacy`` with the ``evaluate`` verb
(``METRICS/fold_<i>.json``) and writes ``RUNS/fold_<i>/run.json`` (steps, epochs, best step,
wall time, peak memory; from spaCy's JSONL training log). ``folds aggregate`` reads the
``fold_<i>.json`` files that exist and writes mean ± sd over them, each fold's figures and the
literature's figures as a markdown table (and JSON beside it).
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from . import (CLIError, at_least_one, check_distinct, gpu_id, is_fraction, is_number, markdown_output, non_negative,
               read_record)

HELP = "cross-validation on k folds (SpERT's ADE splits): train and score each fold, then mean ± sd over folds"

# (key of the evaluate verb's JSON, label); the first two are the numbers ADE papers report
METRICS = [
    ("concepts_strict_macro_f", "entity F1, strict, macro over types (literature)"),
    ("relations_strict_f", "relation F1, strict (literature; one type: macro = micro)"),
    ("concepts_strict_f", "entity F1, strict, micro"),
    ("concepts_lenient_macro_f", "entity F1, lenient, macro"),
    ("concepts_lenient_f", "entity F1, lenient, micro"),
    ("relations_lenient_f", "relation F1, lenient"),
]
# ADE, 10-fold mean, strict; entity F1 macro, relation F1 with argument types ("with NEC")
LITERATURE = [
    {"system": "SpERT (Eberts & Ulges 2020)", "backbone": "BERT-base", "parameters": "110M",
     "entity_f": 89.3, "relation_f": 78.8},
    {"system": "PFN (Yan et al. 2021)", "backbone": "BERT-base", "parameters": "110M",
     "entity_f": 89.6, "relation_f": 80.0},
    {"system": "ITER (Hennen et al. 2024)", "backbone": "larger encoders (see the paper)", "parameters": "see the paper",
     "entity_f": 92.6, "relation_f": 85.6},
]
FOLD_FILE = re.compile(r"^fold_(\d+)\.json$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    train = sub.add_parser("train", help="train CONFIG on each fold and score it on the fold's test file")
    train.add_argument("config", type=Path, help="training config, e.g. configs/lora_frozen.cfg")
    train.add_argument("--corpus", type=Path, required=True,
                       help="folder of fold_<i>/{train,dev,test}.spacy (convert spert-json --folds --dev-fraction)")
    train.add_argument("--folds", nargs="+", type=non_negative, required=True, metavar="I", help="folds to run, e.g. 0 1 2")
    train.add_argument("--runs", type=Path, required=True, help="training output: RUNS/fold_<i>/ per fold")
    train.add_argument("--metrics", type=Path, required=True, help="scores on test: METRICS/fold_<i>.json")
    train.add_argument("--max-steps", type=at_least_one, required=True)
    train.add_argument("--eval-frequency", type=at_least_one, required=True, help="steps between dev evaluations")
    train.add_argument("--dev-limit", type=non_negative, default=0, help="dev documents evaluated (0: all, the default)")
    train.add_argument("--patience", type=non_negative, default=None,
                       help="stop a fold after this many steps without a better dev score (default: the config's)")
    train.add_argument("--backbone", help="softprompt_ie's model.backbone, or a stock pipeline's transformer "
                                          "(resolved to a local folder); default: the config's")
    train.add_argument("--seed", type=int, default=0, help="system.seed of every fold")
    train.add_argument("--gpu-id", type=gpu_id, default=-1, help="GPU to train and evaluate on; -1 (default) for CPU")
    aggregate = sub.add_parser("aggregate", help="mean ± sd over the METRICS/fold_<i>.json files that exist")
    aggregate.add_argument("metrics", type=Path,
                           help="folder of fold_<i>.json from the evaluate verb, or a folder of such folders "
                                "(one per system: they are compared in one table)")
    aggregate.add_argument("--runs", type=Path,
                           help="RUNS of `folds train` (or, for a folder of systems, the folder of their RUNS): "
                                "steps, epochs, wall time per fold")
    aggregate.add_argument("--name", help="what was trained, for the title (default: the metrics folder's name)")
    aggregate.add_argument("--output", type=markdown_output, help="write the markdown here (and .json beside it)")
    aggregate.add_argument("--previous", type=Path,
                           help="an earlier report's JSON (docs/ade_spert.json): each system's folds it holds that "
                                "METRICS has no file for are kept, marked as carried over (metrics/ is not "
                                "committed, so a fresh checkout adds folds to the report this way); a file not "
                                "there yet carries nothing")


def run(args: argparse.Namespace) -> int:
    return _train(args) if args.action == "train" else _aggregate(args)


def _train(args: argparse.Namespace) -> int:
    from .bench import dev_curve
    from .runs import (backbone_settings, base_config, config_sha1, corpus_settings, evaluate, jsonl_log_settings,
                       require_files, train, write_run_config)

    check_distinct(args.folds, "--folds")
    parts = {fold: {p: args.corpus / f"fold_{fold}" / f"{p}.spacy" for p in ("train", "dev", "test")}
             for fold in args.folds}
    require_files([path for files in parts.values() for path in files.values()],
                  "run `spacy project run convert-spert`: convert spert-json --folds --dev-fraction 0.1")
    config = base_config(config=args.config)
    if args.metrics.is_file():
        raise CLIError(f"--metrics {args.metrics} is a file: pass the folder for the fold_<i>.json scores")
    digest = config_sha1(config)
    for fold in parts:  # aggregate averages whatever fold files it finds: one config's only
        earlier = _run_record(args.runs, fold)
        if earlier and (earlier.get("config"), earlier.get("config_sha1", digest)) != (str(args.config), digest):
            raise CLIError(f"{args.runs / f'fold_{fold}'} holds a run of another config ({earlier.get('config')}), "
                           "which `folds aggregate` would average with this one's: pass other --runs and --metrics "
                           "folders, or delete it")
    for fold, files in parts.items():
        run_dir = args.runs / f"fold_{fold}"
        log = run_dir / "train_log.jsonl"
        settings = corpus_settings(files["train"], files["dev"], max_steps=args.max_steps,
                                   eval_frequency=args.eval_frequency, dev_limit=args.dev_limit, seed=args.seed,
                                   patience=args.patience)
        settings.update(jsonl_log_settings(log))
        if args.backbone:
            settings.update(backbone_settings(config, args.backbone))
        print(f"fold {fold}: training {args.config} -> {run_dir}", file=sys.stderr)
        result = train(write_run_config(config, settings, run_dir / "config.cfg"), run_dir, gpu_id=args.gpu_id)
        metrics = args.metrics / f"fold_{fold}.json"
        evaluate(result.pipeline, files["test"], metrics, gpu_id=args.gpu_id)
        record = {"fold": fold, "config": str(args.config), "config_sha1": digest, "backbone": args.backbone,
                  "max_steps": args.max_steps,
                  "patience": settings.get("training.patience", config["training"].get("patience")),
                  "train_seconds": round(result.train_seconds, 1),
                  "peak_train_rss_mb": round(result.peak_train_rss_mb, 1), **dev_curve(log)}
        (run_dir / "run.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        print(f"fold {fold}: {metrics}", file=sys.stderr)
    return 0


def _aggregate(args: argparse.Namespace) -> int:
    previous = _previous_systems(args.previous)
    if not args.metrics.is_dir() and not previous:
        raise CLIError(f"{args.metrics} is not a folder of fold_<i>.json files (run `folds train` first)")
    systems: Dict[str, tuple] = {}
    if args.metrics.is_dir() and _fold_files(args.metrics):
        systems = {args.name or args.metrics.name: (args.metrics, args.runs)}
    elif args.metrics.is_dir():  # a folder of systems: metrics/ade-spert/<system>/fold_<i>.json
        systems = {d.name: (d, None if args.runs is None else args.runs / d.name)
                   for d in sorted(args.metrics.iterdir()) if d.is_dir() and _fold_files(d)}
    names = list(systems) + [name for name in previous if name not in systems]
    if not names:
        raise CLIError(f"no fold_<i>.json in {args.metrics} or its subfolders (run `folds train` first)")
    summaries = []
    for name in names:
        metrics, runs = systems.get(name, (None, None))
        folds = _fold_files(metrics) if metrics else []
        summary = aggregate(
            {fold: _fold_scores(path) for fold, path in folds},
            {fold: _run_record(runs, fold) for fold, _ in folds} if runs else {},
            name=name, carried=previous.get(name),
        )
        if metrics:
            summary["metrics_folder"] = str(metrics)
        if any(r.get("carried") for r in summary["per_fold"]):
            summary["previous"] = str(args.previous)
        summaries.append(summary)
    table = to_markdown(summaries)
    print(table, end="")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(table, encoding="utf-8")
        report = summaries[0] if len(summaries) == 1 else {"systems": summaries, "literature": LITERATURE}
        args.output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def _previous_systems(path: Optional[Path]) -> Dict[str, Dict[str, Any]]:
    """System name -> its summary in an earlier report (one system's, or several); none yet
    (the first aggregate of a project, whose output it will be): nothing carried."""
    if path is None or not path.exists():
        return {}
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CLIError(f"--previous {path}: not a report's JSON ({err})") from err
    summaries = report.get("systems", [report]) if isinstance(report, dict) else None

    def is_fold_row(row: Any) -> bool:
        return isinstance(row, dict) and isinstance(row.get("fold"), int) and all(
            key in row and (row[key] is None or is_number(row[key])) for key, _ in METRICS)

    if not (isinstance(summaries, list) and all(
            isinstance(s, dict) and "name" in s and isinstance(s.get("per_fold"), list)
            and all(map(is_fold_row, s["per_fold"])) for s in summaries)):
        raise CLIError(f"--previous {path}: not a `folds aggregate` report (a name and per_fold rows, each with its "
                       "fold and scores, per system)")
    return {s["name"]: s for s in summaries}


def _fold_files(folder: Path) -> List[tuple]:
    """(fold, path) of the fold_<i>.json files in ``folder``, by fold."""
    files = sorted((int(m[1]), p) for p in folder.iterdir() if (m := FOLD_FILE.match(p.name)))
    for (fold, path), (other, same) in zip(files, files[1:]):
        if fold == other:  # (fold_1 and fold_01: one of them was dropped without a word)
            raise CLIError(f"{path} and {same} are both fold {fold}'s scores")
    return files


def _fold_scores(path: Path) -> Dict[str, Any]:
    """A fold's scores (``folds train``), each metric a fraction in [0, 1] or absent."""
    scores = read_record(path, "a fold's scores (`folds train`)", ["concepts_strict_f"])
    bad = [key for key, _ in METRICS if scores.get(key) is not None and not is_fraction(scores[key])]
    if bad:  # (NaN or a string was a traceback from statistics)
        raise CLIError(f"{path}: {bad[0]} {scores[bad[0]]!r} is not a score in [0, 1]")
    return scores


def _run_record(runs: Path, fold: int) -> Optional[Dict[str, Any]]:
    path = runs / f"fold_{fold}" / "run.json"
    if not path.is_file():
        return None
    record = read_record(path, "a fold run's record")
    bad = [key for key in ("steps", "epochs", "best_step", "train_seconds")
           if record.get(key) is not None and not is_number(record[key])]
    if bad:
        raise CLIError(f"{path}: {bad[0]} {record[bad[0]]!r} is not a number")
    return record


def aggregate(scores: Dict[int, Dict[str, Any]], runs: Dict[int, Optional[Dict[str, Any]]], name: str,
              carried: Optional[Dict[str, Any]] = None) -> Dict:
    """Mean and sample sd (in F1 points) of each metric over the folds given; each fold's figures.
    ``carried``: this system's summary in an earlier report, whose folds not in ``scores`` are
    kept as they were (marked ``carried``)."""
    # a system that predicts no relation in any fold (stock ner/spancat: no relation component) has
    # no relation F1 to report, rather than a relation F1 of 0
    counted = all("relations_strict_tp" in s and "relations_strict_fp" in s for s in scores.values())
    relations = bool(scores) and (
        not counted or any(s["relations_strict_tp"] + s["relations_strict_fp"] > 0 for s in scores.values()))
    kept = [dict(r, carried=True) for r in (carried or {}).get("per_fold", []) if r["fold"] not in scores]
    if kept:
        relations = relations or bool(carried.get("predicts_relations", True))
    per_fold = []
    for fold in sorted(scores):
        row: Dict[str, Any] = {"fold": fold}
        for key, _ in METRICS:
            value = scores[fold].get(key)
            if key.startswith("relations_") and not relations:
                value = None
            row[key] = None if value is None else round(100 * value, 2)
        run = runs.get(fold) or {}
        for key in ("steps", "epochs", "best_step", "train_seconds", "backbone", "config"):
            row[key] = run.get(key)
        per_fold.append(row)
    for row in kept:
        for key, _ in METRICS:
            if key.startswith("relations_") and not relations:
                row[key] = None
    per_fold = sorted(per_fold + kept, key=lambda r: r["fold"])
    summary: Dict[str, Any] = {"name": name, "folds": [r["fold"] for r in per_fold], "n_folds": len(per_fold),
                               "predicts_relations": relations}
    for key, label in METRICS:
        values = [r[key] for r in per_fold if r[key] is not None]
        summary[key] = {
            "label": label,
            "mean": round(statistics.fmean(values), 2) if values else None,
            "sd": round(statistics.stdev(values), 2) if len(values) > 1 else None,
            "n": len(values),
        }
    seconds = [r["train_seconds"] for r in per_fold if r["train_seconds"] is not None]
    summary["train_seconds_total"] = round(sum(seconds), 1) if seconds else None
    summary["per_fold"] = per_fold
    summary["literature"] = LITERATURE
    return summary


def _cell(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/r"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _mean_sd(stat: Dict[str, Any]) -> str:
    if stat["mean"] is None:
        return "n/r"
    return f"{stat['mean']:.1f}" + ("" if stat["sd"] is None else f" ± {stat['sd']:.1f}")


def to_markdown(summaries: List[Dict[str, Any]]) -> str:
    """One system: its mean ± sd per metric. Several: one row per system first. Then each
    system's folds, and the literature."""
    names = ", ".join(s["name"] for s in summaries)
    sources = [f"`{s['metrics_folder']}/fold_<i>.json`" for s in summaries if "metrics_folder" in s]
    sources += sorted({f"the folds of `{s['previous']}` marked *" for s in summaries if "previous" in s})
    folders = ", ".join(sources)
    lines = [
        f"# ADE, SpERT's 10 folds: {names}",
        "",
        "Made by `spacy project run aggregate-spert` (`python -m spacy_softprompt folds aggregate`) from "
        f"{folders}; do not edit. Each fold: trained on its train file less a dev set (a seeded 10% of the train "
        "file, for model selection), scored on its test file (`evaluate`); strict is exact span and type (SpERT's "
        "setting with the nested entities). F1 in points, mean ± sample sd over the folds.",
        "",
    ]
    if len(summaries) == 1:
        summary = summaries[0]
        lines += [_folds_line(summary) + ".", "", "| metric | key | mean ± sd |", "| --- | --- | ---: |"]
        lines += [f"| {label} | `{key}` | {_mean_sd(summary[key])} |" for key, label in METRICS]
    else:
        lines += ["| system | folds | " + " | ".join(label for _, label in METRICS) + " | training s (all folds) |",
                  "| --- | --- | " + " | ".join("---:" for _ in METRICS) + " | ---: |"]
        for summary in summaries:
            total = summary["train_seconds_total"]
            lines.append(f"| {summary['name']} | {', '.join(map(str, summary['folds']))} | "
                         + " | ".join(_mean_sd(summary[key]) for key, _ in METRICS)
                         + f" | {_cell(total, 0)} |")
        short = [s["name"] for s in summaries if s["n_folds"] < 10]
        if short:
            lines += ["", f"Fewer than 10 folds is not yet the papers' figure (they average all 10): "
                          f"{', '.join(short)}."]
        silent = [s["name"] for s in summaries if not s.get("predicts_relations", True)]
        if silent:
            lines += ["", f"n/r under relations: {', '.join(silent)} predicted no relation in any fold (no relation "
                      "component), so there is no relation F1 to report."]
    for summary in summaries:
        lines += ["", f"## Each fold: {summary['name']}" if len(summaries) > 1 else "## Each fold", ""]
        if len(summaries) > 1:
            lines += [_folds_line(summary) + ".", ""]
        lines += ["| fold | entity macro | relation | entity micro | entity lenient macro | entity lenient "
                  "| relation lenient | steps (best) | epochs | training s |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in summary["per_fold"]:
            figures = " | ".join(_cell(r[key]) for key, _ in METRICS)
            steps = "n/r" if r["steps"] is None else f"{r['steps']} ({_cell(r['best_step'])})"
            fold = f"{r['fold']}*" if r.get("carried") else str(r["fold"])
            lines.append(f"| {fold} | {figures} | {steps} | {_cell(r['epochs'])} "
                         f"| {_cell(r['train_seconds'], 0)} |")
        if any(r.get("carried") for r in summary["per_fold"]):
            lines += ["", "\\* carried over from the previous report (`--previous`): measured in an earlier run, whose "
                      "fold file is not in this checkout."]
        total = summary["train_seconds_total"]
        lines += ["", "Steps, epochs and training time come from each fold's `run.json` (spaCy's training log; n/r: "
                  "not recorded); training time is the wall time of `spacy train`"
                  + ("" if total is None else f", {total:.0f} s over these folds") + "."]
    lines += ["", "## The literature (10-fold mean, strict)", "",
              "| system | backbone | parameters | entity F1 (macro) | relation F1 |",
              "| --- | --- | ---: | ---: | ---: |"]
    for row in LITERATURE:
        lines.append(f"| {row['system']} | {row['backbone']} | {row['parameters']} | {row['entity_f']:.1f} "
                     f"| {row['relation_f']:.1f} |")
    lines += ["", "The project's default backbone, all-MiniLM-L6-v2, has 22M parameters (6 layers, 384 wide).",
              "Which keys match the papers' figures: docs/scoring.md."]
    return "\n".join(lines) + "\n"


def _folds_line(summary: Dict[str, Any]) -> str:
    n, folds = summary["n_folds"], ", ".join(map(str, summary["folds"]))
    backbones = sorted({str(r["backbone"]) for r in summary["per_fold"] if r["backbone"]})
    return (f"**{n} of 10 folds** ({folds})" + ("" if n == 10 else ": the papers average all 10, so this is not yet "
                                                "their figure") + (f"; backbone {', '.join(backbones)}" if backbones else ""))
