"""``compare``: one table of several trained pipelines and their metrics files."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List

from . import CLIError, check_output_files, is_fraction, is_number, markdown_output, read_json

HELP = "tabulate strategies side by side: concept/relation F1, trainable parameters, artifact size"
METRIC_KEYS = ("concepts_strict_f", "concepts_lenient_f", "relations_strict_f", "relations_lenient_f")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="NAME=PIPELINE:METRICS",
        help="a row: a name, the trained pipeline folder and the metrics JSON from `evaluate`",
    )
    parser.add_argument("--output", type=markdown_output, help="write the markdown table here (and .json beside it)")
    parser.add_argument("--component", default="softprompt_ie", help="name of the component in each pipeline")


def trainable_parameters(pipeline: Path) -> int:
    """Parameters the optimizer would update: thinc params plus torch params that require grad
    (a frozen backbone counts for nothing)."""
    import spacy

    nlp = spacy.load(pipeline)
    total = 0
    for _, pipe in nlp.pipeline:
        model = getattr(pipe, "model", None)
        if model is None:
            continue
        for node in model.walk():
            total += sum(int(node.get_param(p).size) for p in node.param_names if node.has_param(p))
            for shim in node.shims:
                torch_model = getattr(shim, "_model", None)
                if torch_model is not None:
                    total += sum(p.numel() for p in torch_model.parameters() if p.requires_grad)
    return total


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run(args: argparse.Namespace) -> int:
    check_output_files(output=args.output)
    runs = []  # every run checked before the first pipeline is loaded
    for spec in args.runs:
        name, sep, rest = spec.partition("=")
        pipeline, sep2, metrics = rest.partition(":")
        if not (name and sep and pipeline and sep2 and metrics):
            raise CLIError(f"expected NAME=PIPELINE:METRICS, got {spec!r}")
        if any(name == other for other, _, _ in runs):
            raise CLIError(f"two runs are named {name}: each row needs its own name")
        runs.append((name, pipeline, metrics))
    rows = []
    for name, pipeline, metrics in runs:
        component_dir = Path(pipeline) / args.component
        if not (component_dir / "model").exists() and not (component_dir / "cfg.json").exists():
            raise CLIError(f"{component_dir} is not a saved {args.component} component (train it first)")
        what = "the metrics JSON that `evaluate --output` writes"
        scores = read_json(Path(metrics), what)
        if not isinstance(scores, dict) or not all(is_number(scores.get(key)) for key in METRIC_KEYS):
            raise CLIError(f"{metrics}: not {what} (an object with the numbers {', '.join(METRIC_KEYS)})")
        outside = [key for key in METRIC_KEYS if not is_fraction(scores[key])]
        if outside:
            raise CLIError(f"{metrics}: {outside[0]} {scores[outside[0]]}: scores are fractions in [0, 1]")
        row = {
            "name": name,
            "trainable_parameters": trainable_parameters(Path(pipeline)),
            "artifact_bytes": folder_bytes(component_dir),
        }
        row.update({key: scores[key] for key in METRIC_KEYS})
        rows.append(row)
    table = to_markdown(rows)
    print(table)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(table + "\n", encoding="utf-8")
        args.output.with_suffix(".json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


def to_markdown(rows: List[Dict]) -> str:
    lines = [
        "| strategy | concept F1 strict | concept F1 lenient | relation F1 strict | relation F1 lenient "
        "| trainable parameters | artifact size |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {100 * r['concepts_strict_f']:.1f} | {100 * r['concepts_lenient_f']:.1f} "
            f"| {100 * r['relations_strict_f']:.1f} | {100 * r['relations_lenient_f']:.1f} "
            f"| {r['trainable_parameters']:,} | {r['artifact_bytes'] / 1e6:.2f} MB |"
        )
    return "\n".join(lines)
