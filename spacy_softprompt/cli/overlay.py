"""``overlay``: several ``experiment`` reports of one sweep side by side.

Each ``experiment`` run writes one arm (one config) of a sweep: frozen prompts in one report,
fine-tuning in another. The paper's question is how the arms compare at equal K (or prompt
length), so this verb reads their ``.json`` reports and writes one table (mean ± sd over seeds,
each arm's columns next to the other's) and one plot with error bars, concepts and relations
in two panels. It trains nothing.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List

from . import CLIError, is_fraction, is_number, markdown_output, read_json
from .experiment import METRICS, style_axis, summaries
from .runs import matplotlib_available

HELP = ("put several `experiment` reports of one sweep (e.g. frozen prompts and fine-tuning) in one table and "
        "one plot with error bars")

PANELS = (("concepts_strict_f", "concept F1 strict"), ("relations_strict_f", "relation F1 strict"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=["prompt-length", "fewshot"], help="the sweep the reports come from")
    parser.add_argument("arms", nargs="+", metavar="NAME=REPORT",
                        help="an arm: its name in the table and legend, and the .json that `experiment` wrote")
    parser.add_argument("--output", type=markdown_output, required=True,
                        help="the table (.md); the plot is written beside it (.png)")
    parser.add_argument("--no-plot", dest="plot", action="store_false",
                        help="write the table only (no matplotlib needed)")


def run(args: argparse.Namespace) -> int:
    arms = read_arms(args.arms)
    if args.plot:
        matplotlib_available(required=True, verb="overlay")
    table = to_markdown(args.kind, arms)
    sources = ", ".join(f"{name}: `{path}`" for name, path in _pairs(args.arms))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(f"Overlay of {sources} (mean ± sd over seeds, strict F1 on test; n = runs).\n\n"
                           f"{table}\n", encoding="utf-8")
    print(table)
    if args.plot:
        plot(args.kind, arms, args.output.with_suffix(".png"))
    print(f"\ntable{' and plot' if args.plot else ''} in {args.output}")
    return 0


def _pairs(specs: List[str]) -> List[tuple]:
    pairs = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise CLIError(f"expected NAME=REPORT (a name and an experiment report's .json), got {spec!r}")
        pairs.append((name, Path(path)))
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise CLIError(f"each arm needs its own name, got {names}")
    return pairs


def read_arms(specs: List[str]) -> Dict[str, List[Dict]]:
    """``NAME=REPORT`` specs -> each arm's run records, checked to be an ``experiment`` report."""
    arms: Dict[str, List[Dict]] = {}
    for name, path in _pairs(specs):
        records = read_json(path, "the .json report that `experiment` writes beside its table")
        keys = ("value", "seed", *METRICS)
        if not isinstance(records, list) or not records or not all(
                isinstance(r, dict) and all(is_number(r.get(k)) for k in keys) for r in records):
            raise CLIError(f"{path}: not an `experiment` report (a list of runs, each with the numbers "
                           f"{', '.join(keys)})")
        outside = [f"{m} {r[m]}" for r in records for m in METRICS if not is_fraction(r[m])]
        if outside:
            raise CLIError(f"{path}: {outside[0]}: scores are fractions in [0, 1]")
        runs = [(r["value"], r["seed"]) for r in records]
        repeated = sorted({run for run in runs if runs.count(run) > 1})
        if repeated:  # (averaged in as two runs)
            raise CLIError(f"{path}: value {repeated[0][0]} seed {repeated[0][1]} appears more than once")
        arms[name] = records
    return arms


def to_markdown(kind: str, arms: Dict[str, List[Dict]]) -> str:
    """One row per value; for each panel's metric, one column per arm ("–" where an arm lacks the value)."""
    by_arm = {name: {row["value"]: row for row in summaries(records)} for name, records in arms.items()}
    values = sorted({value for rows in by_arm.values() for value in rows})
    header = ["prompt length" if kind == "prompt-length" else "shots per type"]
    header += [f"{name}: {label}" for _, label in PANELS for name in arms]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---:" for _ in header) + " |"]
    for value in values:
        cells = [str(value)]
        for metric, _ in PANELS:
            for name in arms:
                row = by_arm[name].get(value)
                cells.append("–" if row is None else
                             f"{100 * row[metric]:.1f} ± {100 * row[metric + '_sd']:.1f} (n = {row['runs']})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(kind: str, arms: Dict[str, List[Dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PANELS), figsize=(10, 4), sharex=True)
    values = sorted({r["value"] for records in arms.values() for r in records})
    for ax, (metric, label) in zip(axes, PANELS):
        for name, records in arms.items():
            rows = summaries(records)
            ax.errorbar([r["value"] for r in rows], [100 * r[metric] for r in rows],
                        yerr=[100 * r[metric + "_sd"] for r in rows], marker="o", capsize=3, label=name)
        style_axis(ax, kind, values, f"{label} on test (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
