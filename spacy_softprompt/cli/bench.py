"""``bench``: the stock spaCy pipeline and every strategy, side by side, in one run.

Each system is trained with ``python -m spacy train`` (same backbone, data,
batcher and steps), then scored on the test file with the ``evaluate`` verb.
Per system: strict/lenient concept F1, relation F1, training wall time, peak
resident memory of the training process (``wait4`` rusage of that child),
inference words per second with ``nlp.pipe``, trainable parameters and the
size on disk of the saved pipeline and of the task component.

The softprompt_ie strategies run with late prompts (``--prompt-layer``, lower
layers shared by every query of a window); the paper's input prompts (one full
backbone pass per query) run once more for frozen soft prompts, so the table
shows both paths side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional

from . import CLIError
from .compare import folder_bytes, trainable_parameters

HELP = "train and score the stock transformer+ner pipeline and each softprompt_ie strategy in one run"

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


class System(NamedTuple):
    name: str
    run: str  # folder under --runs
    config: str  # configs/<config>.cfg
    component: str
    late: bool = False  # softprompt_ie with late prompts from --prompt-layer (else input prompts)


SYSTEMS = [
    System("stock transformer+ner", "stock_transformer_ner", "stock_transformer_ner", "transformer"),
    System("none (fine-tune)", "finetune", "finetune", "softprompt_ie", late=True),
    System("hard prompts", "hard_prompt", "hard_prompt", "softprompt_ie", late=True),
    System("soft prompts", "soft_prompt", "soft_prompt", "softprompt_ie", late=True),
    System("soft prompts, frozen", "soft_prompt_frozen", "soft_prompt_frozen", "softprompt_ie", late=True),
    System("deep prompts, frozen", "deep_prompt_frozen", "deep_prompt_frozen", "softprompt_ie", late=True),
    System("soft prompts, frozen, input prompts (naive)", "soft_prompt_frozen_input", "soft_prompt_frozen",
           "softprompt_ie"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", type=Path, required=True, help="training .spacy (e.g. corpus/ade/train.spacy)")
    parser.add_argument("--dev", type=Path, required=True, help="dev .spacy (model selection)")
    parser.add_argument("--test", type=Path, required=True, help="test .spacy (reported)")
    parser.add_argument("--output", type=Path, required=True, help="markdown report; the JSON goes beside it")
    parser.add_argument("--runs", type=Path, default=Path("training/bench"), help="folder for the trained pipelines")
    parser.add_argument("--backbone", default="default", help="the one backbone every system uses")
    parser.add_argument("--max-steps", type=int, default=600)
    parser.add_argument("--eval-frequency", type=int, default=100)
    parser.add_argument("--dev-limit", type=int, default=0, help="dev docs evaluated while training (0 = all)")
    parser.add_argument("--configs", type=Path, default=CONFIGS, help="folder with the systems' configs")
    parser.add_argument(
        "--prompt-layer", type=int, default=4,
        help="backbone layer where the query part enters for the late-prompt systems (0 = input prompts)",
    )
    parser.add_argument("--gpu-id", type=int, default=-1, help="GPU for training and scoring; -1 (default): CPU")
    parser.add_argument(
        "--malloc-mmap-threshold", type=int, default=None, metavar="BYTES",
        help="set glibc's MALLOC_MMAP_THRESHOLD_ for the training runs: allocations above it are "
             "returned to the system when freed, so peak RSS measures what training needs rather "
             "than heap fragmentation (default: glibc's dynamic threshold)",
    )
    parser.add_argument(
        "--only", nargs="+", metavar="RUN", choices=[system.run for system in SYSTEMS],
        help="run just these systems (by run folder name; the report's command line shows the choice)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CI form: 24 train / 8 dev / 8 test docs and 3 steps; exercises the code, figures mean nothing",
    )


def run(args: argparse.Namespace) -> int:
    from ..backbone import BackboneNotFound, resolve_backbone

    for path in (args.train, args.dev, args.test):
        if not path.exists():
            raise CLIError(f"{path} not found (run `spacy project run convert` first)")
    try:
        backbone = resolve_backbone(args.backbone)
    except BackboneNotFound as err:
        raise CLIError(str(err)) from err
    data = _data(args)
    report = {"machine": machine(), "backbone": args.backbone, "backbone_path": backbone,
              "max_steps": data["max_steps"], "quick": args.quick, "data": data["sizes"], "systems": [],
              "prompt_layer": args.prompt_layer, "malloc_mmap_threshold": args.malloc_mmap_threshold,
              "command": "python -m spacy_softprompt " + " ".join(sys.argv[1:])}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    chosen = [system for system in SYSTEMS if not args.only or system.run in args.only]
    for index, system in enumerate(chosen, 1):
        layer = None if system.component != "softprompt_ie" else (args.prompt_layer if system.late else 0)
        print(f"\n[{index}/{len(chosen)}] {system.name}: training configs/{system.config}.cfg"
              + ("" if layer is None else f", prompt_layer {layer}"), flush=True)
        row = {"system": system.name, "run": system.run, "config": system.config, "prompt_layer": layer,
               **_bench_one(args, data, backbone, system, layer)}
        report["systems"].append(row)
        print("    " + ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("system", "config")), flush=True)
        # written after every system, so a long run interrupted late still leaves its figures
        args.output.with_suffix(".json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        args.output.write_text(to_markdown(report), encoding="utf-8")
    print("\n" + to_markdown(report))
    return 0


def _data(args: argparse.Namespace) -> Dict[str, Any]:
    """The files to train and score on; --quick writes small subsets of them."""
    import spacy
    from spacy.tokens import DocBin

    nlp = spacy.blank("en")
    files = {"train": args.train, "dev": args.dev, "test": args.test}
    limits = {"train": 24, "dev": 8, "test": 8} if args.quick else {}
    sizes = {}
    for split, path in files.items():
        docs = list(DocBin().from_disk(path).get_docs(nlp.vocab))
        if split in limits:
            docs = docs[: limits[split]]
            path = args.runs / f"quick-{split}.spacy"
            path.parent.mkdir(parents=True, exist_ok=True)
            DocBin(store_user_data=True, docs=docs).to_disk(path)
            files[split] = path
        sizes[split] = {"documents": len(docs), "words": sum(len(doc) for doc in docs)}
    return {"files": files, "sizes": sizes, "max_steps": 3 if args.quick else args.max_steps,
            "eval_frequency": 3 if args.quick else args.eval_frequency}


def _bench_one(args, data: Dict[str, Any], backbone: str, system: System, layer: Optional[int]) -> Dict[str, Any]:
    out = args.runs / system.run
    component = system.component
    if component == "transformer":
        overrides = ["--components.transformer.model.name", backbone]
    else:
        overrides = ["--components.softprompt_ie.model.backbone", backbone,
                     "--components.softprompt_ie.model.prompt_layer", str(layer)]
    command = [
        sys.executable, "-m", "spacy", "train", str(args.configs / f"{system.config}.cfg"), "--output", str(out),
        "--paths.train", str(data["files"]["train"]), "--paths.dev", str(data["files"]["dev"]),
        "--training.max_steps", str(data["max_steps"]), "--training.eval_frequency", str(data["eval_frequency"]),
        "--corpora.dev.limit", str(args.dev_limit), "--gpu-id", str(args.gpu_id), *overrides,
    ]
    start = time.perf_counter()
    env = dict(os.environ)
    if args.malloc_mmap_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.malloc_mmap_threshold)
    process = subprocess.Popen(command, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise CLIError(f"training failed (its output is above): {' '.join(command)}")
    metrics = out / "metrics.json"
    evaluate = [sys.executable, "-m", "spacy_softprompt", "evaluate", str(out / "model-best"),
                str(data["files"]["test"]), "--output", str(metrics), "--gpu-id", str(args.gpu_id)]
    if subprocess.run(evaluate).returncode != 0:
        raise CLIError(f"evaluation failed (its output is above): {' '.join(evaluate)}")
    scores = json.loads(metrics.read_text())
    return {
        "concepts_strict_f": round(100 * scores["concepts_strict_f"], 1),
        "concepts_lenient_f": round(100 * scores["concepts_lenient_f"], 1),
        "relations_strict_f": round(100 * scores["relations_strict_f"], 1) if component != "transformer" else None,
        "relations_lenient_f": round(100 * scores["relations_lenient_f"], 1) if component != "transformer" else None,
        "train_seconds": round(seconds, 1),
        "peak_train_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux reports kB
        "words_per_second": round(scores["speed"], 1),
        "trainable_parameters": trainable_parameters(out / "model-best"),
        "pipeline_mb": round(folder_bytes(out / "model-best") / 1e6, 2),
        "component_mb": round(folder_bytes(out / "model-best" / component) / 1e6, 3),
    }


def machine() -> Dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "cuda": torch.cuda.is_available(), "platform": platform.platform()}


def to_markdown(report: Dict[str, Any]) -> str:
    m, d = report["machine"], report["data"]
    lines = [
        "# Benchmark: stock spaCy pipeline vs softprompt_ie strategies",
        "",
        f"Command: `{report['command']}`" + (" (**quick form: figures mean nothing**)" if report["quick"] else ""),
        "",
        f"Backbone `{report['backbone']}`; {report['max_steps']} training steps each; "
        f"train {d['train']['documents']} docs / {d['train']['words']} words, dev {d['dev']['documents']}, "
        f"test {d['test']['documents']} docs / {d['test']['words']} words.",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, torch {m['torch']}, "
        f"CUDA {'yes' if m['cuda'] else 'no'}."
        + (f" Training runs with MALLOC_MMAP_THRESHOLD_={report['malloc_mmap_threshold']}."
           if report.get("malloc_mmap_threshold") else ""),
        "",
        f"softprompt_ie systems use late prompts from layer {report.get('prompt_layer', 0)} unless marked "
        "input prompts (naive: one full backbone pass per window and query).",
        "",
        "| system | concept F1 strict | concept F1 lenient | relation F1 strict | relation F1 lenient "
        "| train time (s) | peak train RSS (MB) | words/s | trainable params | pipeline (MB) | component (MB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["systems"]:
        rel = [("n/a" if r[k] is None else f"{r[k]:.1f}") for k in ("relations_strict_f", "relations_lenient_f")]
        lines.append(
            f"| {r['system']} | {r['concepts_strict_f']:.1f} | {r['concepts_lenient_f']:.1f} | {rel[0]} | {rel[1]} "
            f"| {r['train_seconds']:.0f} | {r['peak_train_rss_mb']:.0f} | {r['words_per_second']:.0f} "
            f"| {r['trainable_parameters']:,} | {r['pipeline_mb']:.1f} | {r['component_mb']:.3f} |"
        )
    lines += [
        "",
        "Train time includes initialization and the dev evaluations during training. Words per second: "
        "`nlp.pipe` over the test texts (concepts and relations for softprompt_ie, entities only for the "
        "stock pipeline). The stock `ner` writes non-overlapping `doc.ents`; it is scored against all gold "
        "concepts, overlapping ones included.",
        "",
    ]
    return "\n".join(lines)
