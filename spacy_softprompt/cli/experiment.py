"""``experiment``: the paper's two sweeps, each a table and a plot.

- ``prompt-length``: train one config at several prompt lengths;
- ``fewshot``: train on K examples per concept type (several seeds per K).

Every run starts from an ``init-config`` preset (or ``--config``) and goes
through :func:`runs.train_and_evaluate` (``python -m spacy train``, then the
``evaluate`` verb on the held-out test file), the path a user takes. The plot
needs matplotlib: it is checked before the first run, not after the last.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Dict, List

from .init_config import PRESETS, STOCK_PRESETS
from .runs import base_config, corpus_settings, matplotlib_available, require_files, train_and_evaluate

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
    parser.add_argument("--values", type=int, nargs="+", help="prompt lengths, or shots per concept type")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="fewshot: sampling seeds per K")
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--eval-frequency", type=int, default=100)
    parser.add_argument("--train-limit", type=int, default=0, help="prompt-length: training docs used (0 = all)")
    parser.add_argument("--dev-limit", type=int, default=0, help="dev docs evaluated while training (0 = all)")
    parser.add_argument("--backbone", default=None, help="override the config's backbone")
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--no-plot", dest="plot", action="store_false",
                        help="write the table only (no matplotlib needed)")


def run(args: argparse.Namespace) -> int:
    require_files([args.train, args.dev, args.test])
    if args.plot:
        matplotlib_available(required=True, verb="experiment")
    config = base_config(args.preset, args.config)
    model = "components.softprompt_ie.model"
    if args.kind == "prompt-length":
        values = args.values or [8, 16, 32, 64, 128]
        runs = [(v, 0, {f"{model}.prompt_length": v}) for v in values]
    else:
        values = args.values or [5, 10, 20, 50, 100]
        runs = [(k, seed, {"system.seed": seed}) for k in values for seed in args.seeds]
    results: List[Dict] = []
    for index, (value, seed, extra) in enumerate(runs, 1):
        run_dir = args.runs / f"{args.kind}-{value}-seed{seed}"
        print(f"[{index}/{len(runs)}] {args.kind} = {value}, seed {seed}", flush=True)
        fewshot = args.kind == "fewshot"
        train = _fewshot_file(args, value, seed, run_dir) if fewshot else args.train
        settings = corpus_settings(train, args.dev, max_steps=args.max_steps, eval_frequency=args.eval_frequency,
                                   dev_limit=args.dev_limit, train_limit=None if fewshot else args.train_limit)
        if args.backbone:
            settings[f"{model}.backbone"] = args.backbone
        scores = train_and_evaluate(config, {**settings, **extra}, run_dir, args.test, gpu_id=args.gpu_id).scores
        results.append({"value": value, "seed": seed, **{m: scores[m] for m in METRICS}})
        print("    " + ", ".join(f"{m} {100 * scores[m]:.1f}" for m in METRICS), flush=True)
    args.output.mkdir(parents=True, exist_ok=True)
    table = to_markdown(args.kind, results)
    command = "python -m spacy_softprompt " + " ".join(sys.argv[1:])
    (args.output / f"{args.kind}.md").write_text(f"Made by: `{command}`\n\n{table}\n", encoding="utf-8")
    (args.output / f"{args.kind}.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    if args.plot:
        plot(args.kind, results, args.output / f"{args.kind}.png")
    print(table)
    print(f"\ntable{' and plot' if args.plot else ''} in {args.output}")
    return 0


def _fewshot_file(args: argparse.Namespace, shots: int, seed: int, run_dir: Path) -> Path:
    import spacy
    from spacy.tokens import DocBin

    from ..sampling import sample_few_shot

    nlp = spacy.blank("en")
    docs = list(DocBin().from_disk(args.train).get_docs(nlp.vocab))
    subset, report = sample_few_shot(docs, shots, seed)
    print(f"    sampled {len(subset)} documents for K={shots}" + ("" if report.complete else " (shortfall)"))
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "train.spacy"
    DocBin(store_user_data=True, docs=subset).to_disk(path)
    return path


def _summaries(results: List[Dict]) -> List[Dict]:
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
    for row in _summaries(results):
        cells = [f"{100 * row[m]:.1f} ± {100 * row[m + '_sd']:.1f}" for m in METRICS]
        lines.append(f"| {row['value']} | {row['runs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(kind: str, results: List[Dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _summaries(results)
    xs = [r["value"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for metric, label in (("concepts_strict_f", "concepts (strict)"), ("relations_strict_f", "relations (strict)"),
                          ("concepts_lenient_f", "concepts (lenient)")):
        ax.errorbar(xs, [100 * r[metric] for r in rows], yerr=[100 * r[metric + "_sd"] for r in rows],
                    marker="o", capsize=3, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs)
    ax.set_xticklabels([str(x) for x in xs])
    ax.set_xlabel("prompt length (vectors)" if kind == "prompt-length" else "examples per concept type (K)")
    ax.set_ylabel("F1 on test (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
