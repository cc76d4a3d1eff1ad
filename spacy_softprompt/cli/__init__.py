"""``python -m spacy_softprompt <verb>``: one module per verb.

Each verb module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``; heavy imports (torch, transformers) stay inside ``run``
so ``--help`` is fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

VERBS = {
    "convert": "convert",
    "sample": "sample",
    "evaluate": "evaluate",
    "score-brat": "score_brat",
    "export-brat": "export_brat",
    "render": "render",
    "compare": "compare",
}


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit code 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m spacy_softprompt",
        description="Clinical concept and relation extraction with learned prompts, for spaCy.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="<verb>")
    for verb, module_name in VERBS.items():
        module = importlib.import_module(f"{__name__}.{module_name}")
        p = sub.add_parser(verb, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "verb", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except CLIError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
