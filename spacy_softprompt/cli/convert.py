"""``convert``: a brat folder or the ADE corpus v2 -> a ``.spacy`` DocBin with concepts and relations.

The summary table printed (and written with ``--summary``) accounts for every
annotation of the input: converted, adjusted on the way, or not converted
with its reason.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Tuple

from . import CLIError, add_mapping_argument, parse_mapping

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc

    from ..corpora.summary import ConversionSummary

Converted = Tuple[List["Doc"], "ConversionSummary"]

HELP = "Convert a brat folder or the ADE corpus v2 to a .spacy file (concepts, relations, attributes)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("format", choices=["brat", "ade"], help="input format")
    parser.add_argument("input", type=Path, help="brat folder (or one .ann), or the ADE corpus v2 folder")
    parser.add_argument("output", type=Path, help="DocBin (.spacy) to write")
    parser.add_argument(
        "--split",
        choices=["train", "dev", "test"],
        help="brat: convert the subfolder INPUT/<split>; ade: the split fixed by splits.json",
    )
    add_mapping_argument(parser, "--label-map", "rename concept labels, e.g. Adverse_Effect=ADE")
    add_mapping_argument(parser, "--relation-map", "rename relation labels (brat: R types, event roles, equivalence types)")
    parser.add_argument(
        "--head-types",
        nargs="+",
        action="extend",
        default=[],
        metavar="TYPE",
        help="brat: concept types (after --label-map) that head relations; an R line "
        "whose Arg2 only has one is read with its arguments swapped (n2c2 2018: Drug)",
    )
    parser.add_argument(
        "--text-check",
        choices=["strict", "tolerant", "offsets"],
        default="tolerant",
        help="brat: how the .ann text must match the .txt at its offsets (default: tolerant, "
        "a difference inside the span is counted, an offset shift is an error)",
    )
    parser.add_argument(
        "--lenient",
        action="store_true",
        help="record malformed input in the summary and go on, instead of stopping",
    )
    parser.add_argument(
        "--summary",
        type=Path,
        metavar="FILE",
        help="also write the summary here (.json for JSON, anything else markdown)",
    )
    parser.add_argument(
        "--splits",
        type=Path,
        metavar="FILE",
        help="ADE: the splits.json to select --split from (default: splits.json in the input folder)",
    )
    parser.add_argument("--spans-key", default="softprompt", help="span group for the concepts")


def run(args: argparse.Namespace) -> int:
    import spacy
    from spacy.tokens import DocBin

    from ..corpora.summary import CorpusFormatError

    if not args.input.exists():
        raise CLIError(f"input not found: {args.input}")
    label_map = parse_mapping(args.label_map, "--label-map")
    relation_map = parse_mapping(args.relation_map, "--relation-map")
    nlp = spacy.blank("en")
    try:
        if args.format == "brat":
            docs, summary = _read_brat(args, nlp, label_map, relation_map)
        else:
            docs, summary = _read_ade(args, nlp, label_map, relation_map)
    except CorpusFormatError as err:
        raise CLIError(f"{err}\n(--lenient records malformed input in the summary and goes on)") from err
    if not docs:
        raise CLIError(f"no documents found in {args.input}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    DocBin(store_user_data=True, docs=docs).to_disk(args.output)
    table = summary.to_markdown()
    print(table)
    if args.summary is not None:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(
            summary.to_json() if args.summary.suffix == ".json" else table, encoding="utf-8"
        )
    print(f"{len(docs)} documents -> {args.output}", file=sys.stderr)
    return 0


def _read_brat(
    args: argparse.Namespace, nlp: "Language", label_map: Dict[str, str], relation_map: Dict[str, str]
) -> Converted:
    from ..corpora.brat import read_brat

    source = args.input
    if args.split is not None:
        source = args.input / args.split
        if not source.is_dir():
            raise CLIError(f"--split {args.split}: no folder {source}")
    return read_brat(
        source,
        nlp,
        label_map=label_map,
        relation_map=relation_map,
        head_types=args.head_types,
        lenient=args.lenient,
        spans_key=args.spans_key,
        text_check=args.text_check,
        progress=True,
    )


def _read_ade(
    args: argparse.Namespace, nlp: "Language", label_map: Dict[str, str], relation_map: Dict[str, str]
) -> Converted:
    from ..corpora.ade import read_ade
    from ..corpora.summary import CorpusFormatError

    if args.head_types:
        raise CLIError("--head-types applies to brat input only (ADE relations are always headed by Drug)")
    if not args.input.is_dir():
        raise CLIError(f"the ADE corpus input must be a folder (with DRUG-AE.rel): {args.input}")
    try:
        return read_ade(
            args.input,
            nlp,
            split=args.split,
            label_map={**label_map, **relation_map} or None,
            lenient=args.lenient,
            spans_key=args.spans_key,
            splits_file=args.splits,
        )
    except CorpusFormatError:
        raise
    except (ValueError, OSError) as err:  # an unknown label in the maps, a missing corpus file
        raise CLIError(str(err)) from err
