"""``two-tasks``: memory and speed of two tasks on one frozen backbone vs one task alone.

Builds one ``softprompt_ie`` component per corpus (its own schema, frozen
backbone, late prompts, packed queries by default), saves each task's pipeline alone and a pipeline
holding both, and measures each in a fresh process: resident memory after loading and
annotating the texts, and words per second of ``nlp.pipe``. The baseline without sharing, the two
tasks as two pipelines in two processes, is derived from the alone rows: memory adds up, and so does
the time per word. Speed and memory do not depend on the learned weights, so the components are
initialized, not trained (an untrained component predicts no triggers: concept queries only).
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

from . import CLIError, at_least_one, check_output_files, markdown_output, read_docbin

HELP = "memory and words/s of two softprompt_ie tasks sharing one frozen backbone vs one task"

MEASURE = r"""
import json, resource, sys, time
import spacy
from spacy.tokens import DocBin
nlp = spacy.load(sys.argv[1])
texts = [d.text for d in DocBin().from_disk(sys.argv[2]).get_docs(nlp.vocab)][: int(sys.argv[3])]
list(nlp.pipe(texts[:8], batch_size=16))
start = time.perf_counter()
docs = list(nlp.pipe(texts, batch_size=16))
seconds = time.perf_counter() - start
print(json.dumps({"words_per_second": sum(len(d) for d in docs) / seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--first", type=Path, required=True, help="first task's corpus (.spacy), e.g. ADE train")
    parser.add_argument("--second", type=Path, required=True, help="second task's corpus (.spacy), e.g. SDoH train")
    parser.add_argument("--texts", type=Path, required=True, help=".spacy whose texts are annotated")
    parser.add_argument("--limit", type=at_least_one, default=200, help="texts annotated")
    parser.add_argument("--backbone", default="default")
    parser.add_argument("--prompt-layer", type=int, default=4)
    parser.add_argument("--packed", action=argparse.BooleanOptionalAction, default=True,
                        help="packed queries (one pass per window for all of a task's types)")
    parser.add_argument("--prompt-length", type=int, default=4, help="prompt vectors per type")
    parser.add_argument("--max-length", type=at_least_one, default=256,
                        help="subwords per sequence: room for every type's part and a whole window, so that "
                             "both tasks tile a text alike and share its lower layers")
    parser.add_argument("--repeats", type=at_least_one, default=3, help="fresh processes per pipeline (best speed kept)")
    parser.add_argument("--output", type=markdown_output, help="markdown report (and .json beside it)")


def run(args: argparse.Namespace) -> int:
    import spacy
    from spacy.training import Example

    check_output_files(output=args.output)
    for path in (args.first, args.second, args.texts):
        if not path.exists():
            raise CLIError(f"{path} not found (run `spacy project run convert` first)")
        if not read_docbin(path):  # (an empty --texts was a ZeroDivisionError after the pipelines were built)
            raise CLIError(f"{path} holds no documents")
    model = {"backbone": args.backbone, "strategy": "soft", "freeze_backbone": True, "prompt_layer": args.prompt_layer,
             "packed": args.packed, "prompt_length": args.prompt_length, "max_length": args.max_length}
    rows: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        both = spacy.blank("en")
        for name, corpus in (("first", args.first), ("second", args.second)):
            both.add_pipe("softprompt_ie", name=name, config={"model": model, "spans_key": name,
                                                              "set_ents": name == "first"})
            gold = read_docbin(corpus, both.vocab)[:200]
            both.get_pipe(name).initialize(lambda gold=gold: [Example(d, d) for d in gold], nlp=both)
        both.to_disk(Path(tmp) / "both")
        for name in ("first", "second"):
            alone = spacy.blank("en")
            alone.add_pipe("softprompt_ie", name=name, config={"model": model, "spans_key": name})
            alone.get_pipe(name).from_bytes(both.get_pipe(name).to_bytes())
            alone.to_disk(Path(tmp) / name)
        for label, folder in (("one task", "first"), ("second task alone", "second"), ("two tasks, one backbone", "both")):
            runs = [_measure(Path(tmp) / folder, args.texts, args.limit) for _ in range(args.repeats)]
            row = {"pipeline": label, "words_per_second": max(r["words_per_second"] for r in runs),
                   "peak_rss_mb": min(r["peak_rss_mb"] for r in runs)}
            rows.append(row)
            print(f"{label}: {row['words_per_second']:.0f} words/s, peak RSS {row['peak_rss_mb']:.0f} MB", flush=True)
    first, second, shared = rows
    separate = {"pipeline": "two tasks, two pipelines (derived: times and memory of the alone rows added)",
                "words_per_second": 1 / (1 / first["words_per_second"] + 1 / second["words_per_second"]),
                "peak_rss_mb": first["peak_rss_mb"] + second["peak_rss_mb"]}
    rows.append(separate)
    report = {"rows": rows, "command": "python -m spacy_softprompt " + " ".join(sys.argv[1:]),
              "memory_ratio": shared["peak_rss_mb"] / first["peak_rss_mb"],
              "speed_ratio": shared["words_per_second"] / first["words_per_second"],
              "speed_ratio_second": shared["words_per_second"] / second["words_per_second"],
              "speed_ratio_separate": shared["words_per_second"] / separate["words_per_second"],
              "memory_ratio_separate": shared["peak_rss_mb"] / separate["peak_rss_mb"]}
    table = _markdown(report)
    print(table)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(table, encoding="utf8")
        args.output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf8")
    return 0


def _measure(pipeline: Path, texts: Path, limit: int) -> Dict[str, float]:
    out = subprocess.run([sys.executable, "-c", MEASURE, str(pipeline), str(texts), str(limit)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise CLIError(f"measuring {pipeline.name} failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _markdown(report: Dict[str, Any]) -> str:
    lines = [f"Command: `{report['command']}`", "", "| pipeline | words/s | peak RSS (MB) |", "| --- | ---: | ---: |"]
    lines += [f"| {r['pipeline']} | {r['words_per_second']:.0f} | {r['peak_rss_mb']:.0f} |" for r in report["rows"]]
    lines += ["", f"Two tasks vs one (the first task alone): memory {report['memory_ratio']:.2f}x, "
                  f"words/s {report['speed_ratio']:.2f}x. Vs the second task alone: words/s "
                  f"{report['speed_ratio_second']:.2f}x. Vs the two tasks as two pipelines: memory "
                  f"{report['memory_ratio_separate']:.2f}x, words/s {report['speed_ratio_separate']:.2f}x.", ""]
    return "\n".join(lines)
