"""``step-time``: where one training step's time goes, per system, in one run.

Each system trains one pass over ``--steps`` batches of the training corpus
(untimed: the first epoch, which also fills the frozen-states cache), then a
second, timed pass over the same batches (what every later epoch costs), with
the optimizer of the committed configs (Adam, L2 0.01, gradient clipping
1.0). The step is split into: building queries and batches (data
preparation), the backbone's forward pass, the loss, the backward pass, and
the optimizer update. Timers wrap the component's own
methods on this one instance; nothing in the package is changed for it.
"""
import argparse
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

from . import CLIError, at_least_one, check_output_files, markdown_output, read_docbin

HELP = "time the parts of a training step (data preparation, forward, loss, backward, optimizer)"

SYSTEMS: Dict[str, Dict[str, Any]] = {
    "fine-tune (none, unfrozen)": {"strategy": "none", "freeze_backbone": False, "prompt_layer": 4},
    "soft prompts, frozen": {"strategy": "soft", "freeze_backbone": True, "prompt_layer": 4,
                             "cache_frozen_states": False},
    "soft prompts, frozen, cached lower layers": {"strategy": "soft", "freeze_backbone": True, "prompt_layer": 4},
    "soft prompts, frozen, packed, cached": {"strategy": "soft", "freeze_backbone": True, "prompt_layer": 4,
                                             "packed": True},
}
PARTS = ("data", "forward", "loss", "backward", "optimizer")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", type=Path, required=True, help="training DocBin (.spacy)")
    parser.add_argument("--backbone", default="default", help="backbone (default: offline all-MiniLM-L6-v2)")
    parser.add_argument("--steps", type=at_least_one, default=20, help="batches: one untimed pass, then one timed pass")
    parser.add_argument("--batch-words", type=at_least_one, default=400, help="words per batch, as in the configs")
    parser.add_argument("--prompt-layer", type=int, default=4, help="late-prompt layer of every system")
    parser.add_argument("--only", nargs="+", default=None, help="system names to run (default: all)")
    parser.add_argument("--output", type=markdown_output, help="write a markdown table here (and .json beside it)")


def run(args: argparse.Namespace) -> int:
    import spacy
    import torch
    from spacy.training import Example
    from spacy.training.batchers import minibatch_by_words

    check_output_files(output=args.output)
    if not args.train.exists():
        raise CLIError(f"{args.train} not found (convert a corpus first)")
    unknown = [name for name in args.only or () if name not in SYSTEMS]
    if unknown:
        raise CLIError(f"--only {', '.join(map(repr, unknown))}: not a system here; choose from: {', '.join(SYSTEMS)}")
    chosen = {k: v for k, v in SYSTEMS.items() if args.only is None or k in args.only}
    nlp0 = spacy.blank("en")
    docs = read_docbin(args.train, nlp0.vocab)
    n_batches = args.steps
    batches = list(minibatch_by_words(docs, size=args.batch_words, tolerance=0.2))[:n_batches]
    if len(batches) < n_batches:
        raise CLIError(f"{args.train} gives only {len(batches)} batches of {args.batch_words} words")
    rows = []
    for name, settings in chosen.items():
        print(f"{name}: {args.steps} steps untimed, then the same {args.steps} timed", flush=True)
        torch.manual_seed(0)
        nlp = spacy.blank("en")
        model = dict(settings, backbone=args.backbone, prompt_layer=args.prompt_layer)
        nlp.add_pipe("softprompt_ie", config={"model": model})
        examples = [[Example(nlp.make_doc(d.text), d) for d in batch] for batch in batches]
        nlp.initialize(lambda: [eg for batch in examples for eg in batch])
        optimizer = _optimizer()
        pipe = nlp.get_pipe("softprompt_ie")
        timers = _instrument(pipe)
        words = 0
        try:
            for batch in examples:  # first epoch
                pipe.update(batch, sgd=optimizer, drop=0.1)
            timers.clear()
            started = time.perf_counter()
            for batch in examples:  # every later epoch
                pipe.update(batch, sgd=optimizer, drop=0.1)
                words += sum(len(eg.reference) for eg in batch)
            total = time.perf_counter() - started
        finally:
            _restore_query_building()
        row = {"system": name, "steps": args.steps, "total_s": total, "words_per_s": words / total}
        row.update({part: sum(timers[part]) / args.steps * 1000 for part in PARTS})
        row["other"] = total / args.steps * 1000 - sum(row[p] for p in PARTS)
        rows.append(row)
        print(_table([row]).splitlines()[-1], flush=True)
    table = _table(rows)
    print(table)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(table + "\n", encoding="utf8")
        args.output.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf8")
    return 0


def _optimizer():
    from thinc.api import Adam

    return Adam(learn_rate=0.001, L2=0.01, L2_is_weight_decay=True, grad_clip=1.0)


def _instrument(pipe: Any) -> Dict[str, List[float]]:
    """Wrap this pipe's batching, forward, loss, backward and optimizer step with timers."""
    timers: Dict[str, List[float]] = defaultdict(list)

    def timed(part: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timers[part].append(time.perf_counter() - start)
        return wrapper

    batches, begin_update = pipe._batches, pipe.model.begin_update

    def timed_batches(*args, **kwargs) -> Iterator:
        iterator = batches(*args, **kwargs)
        while True:
            start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                timers["data"].append(time.perf_counter() - start)
                return
            timers["data"].append(time.perf_counter() - start)
            yield batch

    def timed_begin_update(batch):
        start = time.perf_counter()
        output, backprop = begin_update(batch)
        timers["forward"].append(time.perf_counter() - start)
        return output, timed("backward", backprop)

    pipe._batches = timed_batches
    pipe.model.begin_update = timed_begin_update
    pipe.get_loss = timed("loss", pipe.get_loss)
    pipe.finish_update = timed("optimizer", pipe.finish_update)
    # Query building is data preparation too: the component calls this module-level function.
    from spacy_softprompt import component, targets

    component.training_queries = timed("data", targets.training_queries)
    return timers


def _restore_query_building() -> None:
    """Undo the one timer that is module-level (the pipe's own are gone with the pipe)."""
    from spacy_softprompt import component, targets

    component.training_queries = targets.training_queries


def _table(rows: List[Dict[str, Any]]) -> str:
    head = "| system | ms/step | " + " | ".join(PARTS) + " | other | train words/s |"
    lines = [head, "|" + " --- |" + " ---: |" * (len(PARTS) + 3)]
    for r in rows:
        cells = " | ".join(f"{r[p]:.0f}" for p in PARTS)
        lines.append(
            f"| {r['system']} | {r['total_s'] / r['steps'] * 1000:.0f} | {cells} | {r['other']:.0f} | {r['words_per_s']:.0f} |"
        )
    return "\n".join(lines)
