"""``python -m spacy_softprompt <verb>``: one module per verb.

Each verb module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``; heavy imports (torch, transformers) stay inside ``run``
so ``--help`` is fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

VERBS = {
    "convert": "convert",
    "sample": "sample",
    "evaluate": "evaluate",
    "score-brat": "score_brat",
    "export-brat": "export_brat",
    "render": "render",
    "compare": "compare",
    "experiment": "experiment",
    "bench": "bench",
    "scaling": "scaling",
    "step-time": "step_time",
    "init-config": "init_config",
}


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit code 1."""


def add_mapping_argument(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    """An ``OLD=NEW ...`` option (label and relation renames); parse it with ``parse_mapping``."""
    parser.add_argument(flag, nargs="+", action="extend", default=[], metavar="OLD=NEW", help=help)


def parse_mapping(pairs: List[str], option: str) -> Dict[str, str]:
    """``["A=B", ...]`` -> ``{"A": "B"}``."""
    mapping: Dict[str, str] = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            raise CLIError(f"{option} expects OLD=NEW pairs, got {pair!r}")
        mapping[old] = new
    return mapping


def write_scores(scores: Dict[str, Any], json_path: Optional[Path], markdown_path: Optional[Path]) -> None:
    """The metrics files of ``evaluate`` and ``score-brat``."""
    import json

    from ..scoring import to_markdown

    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(scores, indent=2) + "\n", encoding="utf8")
    if markdown_path:
        markdown_path.parent.mkdir(parents=True, exist_ok=True)
        markdown_path.write_text(to_markdown(scores), encoding="utf8")


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
