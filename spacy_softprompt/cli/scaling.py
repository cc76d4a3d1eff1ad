"""``scaling``: inference speed as the number of concept types grows.

Naive MRC asks one query per (window, concept type), each a full backbone
pass, so its cost grows linearly with the schema. This verb measures words per
second with ``nlp.pipe`` for the same texts under schemas of growing size:

- synthetic schemas of N types (``--types``) on one text set, and
- each ``--real`` corpus's own concept types on its own texts (e.g. SDoH),

for the stock ``transformer`` + ``ner`` pipeline and for ``softprompt_ie``
without a query part (``none``), with input prompts (naive) and with late
prompts at each ``--prompt-layers`` layer. Speed does not depend on the
weights, so every pipeline is freshly initialized with the schema (an
untrained softprompt_ie finds no triggers, so these are concept queries only;
end-to-end speed with relations is in the ``bench`` table).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import CLIError, at_least_one, check_distinct, check_output_files, markdown_output, non_negative, read_docbin
from .bench import check_prompt_layers, machine
from .init_config import STOCK, generate
from .runs import matplotlib_available

HELP = ("words/s vs number of concept types: stock ner and softprompt_ie (input vs late prompts); "
        "the plot is optional: without matplotlib a warning at the start, and the table only")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--texts", type=Path, required=True, help=".spacy whose texts carry the synthetic schemas")
    parser.add_argument("--types", type=at_least_one, nargs="+", default=[2, 5, 10, 20], help="synthetic schema sizes")
    parser.add_argument(
        "--real", nargs="*", default=[], metavar="NAME=PATH",
        help="corpora timed with their own concept types on their own texts, e.g. sdoh=corpus/sdoh/test.spacy",
    )
    parser.add_argument("--limit", type=non_negative, default=200, help="texts timed per set (0 = all)")
    parser.add_argument("--prompt-layers", type=int, nargs="+", default=[4, 5], help="late-prompt layers to time")
    parser.add_argument("--prompt-length", type=at_least_one, default=16)
    parser.add_argument("--packed-prompt-length", type=at_least_one, default=2,
                        help="vectors per type in packed queries")
    parser.add_argument("--backbone", default="default")
    parser.add_argument("--batch-size", type=at_least_one, default=16, help="documents per nlp.pipe batch (as in evaluate)")
    parser.add_argument("--output", type=markdown_output, required=True, help="markdown report; .json and .png go beside it")


def systems(prompt_layers: Sequence[int], packed_length: int = 2) -> List[Tuple[str, Optional[Dict[str, Any]]]]:
    """(name, softprompt_ie model settings or None for the stock pipeline). Packed queries hold
    every type's part in one sequence: ``packed_length`` vectors per type, and room for 20 types."""
    rows: List[Tuple[str, Optional[Dict[str, Any]]]] = [
        ("stock transformer+ner", None),
        ("softprompt_ie none (no query part)", {"strategy": "none", "prompt_layer": 0}),
        ("softprompt_ie soft, input prompts (naive)", {"strategy": "soft", "prompt_layer": 0}),
    ]
    rows += [(f"softprompt_ie soft, late prompts k={k}", {"strategy": "soft", "prompt_layer": k}) for k in prompt_layers]
    rows += [
        (f"softprompt_ie soft, packed, late prompts k={k}",
         {"strategy": "soft", "prompt_layer": k, "packed": True, "prompt_length": packed_length, "max_length": 256})
        for k in prompt_layers
    ]
    return rows


def run(args: argparse.Namespace) -> int:
    import spacy

    from ..backbone import BackboneNotFound, resolve_backbone
    from ..relations import concept_spans

    check_output_files(output=args.output)
    check_distinct(args.types, "--types")
    check_distinct(args.prompt_layers, "--prompt-layers")
    named = [item.partition("=") for item in args.real]
    bad = [f"{name}{sep}{path}" for name, sep, path in named if not (name and sep and path)]
    if bad:
        raise CLIError(f"--real expects NAME=PATH, got {bad[0]!r}")
    check_distinct([name for name, _, _ in named], "--real")
    try:
        backbone = resolve_backbone(args.backbone)
    except BackboneNotFound as err:
        raise CLIError(str(err)) from err
    check_prompt_layers(backbone, args.prompt_layers, "--prompt-layers")
    can_plot = matplotlib_available(required=False, verb="scaling")
    vocab = spacy.blank("en").vocab

    def texts_of(path: Path) -> Tuple[List[str], List[str]]:
        if not path.exists():
            raise CLIError(f"{path} not found (run `spacy project run convert` first)")
        docs = read_docbin(path, vocab)
        if not docs:
            raise CLIError(f"{path}: no documents to time")
        docs = docs[: args.limit] if args.limit else docs
        labels = sorted({s.label_ for d in docs for s in concept_spans(d)})
        return [d.text for d in docs], labels

    text_sets = []
    main_texts, main_labels = texts_of(args.texts)
    for n in args.types:
        real = main_labels[:n]  # the corpus's own types first, then made-up ones
        labels = real + [f"Type{i:02d}" for i in range(len(real) + 1, n + 1)]
        text_sets.append({"texts": args.texts.stem, "schema": "synthetic", "n_types": n, "labels": labels,
                          "_texts": main_texts})
    for name, _, path in named:
        texts, labels = texts_of(Path(path))
        text_sets.append({"texts": name, "schema": f"{name} (real)", "n_types": len(labels), "labels": labels,
                          "_texts": texts})

    report: Dict[str, Any] = {"machine": machine(), "backbone": args.backbone, "prompt_length": args.prompt_length,
                              "batch_size": args.batch_size, "limit": args.limit, "rows": [],
                              "command": "python -m spacy_softprompt " + " ".join(sys.argv[1:])}
    for name, settings in systems(args.prompt_layers, args.packed_prompt_length):
        for entry in text_sets:
            nlp = _pipeline(backbone, settings, entry["labels"], args.prompt_length)
            words_per_second = _words_per_second(nlp, entry["_texts"], args.batch_size)
            row = {"system": name, **{k: v for k, v in entry.items() if not k.startswith("_") and k != "labels"},
                   "words_per_second": round(words_per_second, 1)}
            report["rows"].append(row)
            print(f"{name:45s} {row['schema']:12s} N={row['n_types']:3d}  {words_per_second:8.0f} words/s", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot = _plot(report, args.output.with_suffix(".png")) if can_plot else None
    args.output.write_text(to_markdown(report, plot), encoding="utf-8")
    print("\n" + to_markdown(report, plot))
    return 0


def _pipeline(backbone: str, settings: Optional[Dict[str, Any]], labels: List[str], prompt_length: int):
    """A freshly initialized pipeline whose schema is exactly ``labels``."""
    import spacy
    from spacy.training import Example

    if settings is None:
        config = spacy.util.load_config_from_str(generate(STOCK, backbone=backbone), interpolate=True)
        nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
        for label in labels:
            nlp.get_pipe("ner").add_label(label)
        doc = nlp.make_doc("The patient is well.")
        nlp.initialize(lambda: [Example(doc, doc)])
        return nlp
    nlp = spacy.blank("en")
    model = {"backbone": backbone, "prompt_length": prompt_length, "freeze_backbone": True, **settings}
    pipe = nlp.add_pipe("softprompt_ie", config={"model": model})
    doc = nlp.make_doc("The patient is well.")
    pipe.initialize(lambda: [Example(doc, doc)], nlp=nlp, labels=labels, relation_schema={})
    return nlp


def _words_per_second(nlp, texts: List[str], batch_size: int) -> float:
    list(nlp.pipe(texts[:8], batch_size=batch_size))  # warm-up: lazy inits, allocator
    for _, pipe in nlp.pipeline:  # a shared frozen backbone keeps recent windows' states (from other
        loaded = pipe.model.attrs.get("backbone") if hasattr(pipe, "model") else None  # pipelines too):
        if loaded is not None and loaded.states is not None:  # forget them, so each text is read anew
            loaded.states.clear()
    start = time.perf_counter()
    docs = list(nlp.pipe(texts, batch_size=batch_size))
    seconds = time.perf_counter() - start
    return sum(len(doc) for doc in docs) / seconds if seconds > 0 else 0.0


def cost_growth(report: Dict[str, Any], system: str) -> Optional[Tuple[float, float]]:
    """From the smallest to the largest synthetic schema: the ratio of time per word, and
    the time per word each added type costs (ms)."""
    rows = sorted((r["n_types"], r["words_per_second"]) for r in report["rows"]
                  if r["system"] == system and r["schema"] == "synthetic")
    if len(rows) < 2:
        return None
    (n_lo, lo), (n_hi, hi) = rows[0], rows[-1]
    return lo / hi, (1000 / hi - 1000 / lo) / (n_hi - n_lo)


def _plot(report: Dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(dict.fromkeys(r["system"] for r in report["rows"]))
    for index, name in enumerate(names):
        rows = sorted((r["n_types"], r["words_per_second"]) for r in report["rows"]
                      if r["system"] == name and r["schema"] == "synthetic")
        if not rows:
            continue
        colour = f"C{index}"
        n, speed = zip(*rows)
        left.plot(n, speed, "o-", color=colour, label=name)
        right.plot(n, [1000 / s for s in speed], "o-", color=colour, label=name)
        for r in report["rows"]:
            if r["system"] == name and r["schema"] != "synthetic":
                left.plot([r["n_types"]], [r["words_per_second"]], "s", color=colour, markerfacecolor="none")
    left.set(xlabel="concept types N", ylabel="words / second (nlp.pipe)", yscale="log",
             title="speed (squares: a corpus's real schema on its own texts)")
    right.set(xlabel="concept types N", ylabel="milliseconds per word",
              title="cost: the slope is the price of one more type")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def to_markdown(report: Dict[str, Any], plot: Optional[Path] = None) -> str:
    m = report["machine"]
    columns = list(dict.fromkeys((r["schema"], r["n_types"], r["texts"]) for r in report["rows"]))
    header = " | ".join(f"{schema} N={n} ({texts})" for schema, n, texts in columns)
    lines = [
        "# Inference cost vs number of concept types",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Backbone `{report['backbone']}`, prompt length {report['prompt_length']}, `nlp.pipe` batch size "
        f"{report['batch_size']}, up to {report['limit'] or 'all'} texts per set; one run on "
        f"{m['cpu']}, {m['cores']} cores, torch {m['torch']}. Freshly initialized pipelines (speed does not "
        "depend on the weights): softprompt_ie runs its concept queries only, as an untrained model finds no "
        "relation triggers.",
        "",
        f"| system | {header} | time per word, largest / smallest synthetic N | ms per word per added type |",
        "| --- | " + " | ".join("---:" for _ in columns) + " | ---: | ---: |",
    ]
    for name in dict.fromkeys(r["system"] for r in report["rows"]):
        speeds = {(r["schema"], r["n_types"], r["texts"]): r["words_per_second"] for r in report["rows"]
                  if r["system"] == name}
        growth = cost_growth(report, name)
        lines.append(f"| {name} | " + " | ".join(f"{speeds.get(c, float('nan')):.0f}" for c in columns)
                     + (" | n/a | n/a |" if growth is None else f" | {growth[0]:.2f}x | {growth[1]:.3f} |"))
    if plot is not None:
        lines += ["", f"![words per second and cost growth vs number of types]({plot.name})"]
    lines.append("")
    return "\n".join(lines)
