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
shows both paths side by side. That is the default set (``--systems
strategies``); ``--systems peft`` sets prompt methods and LoRA against full
fine-tuning, ``--systems study`` the paper's study (stock ``ner`` and
``spancat``, the four strategies, deep prompts and LoRA on the frozen
backbone). ``--transfer-test`` also scores each system on another corpus's
shared types.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from . import (CLIError, at_least_one, check_distinct, check_output_files, gpu_id, markdown_output, non_negative,
               read_docbin)
from .compare import folder_bytes, trainable_parameters
from .init_config import LORA_ADAPTER, STOCK, STOCK_SPANCAT
from .runs import base_config, corpus_settings, evaluate, jsonl_log_settings, require_files, train_and_evaluate

HELP = "train and score the stock transformer+ner pipeline and each softprompt_ie strategy in one run"


class System(NamedTuple):
    name: str
    run: str  # folder under --runs
    config: str  # an init-config preset (or <config>.cfg in --configs)
    component: str
    late: bool = False  # softprompt_ie with late prompts from --prompt-layer (else input prompts)
    model: Tuple[Tuple[str, Any], ...] = ()  # further [components.softprompt_ie.model] settings
    upper_adapter: bool = False  # the adapter only in the layers from --prompt-layer up (lower states cached)


PACKED = (("packed", True), ("prompt_length", 8))
LORA = (("adapter", LORA_ADAPTER),)
SYSTEMS = [
    System("stock transformer+ner", "stock_transformer_ner", STOCK, "transformer"),
    System("none (fine-tune)", "finetune", "finetune", "softprompt_ie", late=True),
    System("soft prompts", "soft_prompt", "soft_prompt", "softprompt_ie", late=True),
    System("soft prompts, packed", "soft_prompt_packed", "soft_prompt", "softprompt_ie", late=True, model=PACKED),
    System("soft prompts, frozen", "soft_prompt_frozen", "soft_prompt_frozen", "softprompt_ie", late=True),
    System("soft prompts, frozen, input prompts (naive)", "soft_prompt_frozen_input", "soft_prompt_frozen",
           "softprompt_ie"),
    System("soft prompts, frozen, packed", "soft_prompt_frozen_packed", "soft_prompt_frozen", "softprompt_ie",
           late=True, model=PACKED),
    System("deep prompts, frozen, packed", "deep_prompt_frozen_packed", "deep_prompt_frozen", "softprompt_ie",
           late=True, model=PACKED),
    System("LoRA + soft prompts, frozen base, packed", "lora_soft_prompt_packed", "soft_prompt_frozen",
           "softprompt_ie", late=True, model=PACKED + LORA),
]
# The follow-up study's comparison of parameter-efficient methods with full fine-tuning (issue 13).
PEFT_SYSTEMS = [
    System("soft prompts, frozen, packed", "soft_frozen", "soft_prompt_frozen", "softprompt_ie", late=True,
           model=PACKED),
    System("deep prompts, frozen, packed", "deep_frozen", "deep_prompt_frozen", "softprompt_ie", late=True,
           model=PACKED),
    System("P-tuning (reparametrised soft prompts), frozen, packed", "ptuning_frozen", "soft_prompt_frozen",
           "softprompt_ie", late=True, model=PACKED + (("reparametrize", True),)),
    System("LoRA alone, frozen base, no prompts", "lora", "soft_prompt_frozen", "softprompt_ie", late=True,
           model=(("strategy", "none"),) + LORA),
    System("LoRA above the prompt layer + soft prompts, frozen base, packed", "lora_upper_soft",
           "soft_prompt_frozen", "softprompt_ie", late=True, model=PACKED + LORA, upper_adapter=True),
    System("full fine-tuning, no prompts", "finetune", "finetune", "softprompt_ie", late=True),
]
# The paper's study on one corpus (issue 16 item 3): both stock pipelines (ner, and spancat, which
# can represent overlapping concepts), the paper's four strategies, and the frozen methods beyond it.
STUDY_SYSTEMS = [  # in the order a run that is cut short should have measured them
    SYSTEMS[0],
    System("stock transformer+spancat", "stock_transformer_spancat", STOCK_SPANCAT, "transformer"),
    System("1. fine-tuning, no prompts", "finetune", "finetune", "softprompt_ie", late=True),
    System("LoRA alone, frozen base, no prompts", "lora_frozen", "lora_frozen", "softprompt_ie", late=True),
    System("4. soft prompts, frozen, packed", "soft_prompt_frozen_packed", "soft_prompt_frozen", "softprompt_ie",
           late=True, model=PACKED),
    System("deep prompts, frozen, packed", "deep_prompt_frozen_packed", "deep_prompt_frozen", "softprompt_ie",
           late=True, model=PACKED),
    # packed (one query per window asks every type): unpacked, SDoH's 23 types cost 23 upper passes a window
    System("2. hard prompts, packed", "hard_prompt_packed", "hard_prompt", "softprompt_ie", late=True,
           model=PACKED),
    System("3. soft prompts, packed", "soft_prompt_packed", "soft_prompt", "softprompt_ie", late=True, model=PACKED),
]
SYSTEM_SETS = {"strategies": SYSTEMS, "peft": PEFT_SYSTEMS, "study": STUDY_SYSTEMS}
QUICK_DOCS = {"train": 12, "dev": 6, "test": 6, "transfer": 6}  # --quick: the first N documents of each file
QUICK_STEPS = 3
TITLES = {"strategies": "Benchmark: stock spaCy pipeline vs softprompt_ie strategies",
          "peft": "Parameter-efficient tuning vs full fine-tuning (the follow-up study's comparison)",
          "study": "The paper's study: stock spaCy (ner, spancat) vs the four strategies and the frozen methods"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", type=Path, required=True, help="training .spacy (e.g. corpus/ade/train.spacy)")
    parser.add_argument("--dev", type=Path, required=True, help="dev .spacy (model selection)")
    parser.add_argument("--test", type=Path, required=True, help="test .spacy (reported)")
    parser.add_argument("--output", type=markdown_output, required=True, help="markdown report; the JSON goes beside it")
    parser.add_argument("--runs", type=Path, default=Path("training/bench"), help="folder for the trained pipelines")
    parser.add_argument("--backbone", default="default", help="the one backbone every system uses")
    parser.add_argument(
        "--systems", choices=sorted(SYSTEM_SETS), default="strategies",
        help="strategies: the stock pipeline and every strategy; peft: prompt and adapter methods "
             "against full fine-tuning; study: stock ner and spancat, the paper's four strategies, "
             "deep prompts and LoRA on the frozen backbone",
    )
    parser.add_argument("--max-steps", type=at_least_one, default=600)
    parser.add_argument("--eval-frequency", type=at_least_one, default=100)
    parser.add_argument(
        "--patience", type=non_negative, default=None,
        help="stop a system after this many steps without a better dev score (default: the config's)",
    )
    parser.add_argument("--dev-limit", type=non_negative, default=0, help="dev docs evaluated while training (0 = all)")
    parser.add_argument(
        "--configs", type=Path, default=None,
        help="folder with the systems' configs (<preset>.cfg); default: generated by init-config",
    )
    parser.add_argument(
        "--prompt-layer", type=int, default=4,
        help="backbone layer where the query part enters for the late-prompt systems (0 = input prompts)",
    )
    parser.add_argument(
        "--max-length", type=at_least_one, default=None,
        help="subwords per backbone sequence for the softprompt_ie systems (default: the config's 128)",
    )
    parser.add_argument(
        "--packed-max-length", type=at_least_one, default=None,
        help="subwords per sequence for the packed systems only (default: --max-length): their one query part "
             "holds every type's, so many types need more (SDoH's 23 types with 8 vectors each: 218 of 384)",
    )
    parser.add_argument("--gpu-id", type=gpu_id, default=-1, help="GPU for training and scoring; -1 (default): CPU")
    parser.add_argument(
        "--transfer-test", type=Path, default=None, metavar="FILE",
        help="gold documents of another corpus (.spacy, its labels mapped to the training corpus's at "
             "conversion): each trained system is also scored there, untouched, on --transfer-types alone "
             "(cross-corpus transfer, beside the same types' in-domain scores)",
    )
    parser.add_argument(
        "--transfer-types", nargs="+", metavar="TYPE", default=None,
        help="the concept types the two corpora share (required with --transfer-test)",
    )
    parser.add_argument(
        "--malloc-mmap-threshold", type=non_negative, default=None, metavar="BYTES",
        help="set glibc's MALLOC_MMAP_THRESHOLD_ for the training runs: allocations above it are "
             "returned to the system when freed, so peak RSS measures what training needs rather "
             "than heap fragmentation (default: glibc's dynamic threshold)",
    )
    parser.add_argument(
        "--only", nargs="+", metavar="RUN", choices=sorted({s.run for systems in SYSTEM_SETS.values() for s in systems}),
        help="run just these systems (by run folder name; the report's command line shows the choice)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"CI form: {QUICK_DOCS['train']} train / {QUICK_DOCS['dev']} dev / {QUICK_DOCS['test']} test docs and "
             f"{QUICK_STEPS} steps; exercises the code, figures mean nothing",
    )


def run(args: argparse.Namespace) -> int:
    from ..backbone import BackboneNotFound, resolve_backbone

    require_files([args.train, args.dev, args.test] + ([args.transfer_test] if args.transfer_test is not None else []))
    check_output_files(output=args.output)
    if (args.transfer_test is None) != (args.transfer_types is None):
        raise CLIError("--transfer-test and --transfer-types go together: the other corpus's file and the "
                       "concept types it shares with the training corpus")
    check_distinct(args.transfer_types or [], "--transfer-types")
    if args.configs is not None and not args.configs.is_dir():
        raise CLIError(f"--configs {args.configs} is not a folder")
    in_set = [system.run for system in SYSTEM_SETS[args.systems]]
    elsewhere = [name for name in args.only or () if name not in in_set]
    if elsewhere:  # (--only's choices span every set)
        raise CLIError(f"--only {' '.join(elsewhere)}: not a system of the {args.systems!r} set, whose runs are "
                       f"{', '.join(in_set)}")
    try:
        backbone = resolve_backbone(args.backbone)
    except BackboneNotFound as err:
        raise CLIError(str(err)) from err
    chosen = [system for system in SYSTEM_SETS[args.systems] if not args.only or system.run in args.only]
    if any(system.late or system.upper_adapter for system in chosen):
        check_prompt_layers(backbone, [args.prompt_layer], "--prompt-layer")
    data = _data(args)
    report = {"machine": machine(), "backbone": args.backbone, "backbone_path": backbone,
              "max_steps": data["max_steps"], "quick": args.quick, "data": data["sizes"], "systems": [],
              "prompt_layer": args.prompt_layer, "malloc_mmap_threshold": args.malloc_mmap_threshold,
              "systems_set": args.systems, "eval_frequency": data["eval_frequency"], "patience": args.patience,
              "max_length": args.max_length, "packed_max_length": args.packed_max_length, "failed": [],
              "transfer_test": None if args.transfer_test is None else str(args.transfer_test),
              "transfer_types": args.transfer_types,
              "command": "python -m spacy_softprompt " + " ".join(sys.argv[1:])}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    for index, system in enumerate(chosen, 1):
        layer = None if system.component != "softprompt_ie" else (args.prompt_layer if system.late else 0)
        print(f"\n[{index}/{len(chosen)}] {system.name}: training the {system.config} config"
              + ("" if layer is None else f", prompt_layer {layer}"), flush=True)
        try:
            row = {"system": system.name, "run": system.run, "config": system.config, "prompt_layer": layer,
                   **_bench_one(args, data, backbone, system, layer)}
        except CLIError as err:  # one system's failure does not cost the others of a long run
            print(f"    {system.name}: {err}", file=sys.stderr, flush=True)
            report["failed"].append({"system": system.name, "run": system.run, "error": str(err)})
        else:
            report["systems"].append(row)
            print("    " + ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("system", "config")), flush=True)
        # written after every system, so a long run interrupted late still leaves its figures
        args.output.with_suffix(".json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        args.output.write_text(to_markdown(report), encoding="utf-8")
    print("\n" + to_markdown(report))
    if report["failed"]:
        raise CLIError(f"{len(report['failed'])} of {len(chosen)} systems failed: "
                       + ", ".join(f["run"] for f in report["failed"]) + f" (see {args.output})")
    untransferred = [r["run"] for r in report["systems"] if "transfer_error" in r]
    if untransferred:
        raise CLIError(f"not scored on {args.transfer_test}: {', '.join(untransferred)} (see {args.output})")
    return 0


def _data(args: argparse.Namespace) -> Dict[str, Any]:
    """The files to train and score on; --quick writes small subsets of them. The transfer types are
    checked against the gold labels here: a type the training file lacks (a typo, or a label the other
    corpus's conversion did not map) would be scored 0.0 in every system after hours of training."""
    import spacy
    from spacy.tokens import DocBin

    from ..relations import concept_spans

    nlp = spacy.blank("en")
    files = {"train": args.train, "dev": args.dev, "test": args.test}
    if args.transfer_test is not None:
        files["transfer"] = args.transfer_test
    limits = QUICK_DOCS if args.quick else {}
    sizes, labels = {}, {}
    for split, path in files.items():
        docs = read_docbin(path, nlp.vocab)
        labels[split] = {span.label_ for doc in docs for span in concept_spans(doc)}
        if split in limits:
            docs = docs[: limits[split]]
            path = args.runs / f"quick-{split}.spacy"
            path.parent.mkdir(parents=True, exist_ok=True)
            DocBin(store_user_data=True, docs=docs).to_disk(path)
            files[split] = path
        sizes[split] = {"documents": len(docs), "words": sum(len(doc) for doc in docs)}
    if args.transfer_test is not None:
        _check_transfer_types(args, labels["train"], labels["transfer"])
    return {"files": files, "sizes": sizes, "max_steps": QUICK_STEPS if args.quick else args.max_steps,
            "eval_frequency": QUICK_STEPS if args.quick else args.eval_frequency}


def _check_transfer_types(args: argparse.Namespace, trained: set, transferred: set) -> None:
    unknown = [label for label in args.transfer_types if label not in trained]
    if unknown:
        raise CLIError(f"--transfer-types {', '.join(unknown)}: not a concept type of {args.train} (its types: "
                       f"{', '.join(sorted(trained))}); map the other corpus's label to it at conversion "
                       "(convert --label-map OLD=NEW)")
    for label in args.transfer_types:
        if label not in transferred:
            print(f"warning: --transfer-types {label}: no gold {label} in {args.transfer_test}, so it can only "
                  "be scored as false positives there", file=sys.stderr)


def _bench_one(args, data: Dict[str, Any], backbone: str, system: System, layer: Optional[int]) -> Dict[str, Any]:
    component = system.component
    files = data["files"]
    settings = corpus_settings(files["train"], files["dev"], max_steps=data["max_steps"],
                               eval_frequency=data["eval_frequency"], dev_limit=args.dev_limit,
                               patience=args.patience)
    run_dir = args.runs / system.run
    log = run_dir / "train_log.jsonl"
    settings.update(jsonl_log_settings(log))
    if component == "transformer":
        settings["components.transformer.model.name"] = backbone
    else:
        model = dict(system.model)
        if system.upper_adapter:
            model["adapter"] = {**model["adapter"], "layers": list(range(layer, _n_layers(backbone)))}
        settings["components.softprompt_ie.model.backbone"] = backbone
        settings["components.softprompt_ie.model.prompt_layer"] = layer
        packed = dict(system.model).get("packed", False)
        length = args.packed_max_length if packed and args.packed_max_length is not None else args.max_length
        if length is not None:
            settings["components.softprompt_ie.model.max_length"] = length
        settings.update({f"components.softprompt_ie.model.{key}": value for key, value in model.items()})
    config = base_config(system.config, args.configs / f"{system.config}.cfg" if args.configs else None)
    env = {"MALLOC_MMAP_THRESHOLD_": str(args.malloc_mmap_threshold)} if args.malloc_mmap_threshold else None
    result = train_and_evaluate(config, settings, run_dir, files["test"], gpu_id=args.gpu_id, env=env)
    scores, pipeline = result.scores, result.pipeline
    transfer: Dict[str, Any] = {}
    if args.transfer_test is not None:
        try:  # the system's own row is kept when only its transfer scoring fails
            transferred = evaluate(pipeline, files["transfer"], run_dir / "metrics_transfer.json",
                                   gpu_id=args.gpu_id, concept_types=args.transfer_types)
        except CLIError as err:
            print(f"    {system.name}: transfer not scored: {err}", file=sys.stderr, flush=True)
            transfer = {"transfer_error": str(err)}
        else:
            transfer = {"transfer": {"in_domain": shared_type_scores(scores, args.transfer_types),
                                     "transferred": shared_type_scores(transferred, args.transfer_types)}}
    return {
        **dev_curve(log),
        "concepts_strict_f": round(100 * scores["concepts_strict_f"], 1),
        "concepts_lenient_f": round(100 * scores["concepts_lenient_f"], 1),
        "relations_strict_f": round(100 * scores["relations_strict_f"], 1) if component != "transformer" else None,
        "relations_lenient_f": round(100 * scores["relations_lenient_f"], 1) if component != "transformer" else None,
        "train_seconds": round(result.train_seconds, 1),
        "peak_train_rss_mb": round(result.peak_train_rss_mb, 1),
        "words_per_second": round(scores["speed"], 1),
        "trainable_parameters": trainable_parameters(pipeline),
        "pipeline_mb": round(folder_bytes(pipeline) / 1e6, 2),
        "component_mb": round(folder_bytes(pipeline / component) / 1e6, 3),
        **transfer,
    }


def shared_type_scores(scores: Dict[str, Any], types: List[str]) -> Dict[str, Any]:
    """Concept F1 (points) over ``types`` alone, micro (from the per-type counts) strict and lenient,
    strict per type, and the gold mentions of each: the in-domain test file holds more types than the
    transfer file shares, so both sides of the comparison are read over the shared ones."""
    from ..scoring import MODES, prf

    summary: Dict[str, Any] = {}
    for mode in MODES:
        per_type = scores[f"concepts_{mode}_per_type"]
        counts: Counter = Counter()
        for label in types:
            counts.update({k: per_type.get(label, {}).get(k, 0) for k in ("tp", "fp", "fn")})
        summary[f"{mode}_f"] = round(100 * prf(counts)["f"], 1)
    per_type = scores["concepts_strict_per_type"]
    summary["per_type_strict_f"] = {label: round(100 * per_type[label]["f"], 1) if label in per_type else None
                                    for label in types}
    summary["gold"] = {label: per_type[label]["tp"] + per_type[label]["fn"] if label in per_type else 0
                       for label in types}
    return summary


def _n_layers(backbone: str) -> int:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(backbone).num_hidden_layers


def check_prompt_layers(backbone: str, layers: Sequence[int], option: str) -> None:
    """Late-prompt layers checked against the backbone before anything runs (a layer past the
    last failed only when its first system was built, after the systems before it had run)."""
    n = _n_layers(backbone)
    outside = [k for k in layers if not 0 <= k < n]
    if outside:
        raise CLIError(f"{option} {' '.join(map(str, outside))}: the backbone has {n} layers (0 to {n - 1})")


def dev_curve(log: Path) -> Dict[str, Any]:
    """From spaCy's training log: the dev score at each evaluation, the steps run, and the step
    of the best score (the saved model-best), so a reader sees whether dev had stopped improving."""
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        return {"steps": 0, "epochs": 0, "best_step": None, "dev_curve": []}
    best = max(rows, key=lambda row: row["score"])
    return {"steps": rows[-1]["step"], "epochs": rows[-1]["epoch"], "best_step": best["step"],
            "dev_curve": [[row["step"], round(100 * row["score"], 1)] for row in rows]}


def _number(value: Optional[float]) -> str:
    """A measure, or "n/r" where the run did not record it."""
    return "n/r" if value is None else f"{value:.0f}"


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
        f"# {TITLES[report.get('systems_set', 'strategies')]}",
        "",
        f"Command: `{report['command']}`" + (" (**quick form: figures mean nothing**)" if report["quick"] else ""),
        "",
        f"Backbone `{report['backbone']}`; at most {report['max_steps']} training steps each, dev scored every "
        f"{report.get('eval_frequency')} steps"
        + (f", stopped after {report['patience']} steps without a better dev score" if report.get("patience") else "")
        + "; "
        f"train {d['train']['documents']} docs / {d['train']['words']} words, dev {d['dev']['documents']}, "
        f"test {d['test']['documents']} docs / {d['test']['words']} words.",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, torch {m['torch']}, "
        f"CUDA {'yes' if m['cuda'] else 'no'}."
        + (f" Training runs with MALLOC_MMAP_THRESHOLD_={report['malloc_mmap_threshold']}."
           if report.get("malloc_mmap_threshold") else ""),
        "",
        f"softprompt_ie systems use late prompts from layer {report.get('prompt_layer', 0)} unless marked "
        "input prompts (naive: one full backbone pass per window and query)"
        + (f"; {report['max_length']} subwords per sequence" if report.get("max_length") else "")
        + (f"; {report['packed_max_length']} subwords per sequence in the packed systems"
           if report.get("packed_max_length") else "") + ".",
        "",
        "| system | concept F1 strict | concept F1 lenient | relation F1 strict | relation F1 lenient "
        "| steps (best) | train time (s) | peak train RSS (MB) | words/s | trainable params | pipeline (MB) "
        "| component (MB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["systems"]:
        rel = [_f1(r[k]) for k in ("relations_strict_f", "relations_lenient_f")]
        lines.append(
            f"| {r['system']} | {r['concepts_strict_f']:.1f} | {r['concepts_lenient_f']:.1f} | {rel[0]} | {rel[1]} "
            f"| {r.get('steps', '?')} ({r.get('best_step', '?')}) "
            f"| {_number(r['train_seconds'])} | {_number(r['peak_train_rss_mb'])} | {r['words_per_second']:.0f} "
            f"| {r['trainable_parameters']:,} | {r['pipeline_mb']:.1f} | {r['component_mb']:.3f} |"
        )
    lines += [
        "",
        "Steps: the steps trained, and in brackets the step of the best dev score (the saved model-best, "
        "which is what is scored). Train time includes initialization and the dev evaluations during training. "
        "Words per second: `nlp.pipe` over the test texts (concepts and relations for softprompt_ie, entities "
        "only for the stock pipeline). The stock `ner` writes non-overlapping `doc.ents`; it is scored against "
        "all gold concepts, overlapping ones included. The stock `spancat` writes overlapping spans.",
        "",
        "Dev score (the config's score weights, x100) at each evaluation, as `step: score`:",
        "",
    ]
    for r in report["systems"]:
        curve = ", ".join(f"{step}: {score:.1f}" for step, score in r.get("dev_curve", []))
        lines.append(f"- {r['system']}: {curve or 'not recorded'}")
    lines += transfer_markdown(report)
    if report.get("failed"):
        lines += ["", "Not measured (the run failed; its output is in the command's log):", ""]
        lines += [f"- {f['system']}: {f['error']}" for f in report["failed"]]
    lines.append("")
    return "\n".join(lines)


def transfer_markdown(report: Dict[str, Any]) -> List[str]:
    """The cross-corpus table: each system's F1 on the shared types, in-domain and transferred."""
    if not report.get("transfer_test"):
        return []
    rows = [r for r in report["systems"] if "transfer" in r]
    types, size = report["transfer_types"], report["data"]["transfer"]
    first = rows[0]["transfer"] if rows else {}  # gold counts are the same in every row (same files)
    gold = {side: first[key]["gold"] for side, key in (("test", "in_domain"), ("transfer", "transferred"))
            if "gold" in first.get(key, {})}  # reports written before the counts were recorded have none
    lines = ["", f"## Cross-corpus transfer: scored untouched on `{report['transfer_test']}` ({size['documents']} "
             f"docs / {size['words']} words), types " + ", ".join(types), "",
             "Strict F1 over the shared types (micro), then per type, on the training corpus's test file "
             "(in-domain) and on the other corpus (transfer); lenient micro F1 last. Drop: in-domain minus "
             "transfer, strict micro."
             + "".join(f" Gold mentions on the {side} file: "
                       + ", ".join(f"{label} {count}" for label, count in counts.items()) + "."
                       for side, counts in gold.items()), "",
             "| system | in-domain strict | transfer strict | drop | "
             + " | ".join(f"{t} in-domain | {t} transfer" for t in types) + " | transfer lenient |",
             "| --- | ---: | ---: | ---: | " + " | ".join("---: | ---:" for _ in types) + " | ---: |"]
    for r in rows:
        home, away = r["transfer"]["in_domain"], r["transfer"]["transferred"]
        cells = " | ".join(f"{_f1(home['per_type_strict_f'][t])} | {_f1(away['per_type_strict_f'][t])}" for t in types)
        lines.append(f"| {r['system']} | {home['strict_f']:.1f} | {away['strict_f']:.1f} "
                     f"| {home['strict_f'] - away['strict_f']:.1f} | {cells} | {away['lenient_f']:.1f} |")
    errors = [r for r in report["systems"] if "transfer_error" in r]
    if errors:
        lines += ["", "Trained and scored in-domain, but not on the transfer file:", ""]
        lines += [f"- {r['system']}: {r['transfer_error']}" for r in errors]
    return lines


def _f1(value: Optional[float]) -> str:
    """An F1 in points, or "n/a" where there is none (no such type in gold or prediction; no relations)."""
    return "n/a" if value is None else f"{value:.1f}"
