"""Throughput of ``annotate``: --n-process 1 vs 2, and Ray with 1 vs 2 workers, side by side in one run.

    python docs/annotate_throughput.py PIPELINE [--corpus corpus/ade/train.spacy] [--notes 200]
        [--sentences-per-note 8] [--output docs/annotate_throughput.md]

Notes are made from consecutive sentences of a converted corpus (``--sentences-per-note``
of them joined by a space, so a note is closer to a clinical note's length than one
sentence is). Each setting annotates the same notes with the command a user runs, in
its own process; each also runs on the first note alone, and that time (loading the
pipeline, starting the workers or Ray) is subtracted to give the steady-state rate.
The JSON beside the markdown keeps every number.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

SETTINGS = {
    "local, --n-process 1": ["--n-process", "1"],
    "local, --n-process 1, one torch thread": ["--n-process", "1"],
    "local, --n-process 2": ["--n-process", "2"],
    "ray, --workers 1": ["--engine", "ray", "--workers", "1"],
    "ray, --workers 2": ["--engine", "ray", "--workers", "2"],
}


def make_notes(corpus: Path, n_notes: int, per_note: int, folder: Path) -> Dict[str, int]:
    """``notes.jsonl`` (all notes) and ``one.jsonl`` (the first) in ``folder``; their sizes."""
    import spacy
    from spacy.tokens import DocBin

    texts = [doc.text for doc in DocBin().from_disk(corpus).get_docs(spacy.blank("en").vocab)]
    notes = [" ".join(texts[i:i + per_note]) for i in range(0, min(len(texts), n_notes * per_note), per_note)]
    with (folder / "notes.jsonl").open("w", encoding="utf8") as out:
        out.writelines(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(notes))
    (folder / "one.jsonl").write_text(json.dumps({"id": "0", "text": notes[0]}) + "\n", encoding="utf8")
    return {"notes": len(notes), "words": sum(len(t.split()) for t in notes)}


#: what the process's environment adds: torch takes its thread count from OMP_NUM_THREADS
ENVIRONMENT = {"local, --n-process 1, one torch thread": {"OMP_NUM_THREADS": "1"}}


def timed(pipeline: str, notes: Path, out: Path, options: List[str], environment: Dict[str, str]) -> float:
    """Seconds the annotate command takes, start to exit."""
    command = [sys.executable, "-m", "spacy_softprompt", "annotate", pipeline, str(notes), str(out), "--overwrite",
               *options]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **environment})
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pipeline")
    parser.add_argument("--corpus", type=Path, default=Path("corpus/ade/train.spacy"))
    parser.add_argument("--notes", type=int, default=200)
    parser.add_argument("--sentences-per-note", type=int, default=8)
    parser.add_argument("--output", type=Path, default=Path("docs/annotate_throughput.md"))
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="throughput-"))
    size = make_notes(args.corpus, args.notes, args.sentences_per_note, folder)
    rows = []
    for name, options in SETTINGS.items():
        environment = ENVIRONMENT.get(name, {})
        startup = timed(args.pipeline, folder / "one.jsonl", folder / "out-one", options, environment)
        total = timed(args.pipeline, folder / "notes.jsonl", folder / "out", options, environment)
        steady = max(total - startup, 1e-9)
        rows.append({"setting": name, "options": options, "seconds": total, "startup_seconds": startup,
                     "notes_per_s": size["notes"] / steady, "words_per_s": size["words"] / steady})
        print(f"{name}: {total:.1f} s ({startup:.1f} s startup), {rows[-1]['words_per_s']:.0f} words/s", file=sys.stderr)
    shutil.rmtree(folder)
    for row in rows:  # against one process with torch's default threads (local) or one worker (ray)
        row["speedup"] = row["words_per_s"] / rows[0 if row["setting"].startswith("local") else 3]["words_per_s"]
    command = " ".join(["python docs/annotate_throughput.py", args.pipeline, "--corpus", str(args.corpus), "--notes",
                        str(args.notes), "--sentences-per-note", str(args.sentences_per_note)])
    machine = (f"{platform.machine()}, {os.cpu_count()} cores; torch uses every core in one local process, one "
               "thread per --n-process worker, and one per Ray worker (Ray sets OMP_NUM_THREADS to its 1 CPU)")
    report = {"command": command, "machine": machine, **size, "rows": rows}
    args.output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf8")
    lines = [f"Command: `{command}`  ", f"Machine: {machine}  ",
             f"Input: {size['notes']} notes, {size['words']} words (JSONL)", "",
             "| setting | wall s | startup s | notes/s | words/s | vs first local / first Ray row |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['setting']} | {r['seconds']:.1f} | {r['startup_seconds']:.1f} | {r['notes_per_s']:.2f} | "
              f"{r['words_per_s']:.0f} | {r['speedup']:.2f}x |" for r in rows]
    args.output.write_text("\n".join(lines) + "\n", encoding="utf8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
