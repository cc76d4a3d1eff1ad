"""``evaluate``: run a trained pipeline on gold documents and score it, strict and lenient.

The gold texts are run through the pipeline from scratch (nothing of the gold
annotation reaches it), then scored with :mod:`spacy_softprompt.scoring`; a
component that classifies documents is also scored on the gold ``doc.cats``
(spaCy's ``cats_*`` keys, as its own ``score`` gives them).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Sequence, Tuple, Union

from ..relations import DEFAULT_SPANS_KEY, concept_spans
from . import (CLIError, at_least_one, check_output_files, gpu_id, load_pipeline, read_docbin, softprompt_names,
               write_scores)

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc

HELP = "Score a trained pipeline on gold data (.spacy): concepts and relations, strict and lenient; document classes."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", help="pipeline folder (e.g. training/model-best) or package name")
    parser.add_argument("data", type=Path, help="gold documents, a DocBin .spacy file saved with user data")
    parser.add_argument("--output", type=Path, help="write the scores as JSON here")
    parser.add_argument("--markdown", type=Path, help="write the score table as markdown here")
    parser.add_argument("--gpu-id", type=gpu_id, default=-1, help="GPU to run on; -1 (default) for CPU")
    parser.add_argument(
        "--spans-key",
        help="span group holding the predicted concepts (default: the softprompt_ie component's, "
        f"else {DEFAULT_SPANS_KEY!r}; doc.ents when the pipeline writes no span group)",
    )
    parser.add_argument("--batch-size", type=at_least_one, default=16, help="documents per nlp.pipe batch")
    parser.add_argument(
        "--concept-types",
        nargs="+",
        metavar="TYPE",
        help="score only these concept types and relations between them (cross-corpus transfer)",
    )
    parser.add_argument(
        "--corpus",
        metavar="NAME",
        help="tag every text with this corpus (doc._.corpus) before the pipeline runs, so a multi-corpus "
        "component asks only that corpus's types (its types added by add_label(..., corpus=NAME) included)",
    )
    parser.add_argument(
        "--thresholds", nargs="+", type=probability, metavar="P",
        help="also score the concepts at each of these probabilities, each for every type (one prediction pass, "
        "down to the lowest; the main scores stay at the component's thresholds): a table after the main one, "
        "by_threshold in --output",
    )


def probability(value: str) -> float:
    """An argparse type: a concept threshold, in (0, 1] as the component's own."""
    p = float(value)
    if not 0.0 < p <= 1.0:
        raise argparse.ArgumentTypeError(f"{value}: a threshold is a probability in (0, 1]")
    return p


def run(args: argparse.Namespace) -> int:
    check_output_files(inputs=[args.data], output=args.output, markdown=args.markdown)
    scores = score_file(args.pipeline, args.data, gpu_id=args.gpu_id, spans_key=args.spans_key,
                        batch_size=args.batch_size, concept_types=args.concept_types, corpus=args.corpus,
                        thresholds=args.thresholds or ())
    write_scores(scores, args.output, args.markdown)
    return 0


def score_file(pipeline: Union[str, Path], data: Path, *, gpu_id: int = -1, spans_key: Optional[str] = None,
               batch_size: int = 16, concept_types: Optional[Sequence[str]] = None,
               corpus: Optional[str] = None, thresholds: Sequence[float] = ()) -> Dict[str, Any]:
    """Load ``pipeline``, run it on the texts of ``data``, print and return the scores (and the
    speed in words per second). The experiment verbs call it in their own process.

    ``thresholds``: the concepts are also scored at each of these probabilities, from one pass
    that keeps every candidate down to the lowest: ``scores["by_threshold"][str(p)]`` (concepts
    only; relations are as the component's ``relation_threshold`` gives them)."""
    from tqdm import tqdm

    from ..scoring import format_table, score_concepts_and_relations

    nlp = load_pipeline(pipeline, gpu_id)
    if corpus is not None:
        _check_corpus(nlp, str(pipeline), corpus)
    gold = read_docbin(data, nlp.vocab)
    if not gold:
        raise CLIError(f"{data} holds no documents: nothing to score")
    key = concepts_key(nlp, str(pipeline), spans_key)
    if softprompt_names(nlp):
        _check_gold_group(gold, key, data)
    corpus_types = corpus_types_of(nlp, gold, key)
    if concept_types:
        known = {label for name in softprompt_names(nlp) for label in nlp.get_pipe(name).labels}
        known |= {span.label_ for doc in gold for span in concept_spans(doc, key)}
        unknown = sorted(set(concept_types) - known)
        if unknown:
            raise CLIError(f"--concept-types {' '.join(unknown)}: neither the pipeline nor {data} has that type "
                           f"(they have {', '.join(sorted(known)) or 'none'})")
    own = _lower_thresholds(nlp, min(thresholds)) if thresholds else None

    start = time.perf_counter()
    batches = nlp.pipe((pipeline_input(nlp, doc.text, corpus) for doc in gold), batch_size=batch_size)
    predicted = list(tqdm(batches, total=len(gold), desc="evaluate", unit="doc", file=sys.stderr))
    seconds = time.perf_counter() - start
    if spans_key and predicted and not any(spans_key in doc.spans for doc in predicted):
        raise CLIError(f"--spans-key {spans_key!r}: no predicted document has that span group; "
                       f"the pipeline writes {sorted({k for d in predicted for k in d.spans}) or 'none'}.")
    if not softprompt_names(nlp):  # a stock pipeline's --spans-key is known to be written only now
        _check_gold_group(gold, key, data)

    by_threshold = {}
    for threshold in sorted(set(thresholds)):
        kept = [concepts_above(doc, key, threshold) for doc in predicted]
        by_threshold[str(threshold)] = score_concepts_and_relations(zip(kept, gold), spans_key=key,
                                                                    concept_types=concept_types,
                                                                    corpus_types=corpus_types or None)
    if own is not None:
        predicted = [concepts_above(doc, key, *own) for doc in predicted]
    scores: Dict[str, Any] = score_concepts_and_relations(zip(predicted, gold), spans_key=key,
                                                          concept_types=concept_types,
                                                          corpus_types=corpus_types or None)
    if by_threshold:
        scores["by_threshold"] = by_threshold
    scores.update(_class_scores(nlp, predicted, gold))
    words = sum(len(doc) for doc in predicted)
    scores["documents"] = len(gold)
    scores["speed"] = words / seconds if seconds > 0 else 0.0

    print(format_table(scores))
    print(f"\n{len(gold)} documents, {scores['speed']:.0f} words/s")
    return scores


def _class_scores(nlp: "Language", predicted: Sequence["Doc"], gold: Sequence["Doc"]) -> Dict[str, Any]:
    """spaCy's ``cats_*`` keys where a component classifies documents and the gold Docs have
    classes, counted as the component's ``score`` counts them (the last such component's)."""
    from spacy.training import Example

    from ..scoring import cats_scores

    scores: Dict[str, Any] = {}
    if not any(doc.cats for doc in gold):
        return scores
    examples = [Example(p, g) for p, g in zip(predicted, gold)]
    for pipe in (nlp.get_pipe(name) for name in softprompt_names(nlp)):
        if pipe.cat_labels:
            scores.update(cats_scores(examples, pipe.cat_labels, pipe.cfg["exclusive_classes"]))
    return scores


def _lower_thresholds(nlp: "Language", lowest: float) -> Tuple[float, Dict[str, float]]:
    """Let every softprompt_ie component keep every concept down to ``lowest`` (each --thresholds
    value applies to every type); their (one) own threshold and label thresholds, at which the
    main scores are counted."""
    pipes = [nlp.get_pipe(n) for n in softprompt_names(nlp)]
    if not pipes:
        raise CLIError("--thresholds: the pipeline has no softprompt_ie component whose threshold could be varied")
    if any(pipe.relation_labels for pipe in pipes):
        raise CLIError("--thresholds varies the concept threshold in one pass, but this pipeline has relation types, "
                       "whose triggers and arguments are concepts at the component's threshold: evaluate a copy of "
                       "the pipeline per threshold (components.<name>.threshold in its config.cfg)")
    own = {(pipe.cfg["threshold"], tuple(sorted(pipe.cfg["label_thresholds"].items()))) for pipe in pipes}
    if len(own) > 1:
        raise CLIError(f"--thresholds: the softprompt_ie components have different thresholds ({sorted(own)})")
    threshold, labels = own.pop()
    for pipe in pipes:
        pipe.cfg["threshold"] = min(lowest, threshold, *(p for _, p in labels))
        pipe.cfg["label_thresholds"] = {}
    return threshold, dict(labels)


def concepts_above(doc: "Doc", key: str, threshold: float,
                   label_thresholds: Optional[Mapping[str, float]] = None) -> "Doc":
    """A copy of ``doc`` whose span group ``key`` (what is scored) keeps the concepts scored at
    or above ``threshold``, or their label's own in ``label_thresholds``."""
    from spacy.tokens import Span

    from ..calibration import at_least
    from ..relations import set_concepts

    group = doc.spans[key]
    copy = doc.copy()
    own = label_thresholds or {}
    kept = [(span, score) for span, score in zip(group, group.attrs["scores"])
            if at_least(score, own.get(span.label_, threshold))]
    set_concepts(copy, [Span(copy, s.start, s.end, label=s.label_) for s, _ in kept], [score for _, score in kept],
                 key, set_ents=False)
    return copy


def _check_gold_group(gold: Sequence["Doc"], key: str, data: Path) -> None:
    """Gold whose concepts sit in another span group than the pipeline's would be read from
    doc.ents (nested concepts lost): refused, naming both."""
    groups = sorted({group for doc in gold for group, spans in doc.spans.items() if len(spans)})
    if groups and not any(key in doc.spans for doc in gold):
        raise CLIError(f"{data} has no span group {key!r}, which the pipeline writes (its groups: {', '.join(groups)}): "
                       "its concepts would be read from doc.ents, nested ones lost. Convert it with "
                       f"--spans-key {key}, or pass --spans-key for a pipeline that writes {groups[0]!r}.")


def corpus_types_of(nlp: "Language", gold: Sequence["Doc"], key: str) -> Dict[str, set]:
    """Corpus -> the concept types a gold Doc tagged with it is scored on: what the pipeline's
    components learned for that corpus and what its gold Docs hold (a type the training sample
    lacked still counts its misses). As the component's own ``score()`` does in training, another
    corpus's types, which such a Doc does not annotate, are not counted as errors."""
    from ..relations import concept_spans, corpus_of

    types: Dict[str, set] = {}
    for name in softprompt_names(nlp):
        for corpus, labels in nlp.get_pipe(name).schema.corpora.items():
            types.setdefault(corpus, set()).update(labels)
    for doc in gold:
        if corpus_of(doc) in types:
            types[corpus_of(doc)].update(span.label_ for span in concept_spans(doc, key))
    return types


def _check_corpus(nlp: "Language", name: str, corpus: str) -> None:
    """``--corpus`` names a corpus the pipeline was trained on, where it has several: an unknown
    name would silently ask every type."""
    known = {c for pipe in softprompt_names(nlp) for c in nlp.get_pipe(pipe).schema.corpora}
    if known and corpus not in known:
        raise CLIError(f"--corpus {corpus!r}: the pipeline {name} knows the corpora {', '.join(sorted(known))}; "
                       "an unknown one would be asked every type")


def pipeline_input(nlp: "Language", text: str, corpus: Optional[str]) -> Any:
    """The text as the pipeline takes it: a tagged Doc for ``--corpus``, else the text."""
    if corpus is None:
        return text
    doc = nlp.make_doc(text)
    doc._.corpus = corpus
    return doc


def concepts_key(nlp: "Language", name: str, requested: Optional[str]) -> str:
    """The span group to score, checked against what the pipeline writes, so that a typo in
    ``--spans-key`` or a pipeline without concepts is an error and not a silent score of 0."""
    extractors = softprompt_names(nlp)
    if extractors:
        written = {nlp.get_pipe(pipe).cfg["spans_key"] for pipe in extractors}
        key = requested or (sorted(written)[0] if len(written) == 1 else DEFAULT_SPANS_KEY)
        if key not in written:
            raise CLIError(
                f"--spans-key {key!r}: the pipeline {name} writes its concepts to "
                f"{', '.join(map(repr, sorted(written)))}; pass --spans-key {sorted(written)[0]}."
            )
        return key
    if not nlp.pipe_names:
        raise CLIError(
            f"the pipeline {name} has no components, so it predicts nothing; evaluate a pipeline with "
            "softprompt_ie, e.g. training/model-best after `spacy train`."
        )
    key = requested or DEFAULT_SPANS_KEY
    print(
        f"warning: the pipeline {name} has no softprompt_ie component ({', '.join(nlp.pipe_names)}): its "
        f"concepts are read from doc.spans[{key!r}] where its components write it, else from doc.ents, "
        "and its relations from doc._.relations (none unless a component sets them).",
        file=sys.stderr,
    )
    return key
