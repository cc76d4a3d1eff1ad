"""Regenerate the outputs pasted in README.md, so none is edited by hand.

    python docs/readme_outputs.py [NAME ...] [--check]

A pasted output is a fenced block with ``<!-- output: NAME -->`` on a line
before its fence (other ``<!-- key: value -->`` lines may sit between). Each
NAME has a generator here, run from the project root:

- ``demo``: the evaluate and render steps of ``make demo`` (``spacy project run
  all``) on its trained pipeline; run ``make demo`` first.
- ``sdoh-summary``: the conversion summary of the SDoH training split (needs
  ``assets/sdoh-mtsamples``: ``make assets``).
- ``annotate``: the README's ``annotate`` example (three notes, one empty) on the
  demo pipeline; run ``make demo`` first.
- ``doc-api``: the ``>>>`` session in "What you get on a Doc", run statement by
  statement with the installed demo pipeline ``en_softprompt_ade`` (``spacy
  project run package`` and install its wheel); each statement's output
  replaces the lines after it.

Without NAME every block is regenerated; ``--check`` writes nothing and exits 1
when a block differs. ``tests/test_readme.py`` reads the README's blocks with
:func:`read_blocks` from here.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = re.compile(r"^<!--\s*([\w-]+):\s*(.*?)\s*-->$")


@dataclass
class Block:
    """One fenced block: its language (``""`` for none), markers and body lines."""

    language: str
    body: List[str]
    first_line: int  # 1-based line of the opening fence
    markers: Dict[str, List[str]] = field(default_factory=dict)

    @property
    def code(self) -> str:
        return "\n".join(self.body) + "\n"


def read_blocks(text: str) -> List[Block]:
    """Every fenced block, with the ``<!-- key: value -->`` lines right before it (blank
    lines between are allowed; any other line ends the markers)."""
    lines = text.splitlines()
    blocks: List[Block] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.startswith("```"):
            index += 1
            continue
        end = next((j for j in range(index + 1, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise ValueError(f"README line {index + 1}: a code fence is never closed")
        markers: Dict[str, List[str]] = {}
        back = index - 1
        while back >= 0 and (not lines[back].strip() or MARKER.match(lines[back].strip())):
            found = MARKER.match(lines[back].strip())
            if found:
                markers.setdefault(found.group(1), []).append(found.group(2))
            back -= 1
        blocks.append(Block(line[3:].strip(), lines[index + 1 : end], index + 1, markers))
        index = end + 1
    return blocks


def _run(*command: str) -> str:
    result = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def demo(block: Block) -> List[str]:
    """What ``make demo`` prints in its evaluate and render steps (the pipeline of project.yml's
    default ``strategy``)."""
    import srsly

    variables = srsly.read_yaml(ROOT / "project.yml")["vars"]
    pipeline = f"training/{variables['strategy']}/model-best"
    if not (ROOT / pipeline).is_dir():
        raise SystemExit(f"{pipeline} not found: run `make demo` first")
    scores = _run("-m", "spacy_softprompt", "evaluate", pipeline, "corpus/ade/test.spacy")
    shown = _run("-m", "spacy_softprompt", "render", pipeline, variables["example"])
    return (scores.rstrip() + "\n\n" + shown.rstrip()).splitlines()


def sdoh_summary(block: Block) -> List[str]:
    """The conversion summary printed by the README's SDoH convert command."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = _run("-m", "spacy_softprompt", "convert", "brat", "assets/sdoh-mtsamples",
                   str(Path(tmp) / "train.spacy"), "--split", "train")
    return out.rstrip().splitlines()


def annotate_notes(block: Block) -> List[str]:
    """The README's annotate example: its summary line and the first record, on the demo pipeline."""
    import json
    import tempfile

    import srsly

    pipeline = f"training/{srsly.read_yaml(ROOT / 'project.yml')['vars']['strategy']}/model-best"
    with tempfile.TemporaryDirectory() as tmp:
        notes = Path(tmp) / "notes" / "2026-11"
        notes.mkdir(parents=True)
        for name, text in ANNOTATE_NOTES.items():
            (notes / name).write_text(text, encoding="utf8")
        result = subprocess.run([sys.executable, "-m", "spacy_softprompt", "annotate", pipeline, str(notes.parent),
                                 str(Path(tmp) / "annotated")], cwd=ROOT, capture_output=True, text=True, check=True)
        summary = result.stderr.strip().splitlines()[-1].replace(tmp + "/", "")
        first = json.loads((Path(tmp) / "annotated" / "part-00000.jsonl").read_text(encoding="utf8").splitlines()[0])
        errors = (Path(tmp) / "annotated" / "errors.jsonl").read_text(encoding="utf8").strip()
    summary = summary.split("; ")[0]  # the timing after it differs run to run
    return [summary, "", "$ head -n 1 annotated/part-00000.jsonl | python -m json.tool", *json.dumps(
        first, indent=2, ensure_ascii=False).splitlines(), "", "$ cat annotated/errors.jsonl", errors]


#: the notes of the README's annotate example (the README's bash block writes the same)
ANNOTATE_NOTES = {
    "0001.txt": "Started lisinopril 20 mg daily; two weeks later she developed a dry cough.",
    "0002.txt": "Fever and a maculopapular rash after amoxicillin 500 mg three times a day.",
    "0003.txt": "",
}


def doctest_session(block: Block, namespace: Optional[Dict[str, object]] = None) -> List[str]:
    """The ``>>>`` lines of ``block`` with, after each statement, what it prints now."""
    statements: List[List[str]] = []
    for line in block.body:
        if line.startswith(">>>"):
            statements.append([line])
        elif line.startswith("...") and statements:
            statements[-1].append(line)
    namespace = {} if namespace is None else namespace
    lines: List[str] = []
    for statement in statements:
        source = "\n".join(part[4:] for part in statement) + "\n"
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):
            exec(compile(source, "<README>", "single"), namespace)  # noqa: S102 (the README's own code)
        lines += statement + captured.getvalue().rstrip("\n").splitlines()
    return lines


GENERATORS: Dict[str, Callable[[Block], List[str]]] = {
    "demo": demo,
    "sdoh-summary": sdoh_summary,
    "doc-api": doctest_session,
    "annotate": annotate_notes,
}


def replace_block(text: str, block: Block, body: List[str]) -> str:
    """``text`` with ``block``'s body replaced by ``body``."""
    lines = text.splitlines()
    start = block.first_line  # index of the first body line
    lines[start : start + len(block.body)] = body
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(GENERATORS))
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a block is not current")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(GENERATORS))
    if unknown:
        parser.error(f"unknown output {', '.join(unknown)}; known: {', '.join(GENERATORS)}")
    names = args.names or list(GENERATORS)
    text = README.read_text(encoding="utf8")
    stale = []
    for name in names:
        (block,) = [b for b in read_blocks(text) if name in b.markers.get("output", [])]
        body = GENERATORS[name](block)
        if body != block.body:
            stale.append(name)
            text = replace_block(text, block, body)
    if args.check:
        print(f"not current: {', '.join(stale)}" if stale else "all current")
        return 1 if stale else 0
    README.write_text(text, encoding="utf8")
    print(f"regenerated: {', '.join(stale) or 'nothing changed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
