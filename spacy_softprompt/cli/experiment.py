"""``experiment``: the paper's two sweeps, each a table and a plot.

- ``prompt-length``: train one config at several prompt lengths;
- ``fewshot``: train on K examples per concept type (several seeds per K).

Every run goes through ``python -m spacy train`` and the ``evaluate`` verb, the
same path a user takes, and scores the held-out test file.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence

from . import CLIError

HELP = "sweep prompt length or few-shot size (train + evaluate per setting), write a table and a PNG plot"

METRICS = ("concepts_strict_f", "concepts_lenient_f", "relations_strict_f", "relations_lenient_f")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=["prompt-length", "fewshot"])
    parser.add_argument("--config", type=Path, required=True, help="training config, e.g. configs/soft_prompt_frozen.cfg")
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


def run(args: argparse.Namespace) -> int:
    for path in (args.config, args.train, args.dev, args.test):
        if not path.exists():
            raise CLIError(f"{path} not found")
    if args.kind == "prompt-length":
        values = args.values or [8, 16, 32, 64, 128]
        runs = [(v, 0, _train_args(args, ["--components.softprompt_ie.model.prompt_length", str(v)])) for v in values]
    else:
        values = args.values or [5, 10, 20, 50, 100]
        runs = [(k, seed, None) for k in values for seed in args.seeds]
    results: List[Dict] = []
    for index, (value, seed, overrides) in enumerate(runs, 1):
        run_dir = args.runs / f"{args.kind}-{value}-seed{seed}"
        print(f"[{index}/{len(runs)}] {args.kind} = {value}, seed {seed}", flush=True)
        if overrides is None:
            overrides = _train_args(args, ["--system.seed", str(seed)], train=_fewshot_file(args, value, seed, run_dir))
        scores = _train_and_evaluate(args, run_dir, overrides)
        results.append({"value": value, "seed": seed, **{m: scores[m] for m in METRICS}})
        print("    " + ", ".join(f"{m} {100 * scores[m]:.1f}" for m in METRICS), flush=True)
    args.output.mkdir(parents=True, exist_ok=True)
    table = to_markdown(args.kind, results)
    command = "python -m spacy_softprompt " + " ".join(sys.argv[1:])
    (args.output / f"{args.kind}.md").write_text(f"Made by: `{command}`\n\n{table}\n", encoding="utf-8")
    (args.output / f"{args.kind}.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    plot(args.kind, results, args.output / f"{args.kind}.png")
    print(table)
    print(f"\ntable and plot in {args.output}")
    return 0


def _train_args(args: argparse.Namespace, extra: List[str], train: Path = None) -> List[str]:
    overrides = [
        "--paths.train", str(train or args.train), "--paths.dev", str(args.dev),
        "--training.max_steps", str(args.max_steps), "--training.eval_frequency", str(args.eval_frequency),
        "--corpora.dev.limit", str(args.dev_limit), "--gpu-id", str(args.gpu_id),
    ]
    if train is None:
        overrides += ["--corpora.train.limit", str(args.train_limit)]
    if args.backbone:
        overrides += ["--components.softprompt_ie.model.backbone", args.backbone]
    return overrides + extra


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


def _train_and_evaluate(args: argparse.Namespace, run_dir: Path, overrides: Sequence[str]) -> Dict:
    model = run_dir / "training"
    _run([sys.executable, "-m", "spacy", "train", str(args.config), "--output", str(model), *overrides])
    metrics = run_dir / "metrics.json"
    _run([sys.executable, "-m", "spacy_softprompt", "evaluate", str(model / "model-best"), str(args.test),
          "--output", str(metrics), "--gpu-id", str(args.gpu_id)])
    return json.loads(metrics.read_text())


def _run(command: List[str]) -> None:
    """Run a step with its own progress output (spaCy's training table, progress bars)."""
    if subprocess.run(command).returncode != 0:
        raise CLIError(f"command failed (its output is above): {' '.join(command)}")


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
