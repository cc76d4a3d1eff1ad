"""``render``: show a pipeline's concepts and relations for a text, in the terminal or as HTML."""
from __future__ import annotations

import argparse
import html
from pathlib import Path
from typing import List

from ..relations import CONTEXT_FLAGS
from . import CLIError, load_pipeline

HELP = "run a pipeline on a text and show concepts and relations (terminal, or --html page)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", help="pipeline folder (e.g. training/model-best) or installed package name")
    parser.add_argument("text", help="the text to annotate")
    parser.add_argument("--html", type=Path, metavar="FILE", help="also write a self-contained HTML page")
    parser.add_argument("--spans-key", help="span group holding the concepts (default: the one the pipeline writes)")
    parser.add_argument(
        "--context",
        action="store_true",
        help="also run medspaCy's sentence splitter and ConText and show negated/uncertain concepts "
        "(needs the medspacy extra)",
    )


def run(args: argparse.Namespace) -> int:
    from .evaluate import concepts_key

    nlp = load_pipeline(args.pipeline)
    key = concepts_key(nlp, args.pipeline, args.spans_key)
    if args.context:
        add_context(nlp, key)
    doc = nlp(args.text)
    print(terminal_view(doc, key))
    if args.html is not None:
        args.html.parent.mkdir(parents=True, exist_ok=True)
        args.html.write_text(html_page(doc, key), encoding="utf-8")
        print(f"\nHTML written to {args.html}")
    return 0


PALETTE = ["#7aecec", "#feca74", "#aa9cfc", "#ff9561", "#bfeeb7", "#e4e7d2", "#c887fb", "#9cc9cc", "#ffeb80", "#ff8197"]


def add_context(nlp, spans_key: str) -> None:
    """medspaCy's sentence splitter before, ConText after the extractor, reading the span group."""
    try:
        import medspacy  # noqa: F401  (registers the medspacy_* factories)
    except ImportError as err:
        raise CLIError(
            "--context needs medspaCy: pip install 'spacy_softprompt[medspacy]' (or make install)"
        ) from err
    nlp.add_pipe("medspacy_pyrush", first=True)
    nlp.add_pipe("medspacy_context", config={"input_span_type": "group", "span_group_name": spans_key})


def _modifiers(span) -> str:
    flags = [name for name in CONTEXT_FLAGS if span.has_extension(name) and getattr(span._, name)]
    return ("  [" + ", ".join(f[3:] for f in flags) + "]") if flags else ""


def _concepts(doc, key: str):
    from ..relations import concept_scores, concept_spans

    group = concept_spans(doc, key)
    return list(zip(group, concept_scores(doc, key) or [1.0] * len(group)))


def terminal_view(doc, key: str) -> str:
    """The text with [concept]{Label} marks (non-overlapping ones), then every concept and relation."""
    marked, cursor = [], 0
    for ent in doc.ents:
        marked.append(doc.text[cursor : ent.start_char])
        marked.append(f"[{ent.text}]{{{ent.label_}}}")
        cursor = ent.end_char
    marked.append(doc.text[cursor:])
    lines: List[str] = ["".join(marked), "", "Concepts:"]
    concepts = _concepts(doc, key)
    width = max([len(s.text) for s, _ in concepts] + [4])
    lines += [
        f"  {s.text:<{width}}  {s.label_:<16} {score:.2f}{_modifiers(s)}" for s, score in concepts
    ] or ["  (none)"]
    lines += ["", "Relations:"]
    lines += [
        f"  {r.head.text} ({r.head.label_}) --{r.label}--> {r.tail.text} ({r.tail.label_})  {r.score:.2f}"
        for r in doc._.relations
    ] or ["  (none)"]
    return "\n".join(lines)


def html_page(doc, key: str) -> str:
    """displaCy's span view of every concept (overlaps shown stacked) plus a relation table."""
    from spacy import displacy

    labels = sorted({span.label_ for span, _ in _concepts(doc, key)})
    colors = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}
    spans_html = displacy.render(doc, style="span", options={"spans_key": key, "colors": colors}, page=False)
    rows = "\n".join(
        f"<tr><td>{html.escape(r.head.text)}</td><td>{html.escape(r.head.label_)}</td>"
        f"<td><b>{html.escape(r.label)}</b></td><td>{html.escape(r.tail.text)}</td>"
        f"<td>{html.escape(r.tail.label_)}</td><td>{r.score:.2f}</td></tr>"
        for r in doc._.relations
    ) or '<tr><td colspan="6">no relations</td></tr>'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>spacy_softprompt</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 60em; }}
table {{ border-collapse: collapse; margin-top: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 0.3em 0.8em; text-align: left; }}
th {{ background: #f3f3f3; }}
</style></head><body>
<h2>Concepts</h2>
{spans_html}
<h2>Relations</h2>
<table><tr><th>head</th><th>head type</th><th>relation</th><th>tail</th><th>tail type</th><th>score</th></tr>
{rows}
</table>
</body></html>
"""
