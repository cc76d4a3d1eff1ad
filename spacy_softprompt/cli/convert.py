"""``convert``: a brat folder, the ADE corpus v2 or a SpERT JSON file -> a ``.spacy`` DocBin with
concepts and relations (``spert-json --folds``: every fold file of a folder; ``--dev-fraction``:
each fold's dev set carved from its train file; brat ``--cats-from-status Tobacco``: also a status
class per document in ``doc.cats``, see :mod:`spacy_softprompt.corpora.status`).

The summary table printed (and written with ``--summary``) accounts for every
annotation of the input: converted, adjusted on the way, or not converted
with its reason.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from . import CLIError, add_mapping_argument, check_output_files, parse_mapping

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc

    from ..corpora.summary import ConversionSummary

Converted = Tuple[List["Doc"], "ConversionSummary"]

HELP = "Convert a brat folder, the ADE corpus v2 or SpERT JSON to .spacy (concepts, relations, attributes)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("format", choices=["brat", "ade", "spert-json"], help="input format")
    parser.add_argument(
        "input", type=Path, help="brat folder (or one .ann), the ADE corpus v2 folder, or a SpERT .json file"
    )
    parser.add_argument("output", type=Path, help="DocBin (.spacy) to write (--folds: a folder)")
    parser.add_argument(
        "--folds",
        action="store_true",
        help="spert-json: INPUT is a folder of <corpus>_split_<i>_<part>.json files (SpERT's 10 folds); "
        "writes OUTPUT/fold_<i>/<part>.spacy and <part>.summary.md for each",
    )
    parser.add_argument(
        "--dev-fraction",
        type=float,
        metavar="F",
        help="with --folds: carve each fold's dev.spacy from its train file only (a seeded random "
        "fraction F of its documents, e.g. 0.1, removed from train.spacy; sentences with the same "
        "words stay together); the test file is never touched",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the --dev-fraction draw (default 0)")
    parser.add_argument(
        "--split",
        choices=["train", "dev", "test"],
        help="brat: convert the subfolder INPUT/<split> (or, with --splits, the documents the file lists for "
        "it); ade: the split fixed by splits.json",
    )
    add_mapping_argument(parser, "--label-map", "rename concept labels, e.g. Adverse_Effect=ADE")
    add_mapping_argument(
        parser,
        "--relation-map",
        "rename relation labels (brat: R types, event roles, equivalence types; ade: Drug-AE, Drug-Dose; "
        "spert-json: relation types, which may share names with entity types)",
    )
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
        help="ADE: the splits.json to select --split from (default: splits.json in the input folder); brat: a "
        "splits.json of document ids (the .ann path without suffix) for a corpus without split folders "
        "(MACCROBAT: configs/maccrobat_splits.json)",
    )
    parser.add_argument("--spans-key", default="softprompt", help="span group for the concepts")
    parser.add_argument(
        "--corpus",
        metavar="NAME",
        help="tag every document with its corpus (doc._.corpus = NAME): a component trained on several "
        "corpora supervises each document only on the types its corpus annotates; give same-named types "
        "of different meaning corpus-qualified names with --label-map (Drug=sdoh/Drug)",
    )
    parser.add_argument(
        "--cats-from-status",
        metavar="EVENT_TYPE",
        help="brat (SHAC scheme): also write doc.cats, one of current/past/never/unknown from the document's "
        "EVENT_TYPE events and the StatusTimeVal of their Status argument (Tobacco: smoking status; the rule: "
        "spacy_softprompt/corpora/status.py, docs/sdoh_status.md); every annotation is converted as without it",
    )


def run(args: argparse.Namespace) -> int:
    import spacy

    from ..corpora.summary import CorpusFormatError

    if not args.input.exists():
        raise CLIError(f"input not found: {args.input}")
    label_map = parse_mapping(args.label_map, "--label-map")
    relation_map = parse_mapping(args.relation_map, "--relation-map")
    if args.folds and args.format != "spert-json":
        raise CLIError("--folds applies to spert-json input only")
    if args.dev_fraction is not None and not args.folds:
        raise CLIError("--dev-fraction applies with --folds only (it carves each fold's dev set from its train file)")
    if args.splits is not None and args.split is None and args.format != "spert-json":
        raise CLIError("--splits needs --split (which split of the file to convert)")
    if args.cats_from_status is not None and args.format != "brat":
        raise CLIError("--cats-from-status applies to brat input only (it reads events and their attributes)")
    if args.dev_fraction is not None and not 0 < args.dev_fraction < 1:
        raise CLIError(f"--dev-fraction must be between 0 and 1 (exclusive), got {args.dev_fraction}")
    if args.folds:
        if args.output.is_file():
            raise CLIError(f"{args.output} is a file: with --folds OUTPUT is a folder (fold_<i>/<part>.spacy)")
    else:  # (a folder in the way failed only after the whole conversion)
        check_output_files(inputs=[args.input, args.splits], OUTPUT=args.output, summary=args.summary)
    nlp = spacy.blank("en")
    try:
        if args.folds:
            return _convert_folds(args, nlp, label_map, relation_map)
        if args.format == "brat":
            docs, summary = _read_brat(args, nlp, label_map, relation_map)
        elif args.format == "ade":
            docs, summary = _read_ade(args, nlp, label_map, relation_map)
        else:
            docs, summary = _read_spert(args, args.input, nlp, label_map, relation_map)
        tag_corpus(docs, args.corpus)
    except CorpusFormatError as err:
        raise CLIError(f"{err}\n(--lenient records malformed input in the summary and goes on)") from err
    print(_write(docs, summary, args.input, args.output, args.summary))
    print(f"{len(docs)} documents -> {args.output}", file=sys.stderr)
    return 0


def _warn_unmatched(summary: "ConversionSummary", source: Path, label_map: Dict[str, str],
                    relation_map: Dict[str, str], head_types: Optional[List[str]]) -> None:
    """A renaming that renamed nothing is a typo, or a split without that type: said on stderr (not an error, as
    one split may lack a type the others have)."""
    seen = summary.source_labels
    unmatched = [f"--label-map {old}={new}" for old, new in label_map.items() if not seen[("concept", old)]]
    unmatched += [f"--relation-map {old}={new}" for old, new in relation_map.items() if not seen[("relation", old)]]
    unmatched += [f"--head-types {label}" for label in head_types or () if label not in summary.entities]
    for what in unmatched:
        print(f"warning: {what} matches no annotation in {source}", file=sys.stderr)


def tag_corpus(docs: List["Doc"], corpus: Optional[str]) -> None:
    """``--corpus``: every document's ``doc._.corpus`` (kept in ``user_data``, so in the DocBin)."""
    if corpus is None:
        return
    if not corpus.strip():
        raise CLIError("--corpus needs a non-empty name")
    for doc in docs:
        doc._.corpus = corpus


def _write(
    docs: List["Doc"], summary: "ConversionSummary", source: Path, output: Path, summary_path: Optional[Path]
) -> str:
    """Write the DocBin (and the summary where asked); the summary's markdown table."""
    from spacy.tokens import DocBin

    table = summary.to_markdown()
    if summary_path is not None:  # written even when no document is left: it says why
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(summary.to_json() if summary_path.suffix.lower() == ".json" else table,
                                encoding="utf-8")
    if not docs:
        print(table)
        raise CLIError(f"no documents converted from {source}" + (
            ": every one was left out, the summary above says why" if summary.problems else ""))
    output.parent.mkdir(parents=True, exist_ok=True)
    DocBin(store_user_data=True, docs=docs).to_disk(output)
    return table


def _read_brat(
    args: argparse.Namespace, nlp: "Language", label_map: Dict[str, str], relation_map: Dict[str, str]
) -> Converted:
    from ..corpora.ade import load_splits
    from ..corpora.brat import read_brat
    from ..corpora.summary import CorpusFormatError

    source, documents = args.input, None
    if args.splits is not None:
        try:
            split_of = load_splits(args.splits)
        except (FileNotFoundError, CorpusFormatError) as err:
            raise CLIError(str(err)) from err
        documents = {doc_id for doc_id, split in split_of.items() if split == args.split}
    elif args.split is not None:
        source = args.input / args.split
        if not source.is_dir():
            raise CLIError(f"--split {args.split}: no folder {source} (a corpus without split folders needs "
                           "--splits FILE)")
    try:
        docs, summary = read_brat(
            source,
            nlp,
            label_map=label_map,
            relation_map=relation_map,
            head_types=args.head_types,
            lenient=args.lenient,
            spans_key=args.spans_key,
            text_check=args.text_check,
            progress=True,
            documents=documents,
        )
    except CorpusFormatError:
        raise
    except ValueError as err:  # an input that is not brat
        raise CLIError(str(err)) from err
    _warn_unmatched(summary, source, label_map, relation_map, args.head_types)
    if documents is not None:
        # a listed document whose .ann is there but gave no Doc was left out with a reason (--lenient)
        missing = sorted(doc_id for doc_id in documents - {doc._.doc_id for doc in docs}
                         if not (source / f"{doc_id}.ann").is_file())
        if missing:
            raise CLIError(f"{args.splits}: {len(missing)} {args.split} document(s) not found in {source} "
                           f"(ids are .ann paths without suffix): {', '.join(missing[:5])}")
    if args.cats_from_status is not None:
        from ..corpora.status import add_status_cats

        try:
            add_status_cats(docs, args.cats_from_status, summary, source if source.is_dir() else source.parent)
        except CorpusFormatError:
            raise
        except ValueError as err:  # an event type no document has
            raise CLIError(f"--cats-from-status: {err}") from err
    return docs, summary


def _read_ade(
    args: argparse.Namespace, nlp: "Language", label_map: Dict[str, str], relation_map: Dict[str, str]
) -> Converted:
    from ..corpora.ade import read_ade
    from ..corpora.summary import CorpusFormatError

    from ..corpora.ade import DRUG_AE, DRUG_DOSE

    if args.head_types:
        raise CLIError("--head-types applies to brat input only (ADE relations are always headed by Drug)")
    if args.text_check != "tolerant":
        raise CLIError("--text-check applies to brat input only (the ADE corpus has no offsets to check)")
    relations = (DRUG_AE, DRUG_DOSE)
    crossed = [f"--label-map {old}" for old in label_map if old in relations]
    crossed += [f"--relation-map {old}" for old in relation_map if old not in relations]
    if crossed:
        raise CLIError(f"{', '.join(crossed)}: --label-map renames the concept types (Drug, Adverse_Effect, "
                       f"Dosage), --relation-map the relation types ({', '.join(relations)})")
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


def _spert_only(args: argparse.Namespace) -> None:
    """Options of the other formats are an error, not ignored."""
    for flag, given in (("--split", args.split), ("--splits", args.splits), ("--head-types", args.head_types),
                        ("--text-check", args.text_check != "tolerant")):
        if given:
            raise CLIError(f"{flag} does not apply to spert-json input")


def _read_spert(
    args: argparse.Namespace, path: Path, nlp: "Language", label_map: Dict[str, str], relation_map: Dict[str, str]
) -> Converted:
    from ..corpora.spert import read_spert
    from ..corpora.summary import CorpusFormatError

    _spert_only(args)
    if not path.is_file():
        raise CLIError(f"spert-json input must be a .json file (a folder of fold files needs --folds): {path}")
    try:
        return read_spert(
            path, nlp, label_map=label_map, relation_map=relation_map, lenient=args.lenient, spans_key=args.spans_key
        )
    except CorpusFormatError:
        raise
    except ValueError as err:  # a map entry naming no type of the file
        raise CLIError(str(err)) from err


def _convert_folds(
    args: argparse.Namespace, nlp: "Language", label_map: Dict[str, str], relation_map: Dict[str, str]
) -> int:
    """Every fold file of the folder INPUT to OUTPUT/fold_<i>/<part>.spacy, with its summary;
    with ``--dev-fraction`` each fold's train file also gives its dev.spacy."""
    from ..corpora.spert import fold_files

    if args.summary is not None:
        raise CLIError("--summary does not apply with --folds (each <part>.summary.md is written beside its .spacy)")
    if not args.input.is_dir():
        raise CLIError(f"--folds: INPUT must be a folder of <corpus>_split_<i>_<part>.json files: {args.input}")
    try:
        folds = fold_files(args.input)
    except ValueError as err:
        raise CLIError(str(err)) from err
    if not folds:
        raise CLIError(f"--folds: no <corpus>_split_<i>_<part>.json files in {args.input}")
    rows = [
        "| fold | part | documents | entities | relations | not converted | file |",
        "| ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    if args.dev_fraction is not None:
        given = [fold for fold, parts in folds.items() if "dev" in parts]
        if given:
            raise CLIError(f"--dev-fraction: folds {given} already have a dev file in {args.input}")
    for fold, parts in folds.items():
        converted = {part: _read_spert(args, path, nlp, label_map, relation_map) for part, path in parts.items()}
        for docs, _ in converted.values():
            tag_corpus(docs, args.corpus)
        for part, path in parts.items():
            docs, summary = converted[part]
            output = args.output / f"fold_{fold}" / f"{part}.spacy"
            if part == "train" and args.dev_fraction is not None:
                test = converted["test"][0] if "test" in converted else []
                rows += _write_train_and_dev(args, fold, docs, summary, test, path, output)
                continue
            _write(docs, summary, path, output, output.with_suffix(".summary.md"))
            totals = (summary.entities, summary.relations, summary.not_converted)
            counts = (len(docs), *(sum(c.values()) for c in totals))
            rows.append(f"| {fold} | {part} | " + " | ".join(map(str, counts)) + f" | {output} |")
    print("\n".join(rows))
    return 0


def _write_train_and_dev(
    args: argparse.Namespace,
    fold: int,
    docs: List["Doc"],
    summary: "ConversionSummary",
    test: List["Doc"],
    source: Path,
    output: Path,
) -> List[str]:
    """A fold's train file as train.spacy and dev.spacy (``--dev-fraction``): the draw is seeded
    by ``"<seed>:<fold>"`` (each fold its own draw) and keeps the fold's test sentences out of dev.
    train.summary.md accounts for the whole file and ends with how its documents were divided.
    The table's rows."""
    from spacy.tokens import DocBin

    from ..corpora.spert import split_dev

    try:
        train, dev, pairs = split_dev(docs, args.dev_fraction, f"{args.seed}:{fold}", held_out=test)
    except ValueError as err:
        raise CLIError(f"{source}: {err}") from err
    table = _write(train, summary, source, output, None)
    dev_path = output.with_name("dev.spacy")
    DocBin(store_user_data=True, docs=dev).to_disk(dev_path)
    lines = [
        "### Divided into train and dev (--dev-fraction)",
        "",
        f"A random {args.dev_fraction:g} of the documents (seed {args.seed}, drawn with random.Random"
        f"(\"{args.seed}:{fold}\")) went to {dev_path.name}, the rest to {output.name}. Documents with the same "
        f"words are drawn together ({pairs} such groups here); one whose words are also a test document's "
        "stays in train.",
        "",
        "| part | documents | entities | relations | file |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    rows = []
    for part, part_docs, path in (("train", train, output), ("dev", dev, dev_path)):
        counts = (len(part_docs), sum(len(d.spans[args.spans_key]) for d in part_docs),
                  sum(len(d._.relations) for d in part_docs))
        lines.append(f"| {part} | " + " | ".join(map(str, counts)) + f" | {path.name} |")
        # not converted: the source file's count, on the train row
        not_converted = sum(summary.not_converted.values()) if part == "train" else 0
        rows.append(f"| {fold} | {part} | " + " | ".join(map(str, (*counts, not_converted))) + f" | {path} |")
    output.with_suffix(".summary.md").write_text(table + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return rows
