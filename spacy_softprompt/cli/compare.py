"""``compare``: one table of several trained pipelines and their metrics files."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List

from . import CLIError

HELP = "tabulate strategies side by side: concept/relation F1, trainable parameters, artifact size"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="NAME=PIPELINE:METRICS",
        help="a row: a name, the trained pipeline folder and the metrics JSON from `evaluate`",
    )
    parser.add_argument("--output", type=Path, help="write the markdown table here (and .json beside it)")
    parser.add_argument("--component", default="softprompt_ie", help="name of the component in each pipeline")


def component_footprint(component_dir: Path) -> Dict[str, int]:
    """Parameters that training changed, and the bytes the component's folder takes."""
    from safetensors import safe_open

    cfg = json.loads((component_dir / "cfg.json").read_text())
    trainable = 0
    files = [component_dir / "trainable.safetensors"]
    if cfg.get("backbone_stored") and not cfg.get("backbone_frozen", True):
        files += sorted((component_dir / "backbone").glob("*.safetensors"))
    for path in files:
        if path.exists():
            with safe_open(str(path), framework="np") as handle:
                for key in handle.keys():
                    trainable += int(_numel(handle.get_slice(key).get_shape()))
    size = sum(p.stat().st_size for p in component_dir.rglob("*") if p.is_file())
    return {"trainable_parameters": trainable, "artifact_bytes": size}


def _numel(shape: List[int]) -> int:
    n = 1
    for dim in shape:
        n *= dim
    return n


def run(args: argparse.Namespace) -> int:
    rows = []
    for spec in args.runs:
        name, sep, rest = spec.partition("=")
        pipeline, sep2, metrics = rest.partition(":")
        if not (sep and sep2):
            raise CLIError(f"expected NAME=PIPELINE:METRICS, got {spec!r}")
        component_dir = Path(pipeline) / args.component
        if not (component_dir / "cfg.json").exists():
            raise CLIError(f"{component_dir} is not a saved {args.component} component (train it first)")
        if not Path(metrics).exists():
            raise CLIError(f"metrics file {metrics} not found (run `evaluate` first)")
        scores = json.loads(Path(metrics).read_text())
        rows.append({"name": name, **component_footprint(component_dir), **{
            key: scores.get(key, 0.0)
            for key in ("concepts_strict_f", "concepts_lenient_f", "relations_strict_f", "relations_lenient_f")
        }})
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
