"""``experiment``: the paper's two sweeps, each a table and a plot.

- ``prompt-length``: train one config at several prompt lengths;
- ``fewshot``: train on K examples per concept type (several seeds per K).

Every run starts from an ``init-config`` preset (or ``--config``, with ``--set``
overrides) and goes through :func:`runs.train_and_evaluate` (``python -m spacy
train``, then the ``evaluate`` verb on the held-out test file), the path a user
takes. Each run keeps a ``run.json`` (scores, steps, epochs, wall time, dev
curve): an interrupted sweep resumes, and the table is rewritten after every run.
The plot needs matplotlib: it is checked before the first run, not after the last.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List

from . import CLIError, at_least_one, check_distinct, gpu_id, non_negative, read_docbin
from .init_config import PRESETS, STOCK_PRESETS
from .runs import (base_config, check_settings, config_sha1, corpus_settings, finished_run, jsonl_log_settings,
                   matplotlib_available, parse_settings, require_files, train_and_evaluate)

if TYPE_CHECKING:
    from spacy.tokens import Doc

HELP = ("sweep prompt length or few-shot size (train + evaluate per setting), write a table and a PNG plot "
        "(the plot needs matplotlib, checked before training; --no-plot skips it)")

METRICS = ("concepts_strict_f", "concepts_lenient_f", "relations_strict_f", "relations_lenient_f")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=["prompt-length", "fewshot"])
    parser.add_argument(
        "--preset", default="soft_prompt_frozen", choices=[name for name in PRESETS if name not in STOCK_PRESETS],
        help="the init-config preset every run starts from (default soft_prompt_frozen)",
    )
    parser.add_argument("--config", type=Path, help="a training config file instead of --preset")
    parser.add_argument("--train", type=Path, required=True, help="training .spacy")
    parser.add_argument("--dev", type=Path, required=True, help="dev .spacy (model selection)")
    parser.add_argument("--test", type=Path, required=True, help="test .spacy (reported)")
    parser.add_argument("--output", type=Path, required=True, help="folder for the table (.md/.json) and plot (.png)")
    parser.add_argument(
        "--runs", type=Path, default=Path("training/experiments"), help="folder for each run's pipeline and metrics"
    )
    parser.add_argument("--values", type=at_least_one, nargs="+", help="prompt lengths, or shots per concept type")
    parser.add_argument("--seeds", type=non_negative, nargs="+", default=[0], help="fewshot: sampling seeds per K")
    parser.add_argument("--max-steps", type=at_least_one, default=200)
    parser.add_argument("--eval-frequency", type=at_least_one, default=100)
    parser.add_argument("--patience", type=non_negative, default=None,
                        help="stop a run after this many steps without a better dev score (default: the config's)")
    parser.add_argument("--set", dest="settings", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config settings for every run, e.g. components.softprompt_ie.model.packed=true "
                             "(values read as JSON where they parse, else as text)")
    parser.add_argument("--train-limit", type=non_negative, default=0,
                        help="prompt-length: training docs used (0 = all)")
    parser.add_argument("--dev-limit", type=non_negative, default=0, help="dev docs evaluated while training (0 = all)")
    parser.add_argument("--backbone", default=None, help="override the config's backbone")
    parser.add_argument("--gpu-id", type=gpu_id, default=-1)
    parser.add_argument("--no-plot", dest="plot", action="store_false",
                        help="write the table only (no matplotlib needed)")


def run(args: argparse.Namespace) -> int:
    require_files([args.train, args.dev, args.test])
    if args.output.is_file():  # (found only when the table was written, after every run)
        raise CLIError(f"--output {args.output} is a file: the table and plot go in a folder")
    check_distinct(args.seeds, "--seeds")
    check_distinct(args.values or [], "--values")
    if args.plot:
        matplotlib_available(required=True, verb="experiment")
    config = base_config(args.preset, args.config)
    fixed = parse_settings(args.settings)
    check_settings(config, fixed)
    model = "components.softprompt_ie.model"
    if args.kind == "prompt-length":
        values = args.values or [8, 16, 32, 64, 128]
        runs = [(v, 0, {f"{model}.prompt_length": v}) for v in values]
    else:
        values = args.values or [5, 10, 20, 50, 100]
        runs = [(k, seed, {"system.seed": seed}) for k in values for seed in args.seeds]
    command = "python -m spacy_softprompt " + " ".join(sys.argv[1:])
    results: List[Dict[str, Any]] = []
    fewshot = args.kind == "fewshot"
    pool = read_docbin(args.train) if fewshot else []  # read once: every K and seed samples from it
    for index, (value, seed, extra) in enumerate(runs, 1):
        run_dir = args.runs / f"{args.kind}-{value}-seed{seed}"
        where = f"[{index}/{len(runs)}] {args.kind} = {value}, seed {seed}"
        train = run_dir / "train.spacy" if fewshot else args.train
        settings = corpus_settings(train, args.dev, max_steps=args.max_steps, eval_frequency=args.eval_frequency,
                                   dev_limit=args.dev_limit, train_limit=None if fewshot else args.train_limit,
                                   patience=args.patience)
        if args.backbone:
            settings[f"{model}.backbone"] = args.backbone
        settings.update({**fixed, **extra})
        identity = {**{key: str(v) for key, v in sorted(settings.items())}, "config": config_sha1(config),
                    "test": str(args.test), **({"pool": str(args.train)} if fewshot else {})}
        record = finished_run(run_dir / "run.json", where, lambda done: None if done.get("settings") == identity
                              else "trained with other settings, config or data than this run's")
        if record is None:
            if fewshot:
                _fewshot_file(pool, value, seed, train)
            record = _train(args, config, settings, identity, run_dir, where, value, seed)
        results.append(record)
        print("    " + ", ".join(f"{m} {100 * record[m]:.1f}" for m in METRICS)
              + f"; {record['steps']} steps (best {record['best_step']}), {record['train_seconds']:.0f} s", flush=True)
        write_report(args, command, results)
    print(to_markdown(args.kind, results))
    print(f"\ntable{' and plot' if args.plot else ''} in {args.output}")
    return 0


def _train(args: argparse.Namespace, config, settings: Dict[str, Any], identity: Dict[str, str], run_dir: Path,
           where: str, value: int, seed: int) -> Dict[str, Any]:
    """One run trained, scored on the test file, and its record (with the ``identity`` a rerun
    resumes on: settings, the config's digest and the data) written to its ``run.json``."""
    from .bench import dev_curve

    record_path = run_dir / "run.json"
    print(f"{where}: training", flush=True)
    log = run_dir / "train_log.jsonl"
    result = train_and_evaluate(config, {**settings, **jsonl_log_settings(log)}, run_dir, args.test, gpu_id=args.gpu_id)
    record = {"value": value, "seed": seed, **{m: result.scores[m] for m in METRICS},
              "train_seconds": round(result.train_seconds, 1), **dev_curve(log), "settings": identity}
    record_path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def write_report(args: argparse.Namespace, command: str, results: List[Dict[str, Any]]) -> None:
    """The table (summary and each run), its JSON and the plot, from the runs done so far."""
    args.output.mkdir(parents=True, exist_ok=True)
    trained = sum(r["train_seconds"] for r in results)
    runs = f"{len(results)} run{'s' * (len(results) != 1)}"
    text = (f"Made by: `{command}` ({runs}, {trained / 60:.1f} min of training)\n\n"
            f"{to_markdown(args.kind, results)}\n\n{runs_markdown(results)}\n")
    (args.output / f"{args.kind}.md").write_text(text, encoding="utf-8")
    (args.output / f"{args.kind}.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    if args.plot:
        plot(args.kind, results, args.output / f"{args.kind}.png")


def _fewshot_file(pool: List[Doc], shots: int, seed: int, path: Path) -> None:
    """The run's training file (``path``): the documents that give K examples per type, seeded."""
    from spacy.tokens import DocBin

    from ..sampling import sample_few_shot

    subset, report = sample_few_shot(pool, shots, seed)
    print(f"    sampled {len(subset)} documents for K={shots}" + ("" if report.complete else " (shortfall)"))
    path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(store_user_data=True, docs=subset).to_disk(path)


def summaries(results: List[Dict]) -> List[Dict]:
    """One row per swept value: each metric's mean and sample sd over that value's runs (seeds)."""
    by_value: Dict[int, List[Dict]] = {}
    for r in results:
        by_value.setdefault(r["value"], []).append(r)
    rows = []
    for value, group in sorted(by_value.items()):
        row = {"value": value, "runs": len(group)}
        for m in METRICS:
            xs = [r[m] for r in group]
            row[m] = statistics.mean(xs)
            row[m + "_sd"] = statistics.stdev(xs) if len(xs) > 1 else 0.0
        rows.append(row)
    return rows


def to_markdown(kind: str, results: List[Dict]) -> str:
    name = "prompt length" if kind == "prompt-length" else "shots per type"
    lines = [
        f"| {name} | runs | concept F1 strict | concept F1 lenient | relation F1 strict | relation F1 lenient |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in summaries(results):
        cells = [f"{100 * row[m]:.1f} ± {100 * row[m + '_sd']:.1f}" for m in METRICS]
        lines.append(f"| {row['value']} | {row['runs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def runs_markdown(results: List[Dict[str, Any]]) -> str:
    """Each run: its scores, how long it trained, and its dev curve (where it levelled off)."""
    lines = ["Each run (strict F1; steps trained and, in brackets, the best dev step, which is the model scored; "
             "dev score at each evaluation as `step: score`):", "",
             "| value | seed | concept F1 strict | relation F1 strict | steps (best) | last epoch (from 0) | training s "
             "| dev curve |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in sorted(results, key=lambda r: (r["value"], r["seed"])):
        curve = ", ".join(f"{step}: {score}" for step, score in r["dev_curve"])
        lines.append(f"| {r['value']} | {r['seed']} | {100 * r['concepts_strict_f']:.1f} | "
                     f"{100 * r['relations_strict_f']:.1f} | {r['steps']} ({r['best_step']}) | {r['epochs']} | "
                     f"{r['train_seconds']:.0f} | {curve} |")
    return "\n".join(lines)


def plot(kind: str, results: List[Dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summaries(results)
    xs = [r["value"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for metric, label in (("concepts_strict_f", "concepts (strict)"), ("relations_strict_f", "relations (strict)"),
                          ("concepts_lenient_f", "concepts (lenient)")):
        ax.errorbar(xs, [100 * r[metric] for r in rows], yerr=[100 * r[metric + "_sd"] for r in rows],
                    marker="o", capsize=3, label=label)
    style_axis(ax, kind, xs, "F1 on test (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def style_axis(ax, kind: str, values: List[int], ylabel: str) -> None:
    """A sweep's axis: the swept values on a log-2 scale, F1 from 0 to 100, a legend."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(values)
    ax.set_xticklabels([str(v) for v in values])
    ax.set_xlabel("prompt length (vectors)" if kind == "prompt-length" else "examples per concept type (K)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
