"""``python -m spacy_softprompt <verb>``: one module per verb.

Each verb module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``; heavy imports (torch, transformers) stay inside ``run``
so ``--help`` is fast.

Errors: ``main`` turns the package's own errors and the common ones a user
causes (a file that is not a DocBin, a folder that is not a pipeline, a path
that cannot be read or written) into one ``error: ...`` line and exit code 2;
``--debug`` also prints the traceback. Anything else is a bug and keeps its
traceback. Verbs read pipelines with :func:`load_pipeline` and ``.spacy``
files with :func:`read_docbin`, so every verb reports these the same way.
"""
from __future__ import annotations

import argparse
import importlib
import math
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Union

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc
    from spacy.vocab import Vocab

VERBS = {
    "convert": "convert",
    "sample": "sample",
    "evaluate": "evaluate",
    "calibrate": "calibrate",
    "score-brat": "score_brat",
    "export-brat": "export_brat",
    "annotate": "annotate",
    "render": "render",
    "compare": "compare",
    "experiment": "experiment",
    "overlay": "overlay",
    "bench": "bench",
    "scaling": "scaling",
    "step-time": "step_time",
    "two-tasks": "two_tasks",
    "folds": "folds",
    "cats-curve": "cats_curve",
    "lodo": "lodo",
    "init-config": "init_config",
}


class CLIError(Exception):
    """A user-facing error: ``main`` prints it as one ``error: ...`` line, exit code 2."""


def at_least_one(value: str) -> int:
    """An argparse type: a count of one or more (a batch size of 0 makes ``nlp.pipe`` yield nothing)."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be at least 1")
    return number


def positive(value: str) -> float:
    """An argparse type: a density, a scale or a weight, above 0 and finite (inf failed deep inside)."""
    number = float(value)
    if not 0 < number < math.inf:
        raise argparse.ArgumentTypeError(f"{value}: must be a finite number above 0")
    return number


def gpu_id(value: str) -> int:
    """An argparse type: ``--gpu-id``, a GPU's number or -1 for the CPU (-7 ran on the CPU without a word)."""
    number = int(value)
    if number < -1:
        raise argparse.ArgumentTypeError(f"{value}: a GPU's number (0 or more), or -1 for the CPU")
    return number


def non_negative(value: str) -> int:
    """An argparse type: a seed, or a limit where 0 means all (a negative one sliced off the last items)."""
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value}: must be 0 or more")
    return number


def read_json(path: Path, what: str) -> Any:
    """A JSON file a verb reads (``what`` it should be, for the errors): a missing file or one that
    is not JSON is a CLIError naming it and the line."""
    import json

    if not path.is_file():
        raise CLIError(f"{path}: no such file ({what})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        where = f" (line {error.lineno}: {error.msg})" if isinstance(error, json.JSONDecodeError) else ""
        raise CLIError(f"{path}: not JSON{where}; expected {what}") from None


def markdown_output(value: str) -> Path:
    """``--output`` of a verb that writes a markdown report with its .json (and .png) beside it:
    a name ending in .json or .png was overwritten by its sibling (or overwrote the table)."""
    path = Path(value)
    if path.suffix.lower() in (".json", ".png"):
        raise argparse.ArgumentTypeError(f"{value}: name the markdown report (e.g. {path.with_suffix('.md')}); "
                                         "its .json and .png are written beside it")
    return path


def check_distinct(values: Sequence[Any], option: str) -> None:
    """A list option whose repeats would be run (or read back) and counted twice, e.g. ``--seeds 0 0``."""
    repeated = sorted({value for value in values if values.count(value) > 1}, key=str)
    if repeated:
        raise CLIError(f"{option} names {', '.join(map(str, repeated))} more than once: each would be counted twice")


def read_record(path: Path, what: str, required: Sequence[str] = ()) -> Dict[str, Any]:
    """A JSON object a verb reads back (a run's record, a fold's scores): one that is damaged (a
    run cut short while writing it), not an object or without the ``required`` keys is a
    CLIError naming it, not a traceback or a row of blanks."""
    record = read_json(path, what)
    missing = [key for key in required if key not in record] if isinstance(record, dict) else None
    if missing is None or missing:
        lacks = f"lacks {', '.join(missing)}" if missing else f"is a JSON {type(record).__name__}"
        raise CLIError(f"{path} {lacks}: not {what}; delete it to make it again")
    return record


def is_number(value: Any) -> bool:
    """A finite int or float read from a JSON report (json reads NaN and Infinity as floats)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_fraction(value: Any) -> bool:
    """A score as reports store it: a number in [0, 1] (a percentage would be tabulated 100 times too large)."""
    return is_number(value) and 0 <= value <= 1


def add_mapping_argument(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    """An ``OLD=NEW ...`` option (label and relation renames); parse it with ``parse_mapping``."""
    parser.add_argument(flag, nargs="+", action="extend", default=[], metavar="OLD=NEW", help=help)


def softprompt_names(nlp: "Language") -> List[str]:
    """The names of the pipeline's softprompt_ie components (a pipeline may hold several, or none)."""
    return [name for name in nlp.pipe_names if nlp.get_pipe_meta(name).factory == "softprompt_ie"]


def parse_mapping(pairs: List[str], option: str) -> Dict[str, str]:
    """``["A=B", ...]`` -> ``{"A": "B"}``."""
    mapping: Dict[str, str] = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            raise CLIError(f"{option} expects OLD=NEW pairs, got {pair!r}")
        if ":" in new or "=" in new:
            raise CLIError(f"{option} {pair}: a label cannot hold ':' or '=' (a type's description is keyed by "
                           "its label in the config, and a config key cannot hold them); qualify it with '/', "
                           f"e.g. {old}={new.replace(':', '/').replace('=', '/')}")
        if old in mapping:  # (the last one won, without a word)
            raise CLIError(f"{option} maps {old} twice ({old}={mapping[old]}, {pair})")
        mapping[old] = new
    return mapping


def check_output_files(*, inputs: Sequence[Optional[Path]] = (), **paths: Optional[Path]) -> None:
    """Output files (``option=path``; None: not asked; an upper-case name is a positional
    argument's, e.g. ``OUTPUT``) checked before the work that fills them: a folder in the way, or
    a file where its folder should be, failed only at the end, after a whole evaluation or a
    saved pipeline; two outputs on one path, or an output on one of the ``inputs``, replaced one
    another (or the data) without a word. A device (``/dev/null``) may take any output."""
    given = {option if option.isupper() else f"--{option.replace('_', '-')}": path
             for option, path in paths.items() if path is not None}
    files = {}
    for flag, path in given.items():
        if path.is_dir():
            raise CLIError(f"{flag} {path} is a folder: pass a file name")
        blocked = next((parent for parent in path.parents if parent.is_file()), None)
        if blocked is not None:
            raise CLIError(f"{flag} {path}: {blocked} is a file, not a folder")
        if path.is_char_device():
            continue
        if any(path.resolve() == Path(source).resolve() for source in inputs if source is not None):
            raise CLIError(f"{flag} {path} is an input of this command: it would be overwritten")
        same = next((other for other, file in files.items() if file == path.resolve()), None)
        if same is not None:
            raise CLIError(f"{same} and {flag} name one file, {path}: one would overwrite the other")
        files[flag] = path.resolve()


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


def load_pipeline(name: Union[str, Path], gpu_id: int = -1) -> "Language":
    """The pipeline a verb was given: a folder (e.g. ``training/model-best``) or the name
    of an installed pipeline package; ``gpu_id >= 0`` runs it on that GPU."""
    import spacy

    how = ("Pass the folder written by `spacy train` (e.g. training/model-best) "
           "or the name of an installed pipeline package.")
    path = Path(name)
    if path.exists():
        if not path.is_dir() or not (path / "config.cfg").is_file() or not (path / "meta.json").is_file():
            raise CLIError(f"{path} is not a spaCy pipeline folder (it needs config.cfg and meta.json). {how}")
    elif not spacy.util.is_package(str(name)):
        raise CLIError(f"pipeline not found: {name} is neither a folder nor an installed package. {how}")
    if gpu_id >= 0:
        try:
            spacy.require_gpu(gpu_id)
        except ValueError as err:
            raise CLIError(f"cannot use GPU {gpu_id} ({err}); run with --gpu-id -1 for CPU.") from err
    try:
        return spacy.load(path if path.exists() else str(name))
    except OSError as err:
        if _spacy_code(err) in ("E050", "E053"):
            raise CLIError(f"cannot load pipeline {name}: {err}. {how}") from err
        raise


def read_docbin(path: Path, vocab: Optional["Vocab"] = None) -> List["Doc"]:
    """The documents of a ``.spacy`` file, with their user data (relations, doc ids)."""
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    if not path.is_file():
        what = "is a folder" if path.is_dir() else "not found"
        raise CLIError(f"{path}: {what}. Pass a .spacy (DocBin) file, e.g. one written by "
                       "`python -m spacy_softprompt convert`.")
    try:
        return list(DocBin(store_user_data=True).from_disk(path).get_docs(vocab or Vocab()))
    except ValueError as err:  # spaCy's E1014, or msgpack/zlib errors on other binary files
        raise CLIError(f"{path} is not a DocBin (.spacy) file ({_first_line(err)}). Pass a file written by "
                       "`python -m spacy_softprompt convert` or by DocBin.to_disk.") from err


def gold_spans_key(docs: Sequence["Doc"], path: Path, requested: Optional[str]) -> str:
    """The span group to read a gold file's concepts from: ``--spans-key`` when given, which
    some document must have (a typo would read every document's ``doc.ents`` in silence), else
    the default (documents without it are read from ``doc.ents``)."""
    from ..relations import DEFAULT_SPANS_KEY

    if requested is None:
        return DEFAULT_SPANS_KEY
    if not any(requested in doc.spans for doc in docs):
        groups = sorted({key for doc in docs for key in doc.spans})
        raise CLIError(f"--spans-key {requested!r}: no document of {path} has that span group (its groups: "
                       f"{', '.join(groups) or 'none'}); leave it out to read the default, or doc.ents")
    return requested


# spaCy errors that a user causes, and what to do about each (raised by code outside the helpers above)
SPACY_ERRORS = {
    "E050": "pass a pipeline folder (e.g. training/model-best) or the name of an installed pipeline package",
    "E053": "pass the folder written by `spacy train` (e.g. training/model-best), which holds meta.json",
    "E1014": "pass a .spacy file written by `python -m spacy_softprompt convert` or by DocBin.to_disk",
}


def user_message(err: BaseException) -> Optional[str]:
    """The one-line message for an error the user can fix; None for a bug (keep its traceback)."""
    from ..relations import RelationAlignmentError

    package_errors: tuple = (CLIError, RelationAlignmentError)
    # the component's errors: their modules import torch, so only look where they are loaded
    for module, names in (("artifact", ("BackboneMismatch", "DamagedArtifact")), ("backbone", ("BackboneNotFound",))):
        loaded = sys.modules.get(f"{__package__.rpartition('.')[0]}.{module}")
        package_errors += tuple(getattr(loaded, name) for name in names if hasattr(loaded, name))
    code = _spacy_code(err)
    if isinstance(err, package_errors) or (isinstance(err, (ValueError, OSError)) and _raised_in_package(err)):
        return _first_line(err, join=True)
    if code in SPACY_ERRORS:
        return f"{_first_line(err)}; {SPACY_ERRORS[code]}"
    if isinstance(err, OSError) and err.filename is not None:
        return (f"{err.strerror or type(err).__name__}: {err.filename}. Check that the path exists and that "
                "you may read it, or, for an output, that its folder can be created and written.")
    return None


def _spacy_code(err: BaseException) -> Optional[str]:
    message = str(err)
    if message.startswith("[E") and "]" in message:
        return message[1 : message.index("]")]
    return None


def _raised_in_package(err: BaseException) -> bool:
    """Raised by this package's own code (its messages are written for users)."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    package = Path(__file__).resolve().parents[1]
    return Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(package)


def _first_line(err: BaseException, join: bool = False) -> str:
    """The message on one line: its first line, or (``join``) every line joined with ``; ``."""
    lines = [line.strip().removeprefix("- ") for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    if not join:
        return lines[0]
    out = lines[0]
    for line in lines[1:]:
        out += (" " if out.endswith(":") else "; ") + line
    return out


def quiet_other_libraries(debug: bool) -> None:
    """Other libraries' debug output stays off unless ``--debug``: medspaCy's PyRuSH logs every
    sentence at DEBUG through loguru, whose default handler prints everything on stderr."""
    import logging

    if debug:
        logging.basicConfig(level=logging.DEBUG)
    try:
        from loguru import logger
    except ImportError:
        return
    logger.remove()
    logger.add(sys.stderr, level="DEBUG" if debug else "WARNING")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m spacy_softprompt",
        description="Clinical concept and relation extraction with learned prompts, for spaCy.",
    )
    debug_help = "show the traceback of an error, and other libraries' debug logging"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    sub = parser.add_subparsers(dest="verb", metavar="<verb>")
    for verb, module_name in VERBS.items():
        module = importlib.import_module(f"{__name__}.{module_name}")
        p = sub.add_parser(verb, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        # SUPPRESS: given after the verb it sets args.debug, otherwise the top-level default stays
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "verb", None):
        parser.print_help()
        return 2
    quiet_other_libraries(args.debug)
    try:
        return int(args._run(args) or 0)
    except Exception as err:
        message = user_message(err)
        if message is None:
            raise
        if args.debug:
            traceback.print_exc()
        print(f"error: {message}", file=sys.stderr)
        return 2
