"""``score-brat``: score a folder of brat system output against a folder of brat gold.

The official n2c2 2018 track 2 counts (``track2-evaluation.py``), from the raw
offsets in the ``.ann`` files: no span is trimmed or moved, strict = identical
offsets and type, lenient = overlap and type with the script's pare-down in the
order of the system file's lines. Only ``*.ann`` files directly in each folder
are read, paired by file name; names in one folder only are reported on stderr
and skipped, as the script does (``--count-missing`` counts a gold file without
system output as all FN). Event (E) lines' arguments are not scored, as in the
script: their number is warned about (SDoH's relations are all event arguments). See :mod:`spacy_softprompt.brat_scoring` and
``docs/scoring.md``; ``evaluate`` differs on purpose in its lenient rule
(``exact_first``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import CLIError, check_output_files, write_scores

HELP = "Score brat system output against brat gold (.ann folders): the official n2c2 2018 track 2 counts."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("gold_dir", type=Path, help="folder of gold .ann files")
    parser.add_argument("system_dir", type=Path, help="folder of system .ann files, same file names")
    parser.add_argument(
        "--count-missing",
        action="store_true",
        help="count the gold items of a gold file without a system file as FN "
        "(the official script skips such files)",
    )
    parser.add_argument("--output", type=Path, help="write the scores as JSON here")
    parser.add_argument("--markdown", type=Path, help="write the score table as markdown here")


def run(args: argparse.Namespace) -> int:
    from ..brat_scoring import score_brat_folders
    from ..scoring import format_table

    check_output_files(output=args.output, markdown=args.markdown)
    for folder, what in ((args.gold_dir, "gold"), (args.system_dir, "system")):
        if not folder.is_dir():
            raise CLIError(f"{what} folder not found: {folder}. Pass a folder of brat .ann files.")
    if args.gold_dir.resolve() == args.system_dir.resolve():  # (scored 100 everywhere)
        raise CLIError(f"{args.gold_dir} is both the gold and the system folder")
    scores = score_brat_folders(args.gold_dir, args.system_dir, count_missing=args.count_missing)
    if not scores["documents"]:
        raise CLIError(
            f"No .ann file name is in both {args.gold_dir} and {args.system_dir} "
            "(only files directly in each folder are read)."
        )
    missing_note = "all its gold annotations count as FN" if args.count_missing else "skipped (official script)"
    for doc_id in scores["missing_in_system"]:
        print(f"warning: {doc_id}: no system .ann; {missing_note}", file=sys.stderr)
    for doc_id in scores["only_in_system"]:
        print(f"warning: {doc_id}: in the system folder only; not scored (no gold)", file=sys.stderr)
    for doc_id in scores["text_differs"]:
        print(f"warning: {doc_id}: gold and system .txt files differ; offsets compared as written", file=sys.stderr)
    for problem in scores["problems"][:20]:
        print(f"warning: {problem}", file=sys.stderr)
    if len(scores["problems"]) > 20:
        print(f"warning: ... {len(scores['problems']) - 20} more problem(s), all in the JSON output", file=sys.stderr)

    if scores["unscored_event_arguments"]:
        print(f"warning: the gold files hold {scores['unscored_event_arguments']} event arguments (E lines), which the "
              "official n2c2 2018 rules do not score (T and R lines only): the relation scores leave them out; "
              "`evaluate` on the converted .spacy files counts them as relations", file=sys.stderr)
    print(format_table(scores))
    print(
        f"\n{scores['documents']} documents scored, official n2c2 2018 track 2 rules on raw offsets; "
        f"{len(scores['missing_in_system'])} gold file(s) without system output"
    )
    write_scores(scores, args.output, args.markdown)
    return 0
