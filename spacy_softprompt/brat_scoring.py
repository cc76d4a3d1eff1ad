"""``score-brat``'s half of the scorer: raw ``.ann`` offsets under the official n2c2 2018 track 2 rules.

The package's brat converter (``corpora/brat.py``) makes Docs for training and
may adjust spans (whitespace at the edges, token boundaries). The official
script compares the numbers written in the files, so ``score-brat`` reads them
here, and nowhere else, exactly as that script does, and counts them with
:func:`.scoring.count_matches` under the ``"official"`` rule:

- Only ``.ann`` files are read; the ``.txt`` files are not needed. Documents are
  the ``*.ann`` file names directly in each folder (not in subfolders), paired by
  name; only names present in both folders are scored. A gold file without a
  system file is skipped, as the script does (``count_missing=True`` counts its
  gold items as FN instead).
- Lines are read with universal newlines and stripped. A line starting with
  ``T`` is a concept: id, then type and offsets, then the text (ignored).
  A discontinuous concept ``0 5;9 14`` is the covering span ``0 14``: the first
  offset written and the last one, with no other change (the script reads the
  second and the last space-separated field; for 4 or more fragments it
  misreads the line, we keep the covering span).
- A line starting with ``R`` is a relation: id, then ``type Arg1:Tx Arg2:Ty``;
  the first argument written is the head, whatever its role name. ``E``, ``A``,
  ``*``, ``#`` and other lines are not scored (the script reads none of them);
  an ``R`` argument naming an event (``Arg1:E3``), where the script stops with
  a KeyError, is read as that event's trigger concept.
- An id defined twice keeps its last definition at the place of its first
  (the script stores annotations in a dict keyed by id); relations see every
  concept of the file, wherever it is defined.
- Strict: identical offsets and type; lenient: overlap and type; the pare-down
  visits system items in file order. Duplicate items with different ids stay
  distinct: two identical system concepts give one TP and one ignored, two
  identical gold concepts give one TP and one FN (as in the script).

Where the script crashes or misreads (a T line with no offsets or no text
field, a relation to an unknown id, a BOM before the first line), we read what
is readable and report ``file:line: problem`` (a BOM is dropped and reported).
"""
from __future__ import annotations

import glob
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from .scoring import _Arg, _Item, new_tallies, scores_from_tallies, tally


class AnnFile(NamedTuple):
    """What the official script reads from one ``.ann`` file, in file order."""

    concepts: Dict[str, _Arg]  # id -> (start, end, type)
    relations: Dict[str, Tuple[str, str, str]]  # id -> (type, head id, tail id)
    problems: List[str]
    event_arguments: int = 0  # arguments of E lines: not scored (the official rules score T and R lines)


def _offsets(tokens: List[str]) -> Optional[Tuple[int, int]]:
    """``["Drug", "0", "5;9", "14"]`` -> (0, 14): the second field and the last, as the script reads them."""
    if len(tokens) < 3:
        return None
    try:
        return int(tokens[1]), int(tokens[-1])
    except ValueError:
        return None


# brat lines the scores do not use: attributes, normalizations, notes, equivalences (and events: only as triggers)
OTHER_BRAT_LINES = ("A", "M", "N", "#", "*", "E")


def read_ann(path: Path) -> AnnFile:
    """T and R lines of one ``.ann`` file with their offsets as written."""
    concepts: Dict[str, _Arg] = {}
    relation_lines: List[Tuple[int, str]] = []
    problems: List[str] = []
    triggers: Dict[str, str] = {}
    event_arguments = 0
    try:
        lines = path.read_text(encoding="utf-8").split("\n")  # as readlines: \u2028 and the like stay in a line
    except UnicodeDecodeError as error:
        return AnnFile({}, {}, [f"{path}: not UTF-8 text (byte {error.start}: {error.reason}); nothing in it is scored"])
    if lines and lines[0].startswith("\ufeff"):
        problems.append(f"{path}:1: byte order mark ignored (the official script skips that line)")
        lines[0] = lines[0][1:]
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if line.startswith("T"):
            fields = line.split("\t")
            tokens = fields[1].split(" ") if len(fields) > 1 else []
            offsets = _offsets(tokens)
            if offsets is None:
                problems.append(f"{path}:{number}: not a text-bound annotation (id, type and offsets): {line!r}")
                continue
            if len(tokens) > 5:  # four or more fragments: the script reads such a line otherwise
                problems.append(f"{path}:{number}: four or more fragments, which the official script misreads; "
                                f"scored as the covering span {offsets[0]}-{offsets[1]}")
            concepts[fields[0]] = _Arg(*offsets, tokens[0])
        elif line.startswith("R"):
            relation_lines.append((number, line))
        elif line.startswith("E") and "\t" in line:  # only to resolve R arguments that name events
            trigger, *arguments = line.split("\t")[1].split(" ")
            triggers[line.split("\t")[0]] = trigger.partition(":")[2]
            event_arguments += sum(bool(argument) for argument in arguments)
        elif line and not line.startswith(OTHER_BRAT_LINES):
            problems.append(f"{path}:{number}: not a brat annotation line, not scored: {line[:60]!r}")
    relations: Dict[str, Tuple[str, str, str]] = {}
    for number, line in relation_lines:
        fields = line.split("\t")
        tokens = fields[1].split(" ") if len(fields) > 1 else []
        if len(tokens) != 3 or ":" not in tokens[1] or ":" not in tokens[2]:
            problems.append(f"{path}:{number}: not a relation (id, type Arg1:id Arg2:id): {line!r}")
            continue
        head, tail = (triggers.get(t.partition(":")[2], t.partition(":")[2]) for t in tokens[1:])
        unknown = [i for i in (head, tail) if i not in concepts]
        if unknown:
            problems.append(f"{path}:{number}: relation to unknown id {', '.join(unknown)}; not scored")
            continue
        relations[fields[0]] = (tokens[0], head, tail)
    return AnnFile(concepts, relations, problems, event_arguments)


def _by_label(ann: AnnFile) -> Dict[str, Dict[str, List[_Item]]]:
    """``{"concepts": {type: [item, ...]}, "relations": {type: [...]}}`` in file order."""
    items: Dict[str, Dict[str, List[_Item]]] = {"concepts": defaultdict(list), "relations": defaultdict(list)}
    for arg in ann.concepts.values():
        items["concepts"][arg.type].append((arg,))
    for rtype, head, tail in ann.relations.values():
        items["relations"][rtype].append((ann.concepts[head], ann.concepts[tail]))
    return items


def score_ann_pairs(pairs: Sequence[Tuple[Optional[AnnFile], AnnFile]]) -> Dict[str, Any]:
    """Official counts for (system, gold) pairs; a None system found nothing."""
    tallies = new_tallies()
    empty = AnnFile({}, {}, [])
    for system, gold in pairs:
        system_items, gold_items = _by_label(system or empty), _by_label(gold)
        for target in ("concepts", "relations"):
            for label in system_items[target].keys() | gold_items[target].keys():
                system_seq, gold_seq = system_items[target].get(label, []), gold_items[target].get(label, [])
                tally(tallies, target, label, system_seq, gold_seq, "official")
    return scores_from_tallies(tallies)


def _ann_names(folder: Path) -> List[str]:
    """``*.ann`` names directly in ``folder``, as the script's ``glob`` finds them."""
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(str(folder)), "*.ann")))


def score_brat_folders(gold_dir: Path, system_dir: Path, count_missing: bool = False) -> Dict[str, Any]:
    """Score a folder of system ``.ann`` files against a folder of gold ones (see the module
    docstring). Returns :func:`.scoring.scores_from_tallies`'s keys plus ``documents``,
    ``missing_in_system``, ``only_in_system`` (document names without ``.ann``),
    ``text_differs`` (pairs whose ``.txt`` files both exist and differ), ``problems`` and
    ``unscored_event_arguments`` (the gold E lines' arguments, which no score counts)."""
    gold_names, system_names = set(_ann_names(gold_dir)), set(_ann_names(system_dir))
    scored = sorted(gold_names & system_names) + (sorted(gold_names - system_names) if count_missing else [])
    pairs, problems, text_differs = [], [], []
    for name in scored:
        gold = read_ann(gold_dir / name)
        system = read_ann(system_dir / name) if name in system_names else None
        problems += gold.problems + (system.problems if system else [])
        pairs.append((system, gold))
        texts = [folder / (name[: -len(".ann")] + ".txt") for folder in (gold_dir, system_dir)]
        if system and all(t.is_file() for t in texts) and texts[0].read_bytes() != texts[1].read_bytes():
            text_differs.append(name[: -len(".ann")])
    scores = score_ann_pairs(pairs)
    scores["documents"] = len(pairs)
    scores["missing_in_system"] = [n[: -len(".ann")] for n in sorted(gold_names - system_names)]
    scores["only_in_system"] = [n[: -len(".ann")] for n in sorted(system_names - gold_names)]
    scores["text_differs"] = text_differs
    scores["problems"] = problems
    scores["unscored_event_arguments"] = sum(gold.event_arguments for _, gold in pairs)
    return scores
