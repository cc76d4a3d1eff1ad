"""``cats-curve``: a learning curve of document classification (``doc.cats``), softprompt_ie
against spaCy's stock ``textcat``, at several training sizes and seeds (issue 14 item 4).

For each size (a number of training documents, or ``all``) and seed, the training subsample is
the first N documents of one seeded shuffle of the train file, written once to
``RUNS/data/train-<size>-seed<seed>.spacy``; every system trains on that same file, so systems
differ only in the model, and a smaller size is a subset of a larger one (the curve measures
more data, not other data). Each system then trains with :func:`runs.train` (model-best on the
dev set's ``cats_score`` alone) and is scored on the test file by :func:`runs.evaluate_spacy`
(spaCy's ``textcat`` metrics, the same scorer for both kinds of pipeline).

softprompt_ie learns the classes only (:data:`CLASSIFICATION_ONLY`), and predicts one class of N
(``exclusive_classes``), like the stock exclusive textcat; ``--with-concepts`` adds a variant of a
softprompt_ie system that learns the documents' concept types beside the classes
(:data:`WITH_CONCEPTS`: does the span supervision help the classes?). A run is done when its ``run.json``
exists: an interrupted curve resumes where it stopped (a record made with other steps, another
config for its system or other documents is refused, not mixed in); the table, JSON and plot are
rewritten after every run.

``--folds K`` cross-validates instead of using the files' own split, for test splits too small
to tell systems apart (37 notes: one note is 2 to 4 macro points): the train, dev and test files
are pooled and dealt into K folds stratified by class (:func:`stratified_folds`); fold i's runs
are tested on fold i, select model-best on fold i+1 and draw their training subsample from the
other K-2 folds. Every document is then tested once per seed, and the report adds macro F1 over
all of them (:func:`pooled_scores`, spaCy's exclusive-class counting over the pooled predictions)
and each system paired note by note with the last of ``--systems`` (:func:`paired_counts`, an
exact McNemar test: is one right where the other is wrong more often than a coin would say?).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from . import (CLIError, at_least_one, check_distinct, check_output_files, gpu_id, markdown_output, non_negative,
               read_docbin)
from .runs import (backbone_settings, config_sha1, corpus_settings, evaluate_spacy, finished_run, jsonl_log_settings,
                   load_systems, matplotlib_available, mean_sd, require_files, short_sha1, top_class, train,
                   write_run_config)

HELP = ("learning curve of document classes: softprompt_ie configs and spaCy's textcat trained on seeded "
        "subsamples of N documents, scored with spaCy's textcat metrics; table, JSON and plot")

#: ``[initialize.components.softprompt_ie]`` of a classification-only run. The corpus docs also
#: carry concepts and relations; with no concept labels and an empty relation schema given at
#: initialization, the component builds no concept or relation query (labels are only inferred
#: from the data when none are given: ``TaskSchema.infer``), so it learns and predicts the
#: classes alone, the same task as the stock textcat, and each step is cheaper. Chosen over a
#: copy of the docs without spans: nothing is rewritten, every system reads one training file.
CLASSIFICATION_ONLY: Dict[str, Any] = {"labels": [], "relation_schema": {}}
#: ``[initialize.components.softprompt_ie]`` of a ``--with-concepts`` run: the concept types are
#: inferred from the training documents' spans, relations are left out (their queries would cost
#: a pass per trigger), so each window is asked its concept queries (one for strategy none or a
#: packed config, one per type otherwise) beside its class queries
WITH_CONCEPTS: Dict[str, Any] = {"relation_schema": {}}
#: the name of a system's ``--with-concepts`` variant: ``<system>+concepts``
CONCEPTS_SUFFIX = "+concepts"
#: model selection on the dev set: spaCy's cats_score (macro F1 for exclusive classes) alone
SCORE_WEIGHTS = {"cats_score": 1.0}
HINT = "run `spacy project run convert-sdoh-status` (convert brat --cats-from-status Tobacco)"
SMOKING = Path("corpus/sdoh-smoking")
#: the one dealing of the documents into folds, whatever the run's seed (a seed draws a subsample
#: and seeds training; the folds stay put, so seeds are repeats of the same cross-validation)
FOLD_SEED = 0

Size = Union[int, str]  # a number of documents, or "all"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--systems", nargs="+", required=True, metavar="CONFIG",
                        help="configs to compare: .cfg files (softprompt_ie, or transformer + textcat) or "
                             "init-config preset names, e.g. configs/lora_frozen.cfg stock_transformer_textcat")
    parser.add_argument("--train", type=Path, default=SMOKING / "train.spacy", help="training .spacy with doc.cats")
    parser.add_argument("--dev", type=Path, default=SMOKING / "dev.spacy", help="dev .spacy (model selection)")
    parser.add_argument("--test", type=Path, default=SMOKING / "test.spacy", help="test .spacy (reported)")
    parser.add_argument("--output", type=markdown_output, default=Path("docs/smoking_curve.md"),
                        help="markdown table; the JSON and PNG go beside it")
    parser.add_argument("--runs", type=Path, default=Path("training/cats-curve"),
                        help="subsamples and each run's pipeline, metrics and run.json (resumed from)")
    parser.add_argument("--sizes", nargs="+", default=["25", "50", "100", "200", "all"],
                        help="training documents per run: numbers and/or 'all'")
    parser.add_argument("--seeds", nargs="+", type=non_negative, default=[0, 1, 2],
                        help="a seed draws the subsample and seeds training")
    parser.add_argument("--max-steps", type=at_least_one, default=270, help="training steps of every run")
    parser.add_argument("--eval-frequency", type=at_least_one, default=27, help="steps between dev evaluations")
    parser.add_argument("--dev-limit", type=non_negative, default=0, help="dev docs evaluated while training (0 = all)")
    parser.add_argument("--folds", type=int, default=0, metavar="K",
                        help="cross-validation: pool the train, dev and test files into K folds stratified by "
                             "class; fold i's runs test on fold i, select on fold i+1 and train on a subsample of "
                             "the other K-2 folds; the report pools every fold's notes and pairs each system with "
                             "the last of --systems, note by note (0, the default: the files' own split)")
    parser.add_argument("--with-concepts", nargs="+", default=[], metavar="SYSTEM[=TYPE,...]",
                        help="softprompt_ie systems to run learning the training documents' concept types beside "
                             "the classes (multi-task; relations left out), reported as SYSTEM+concepts and still "
                             "chosen on cats_score: a name of --systems (a .cfg file's stem: run a second time) or "
                             "another .cfg file or preset (run with the concepts alone); SYSTEM=Tobacco,StatusTime "
                             "learns those types alone, reported as SYSTEM+concepts-Tobacco-StatusTime")
    parser.add_argument("--backbone", default="default", help="the one backbone every system uses")
    parser.add_argument("--gpu-id", type=gpu_id, default=-1, help="GPU for training and scoring; -1 (default): CPU")
    parser.add_argument("--no-plot", dest="plot", action="store_false", help="no PNG (no matplotlib needed)")


def parse_sizes(values: Sequence[str]) -> List[Size]:
    """Numbers ascending, then ``all``."""
    sizes: List[Size] = []
    for value in values:
        if value == "all":
            continue
        if not value.isdigit() or int(value) < 1:
            raise CLIError(f"--sizes takes positive numbers of documents or 'all', not {value!r}")
        sizes.append(int(value))
    return sorted(set(sizes)) + (["all"] if "all" in values else [])  # type: ignore[list-item]


def check_size(size: int, pool: Sequence[Any], where: str = "") -> None:
    """A subsample cannot hold more documents than its pool (``where`` names the pool)."""
    if size > len(pool):
        raise CLIError(f"--sizes {size}: the documents to train on are only {len(pool)}{where}; use 'all'")


def subsample(docs: Sequence[Any], size: Size, seed: int) -> List[Any]:
    """The first ``size`` documents of a shuffle seeded by ``seed`` (all of them for ``all``):
    sizes nest, and a size and seed give the same documents for every system."""
    if size == "all":
        return list(docs)
    check_size(size, docs)
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    return [docs[i] for i in order[:size]]  # type: ignore[misc]


def stratified_folds(docs: Sequence[Any], k: int) -> List[List[int]]:
    """Indices of ``docs`` dealt into ``k`` folds: each class's documents (by their top class),
    shuffled once (:data:`FOLD_SEED`), dealt in turn, so every fold holds each class in proportion
    and the fold sizes differ by one at most."""
    if k < 3:
        raise CLIError(f"--folds {k}: cross-validation needs at least 3 folds (test, dev and training folds)")
    if len(docs) < k:
        raise CLIError(f"--folds {k}: the train, dev and test files hold only {len(docs)} documents")
    by_class: Dict[str, List[int]] = {}
    for index, doc in enumerate(docs):
        by_class.setdefault(str(top_class(doc.cats)), []).append(index)
    rng = random.Random(FOLD_SEED)
    folds: List[List[int]] = [[] for _ in range(k)]
    dealt = 0
    for label in sorted(by_class):
        members = by_class[label]
        rng.shuffle(members)
        for index in members:
            folds[dealt % k].append(index)
            dealt += 1
    return [sorted(fold) for fold in folds]


def splits(args: argparse.Namespace, docs: List[Any]) -> List[Dict[str, Any]]:
    """What each run trains, selects and tests on: the files' own split, or (``--folds K``) one
    entry per fold, its dev and test documents written to ``RUNS/data/fold<i>-{dev,test}.spacy``;
    each with a digest of its dev and test texts (``data``), which a resumed run must match."""
    dev, test = read_docbin(args.dev), read_docbin(args.test)
    for path, split in ((args.dev, dev), (args.test, test)):  # (every prediction a false positive: F1 0.0)
        if not any(doc.cats for doc in split):
            raise CLIError(f"{path} has no doc.cats to select or score the classes on ({HINT})")
    if not args.folds:
        return [{"fold": None, "pool": docs, "dev": args.dev, "test": args.test,
                 "data": {"dev": texts_sha1(dev), "test": texts_sha1(test)}}]
    from spacy.tokens import DocBin

    pooled = docs + dev + test
    folds = stratified_folds(pooled, args.folds)
    out = []
    for i in range(args.folds):
        dev_fold = (i + 1) % args.folds
        entry: Dict[str, Any] = {"fold": i, "data": {}}
        for split, fold in (("dev", dev_fold), ("test", i)):
            chosen = [pooled[j] for j in folds[fold]]
            entry[split] = args.runs / "data" / f"fold{i}-{split}.spacy"
            entry[split].parent.mkdir(parents=True, exist_ok=True)
            DocBin(store_user_data=True, docs=chosen).to_disk(entry[split])
            entry["data"][split] = texts_sha1(chosen)
        entry["pool"] = [pooled[j] for f, fold in enumerate(folds) if f not in (i, dev_fold) for j in fold]
        out.append(entry)
    return out


def texts_sha1(docs: Sequence[Any]) -> str:
    """A short digest of the documents' texts, in order: the same documents give the same digest."""
    return short_sha1("\x00".join(doc.text for doc in docs).encode("utf-8"))


def resume_mismatch(done: Dict[str, Any], args: argparse.Namespace, data: Dict[str, str],
                    config_digest: str) -> Optional[str]:
    """Why a finished run's record cannot stand for this run (None: it can): other settings, another
    config for its system (``config_digest``: :func:`config_sha1`), other documents (the input files or the
    folds changed), or, in a cross-validation, no per-note predictions to pool. A record made before
    a digest was kept (no ``data``, no ``config_sha1``) is not checked for it."""
    if (done.get("max_steps"), done.get("backbone"), done.get("folds", 0)) != (args.max_steps, args.backbone,
                                                                               args.folds):
        return (f"trained with max_steps {done.get('max_steps')}, backbone {done.get('backbone')!r} "
                f"and folds {done.get('folds', 0)}")
    dev_settings = {"eval_frequency": args.eval_frequency, "dev_limit": args.dev_limit}
    if any(done.get(key, value) != value for key, value in dev_settings.items()):
        return f"trained with eval_frequency {done.get('eval_frequency')} and dev_limit {done.get('dev_limit')}"
    if done.get("config_sha1", config_digest) != config_digest:
        return f"trained with another config for {done.get('system')} (the config file changed)"
    if done.get("data", data) != data:
        return "trained or scored on other documents (the input files or the folds changed)"
    if args.folds and (not done.get("cats_per_doc") or any(p is None for _, p in done["cats_per_doc"])):
        return "has no prediction for every test note, which the pooled scores need: delete it to retrain"
    return None


def describe(docs: Sequence[Any]) -> Dict[str, Any]:
    """What a subsample holds: documents, documents per class (the class at 1.0), a digest of the texts."""
    classes: Dict[str, int] = {}
    for doc in docs:
        for label, value in doc.cats.items():
            if value == 1.0:
                classes[label] = classes.get(label, 0) + 1
    return {"documents": len(docs), "classes": dict(sorted(classes.items())), "texts_sha1": texts_sha1(docs)}


def parse_with_concepts(entry: str) -> Tuple[str, Tuple[str, ...]]:
    """A ``--with-concepts`` entry: ``SYSTEM`` (every concept type of the training documents) or
    ``SYSTEM=TYPE,TYPE`` (those types alone)."""
    system, sep, listed = entry.partition("=")
    types = tuple(t.strip() for t in listed.split(",") if t.strip())
    if not system or (sep and not types):
        raise CLIError(f"--with-concepts {entry!r}: give SYSTEM or SYSTEM=TYPE,TYPE")
    return system, types


def with_concepts(systems: List[Tuple[str, Any]], entries: Sequence[str]
                  ) -> Tuple[List[Tuple[str, Any]], Dict[str, Tuple[str, ...]]]:
    """``systems`` with a ``<name>+concepts`` variant for each of ``entries`` (a ``SYSTEM=TYPE,...``
    one: ``<name>+concepts-TYPE-...``): the same config, which :func:`run_settings` trains on the
    concepts too; and each variant's concept types (empty: every type of the training documents).
    A system of ``--systems`` (by name, or by its config file) gets its variants right after it;
    another config file or preset is run as the variant alone. Either way the last of
    ``--systems``, the one the others are paired with, stays last. Only softprompt_ie learns
    concepts: another system is an error."""
    known = {name: config for name, config in systems}
    variants = list(systems)
    learned: Dict[str, Tuple[str, ...]] = {}
    last_of: Dict[str, str] = {}  # a system of --systems -> the last name placed for it (it, or its latest variant)
    for given in entries:
        entry, types = parse_with_concepts(given)
        if entry in known:
            name, config = entry, known[entry]
        else:
            name, config = load_systems([entry], flag="--with-concepts")[0]
            if name in known and known[name] != config:
                raise CLIError(f"--with-concepts {entry!r}: a system of --systems is named {name!r} too, with "
                               "another config")
        if "softprompt_ie" not in config.get("components", {}):
            raise CLIError(f"--with-concepts {entry!r}: only a softprompt_ie system learns concepts")
        variant = name + CONCEPTS_SUFFIX + "".join("-" + t.replace("/", "_") for t in types)
        if name in known:
            after = [n for n, _ in variants].index(last_of.get(name, name)) + 1
            last_of[name] = variant
        else:
            after = len(variants)
        variants.insert(min(after, len(variants) - 1), (variant, config))
        learned[variant] = types
    if len({name for name, _ in variants}) != len(variants):
        raise CLIError("--with-concepts: two systems would have the same name (a config's file name is its name, "
                       f"a variant's that name and {CONCEPTS_SUFFIX!r}, then its types)")
    return variants, learned


def run_settings(config, train_file: Path, dev_file: Path, args: argparse.Namespace, seed: int,
                 log: Path, concepts: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The settings of one run: data, steps, seed, the JSONL log, selection on cats_score, the
    backbone; for softprompt_ie, exclusive classes, learned alone (``concepts`` None) or beside the
    concept types ``concepts`` names (empty: every type of the training documents)."""
    settings = corpus_settings(train_file, dev_file, max_steps=args.max_steps, eval_frequency=args.eval_frequency,
                               dev_limit=args.dev_limit, seed=seed)
    # every weight the config gives set to 0, nulls (scores that are not numbers) kept: spaCy fills
    # in the components' default weights and normalizes, so a weight left out would still count
    weights = {key: None if value is None else 0.0
               for key, value in config.get("training", {}).get("score_weights", {}).items()}
    settings["training.score_weights"] = {**weights, **SCORE_WEIGHTS}
    settings.update(jsonl_log_settings(log))
    settings.update(backbone_settings(config, args.backbone))
    components = config.get("components", {})
    if "softprompt_ie" in components:
        settings["components.softprompt_ie.exclusive_classes"] = True
        settings["initialize.components.softprompt_ie"] = (
            dict(CLASSIFICATION_ONLY) if concepts is None else {**WITH_CONCEPTS, **({"labels": list(concepts)} if concepts else {})})
    elif "textcat" not in components:
        raise CLIError("a cats-curve system needs a softprompt_ie or a textcat component; the config has "
                       f"{', '.join(components) or 'none'}")
    return settings


def run(args: argparse.Namespace) -> int:
    from ..relations import DEFAULT_SPANS_KEY, concept_spans
    from .bench import dev_curve

    require_files([args.train, args.dev, args.test], HINT)
    check_output_files(output=args.output)  # (written after the first run)
    check_distinct(args.seeds, "--seeds")
    sizes = parse_sizes(args.sizes)
    plot = args.plot and matplotlib_available(required=False, verb="cats-curve")
    plain = load_systems(args.systems)
    systems, learned = with_concepts(plain, args.with_concepts)
    joint = [name for name, _ in systems if name in learned]
    docs = read_docbin(args.train)
    if not any(doc.cats for doc in docs):
        raise CLIError(f"{args.train} has no doc.cats ({HINT})")
    for name, config in systems:
        if name not in learned:
            continue
        key = config["components"]["softprompt_ie"].get("spans_key", DEFAULT_SPANS_KEY)
        found = {span.label_ for doc in docs for span in concept_spans(doc, key)}
        if not found:
            raise CLIError(f"--with-concepts: {args.train} has no concepts (doc.spans[{key!r}] or doc.ents) for "
                           f"{name} to learn beside the classes")
        missing = [t for t in learned[name] if t not in found]
        if missing:
            raise CLIError(f"--with-concepts: {args.train} has no {', '.join(missing)} concepts for {name} (its "
                           f"types: {', '.join(sorted(found))})")
    folds = splits(args, docs)
    counted = [size for size in sizes if size != "all"]
    for split in folds:  # every size checked before the first run trains
        if counted:
            where = "" if split["fold"] is None else f" (fold {split['fold']}'s training pool)"
            check_size(max(counted), split["pool"], where)
    report: Dict[str, Any] = {
        "command": "python -m spacy_softprompt " + " ".join(sys.argv[1:]), "backbone": args.backbone,
        "max_steps": args.max_steps, "eval_frequency": args.eval_frequency, "train": str(args.train),
        "dev": str(args.dev), "test": str(args.test), "train_documents": len(docs), "folds": args.folds,
        "sizes": sizes, "seeds": args.seeds, "systems": [name for name, _ in systems],
        "with_concepts": joint, "concept_types": {name: list(learned[name]) for name in joint if learned[name]},
        "subsamples": {}, "runs": [],
    }
    if args.folds:
        report["fold_documents"] = {str(f["fold"]): {"train_pool": len(f["pool"]), "test": str(f["test"])}
                                    for f in folds}
    plan = [(size, seed, split, system) for size in sizes for seed in args.seeds for split in folds
            for system in systems]
    digests = {name: config_sha1(config) for name, config in systems}
    start = time.perf_counter()
    for index, (size, seed, split, (name, config)) in enumerate(plan, 1):
        fold = split["fold"]
        key = f"{size}-seed{seed}" + ("" if fold is None else f"-fold{fold}")
        train_file = args.runs / "data" / f"train-{key}.spacy"
        if key not in report["subsamples"]:  # drawn again on every invocation: the same inputs, the same file
            from spacy.tokens import DocBin

            chosen = subsample(split["pool"], size, seed)
            report["subsamples"][key] = describe(chosen)
            train_file.parent.mkdir(parents=True, exist_ok=True)
            DocBin(store_user_data=True, docs=chosen).to_disk(train_file)
        data = {"train": report["subsamples"][key]["texts_sha1"], **split["data"]}
        run_dir = args.runs / key / name
        record_path = run_dir / "run.json"
        where = f"[{index}/{len(plan)}] {size} documents, seed {seed}" + (
            "" if fold is None else f", fold {fold}") + f", {name}"
        digest = digests[name]
        record = finished_run(record_path, where, lambda done: resume_mismatch(done, args, data, digest))
        if record is None:
            print(f"{where}: training", flush=True)
            log = run_dir / "train_log.jsonl"
            settings = run_settings(config, train_file, split["dev"], args, seed, log, concepts=learned.get(name))
            result = train(write_run_config(config, settings, run_dir / "config.cfg"), run_dir, gpu_id=args.gpu_id)
            scores = evaluate_spacy(result.pipeline, split["test"], run_dir / "metrics.json", gpu_id=args.gpu_id)
            if "cats_macro_f" not in scores or (args.folds and "cats_per_doc" not in scores):
                raise CLIError(f"{run_dir / 'metrics.json'} has no cats_* scores or predicted classes: did the "
                               "pipeline learn doc.cats?")
            record = {"system": name, "size": size, "documents": report["subsamples"][key]["documents"],
                      "seed": seed, "fold": fold, "folds": args.folds, "max_steps": args.max_steps,
                      "eval_frequency": args.eval_frequency, "dev_limit": args.dev_limit,
                      "backbone": args.backbone, "train_file": str(train_file), "test_file": str(split["test"]),
                      "cats_macro_f": _points(scores["cats_macro_f"]),
                      "cats_micro_f": _points(scores.get("cats_micro_f")),
                      "cats_f_per_type": {label: _points(v["f"]) for label, v in
                                          sorted((scores.get("cats_f_per_type") or {}).items())},
                      "cats_per_doc": scores.get("cats_per_doc"), "data": data, "config_sha1": digest,
                      "train_seconds": round(result.train_seconds, 1), **dev_curve(log)}
            record_path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        report["runs"].append(record)
        print(f"    macro F1 {_cell(record['cats_macro_f'])}, {record['steps']} steps (best {record['best_step']}), "
              f"{record['epochs']} epochs, {record['train_seconds']:.0f} s", flush=True)
        report["wall_seconds"] = round(time.perf_counter() - start, 1)
        write_report(report, args.output, plot)
    print("\n" + to_markdown(report))
    return 0


def _points(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(100 * value, 2)


def _cell(value: Optional[float]) -> str:
    return "n/r" if value is None else f"{value:.1f}"


def pooled_scores(pairs: Sequence[Sequence[Optional[str]]], labels: Sequence[str]) -> Dict[str, Any]:
    """Macro F1 and F1 per class (points) over [gold, predicted] top classes pooled from several
    test files, counted as spaCy's exclusive textcat counts one file (``Scorer.score_cats``): a
    right top class is a true positive of its class, a wrong one a false negative of the gold class
    and a false positive of the predicted one; macro F1 is the mean over ``labels`` (other classes
    are left out, as spaCy's scorer leaves out classes it was not given)."""
    counts = {label: [0, 0, 0] for label in labels}  # tp, fp, fn
    for gold, predicted in pairs:
        gold, predicted = (label if label in counts else None for label in (gold, predicted))
        if gold is not None and gold == predicted:
            counts[gold][0] += 1
            continue
        if gold is not None:
            counts[gold][2] += 1
        if predicted is not None:
            counts[predicted][1] += 1
    per_class = {label: round(100 * 2 * tp / (2 * tp + fp + fn), 2) if tp else 0.0
                 for label, (tp, fp, fn) in counts.items()}
    return {"documents": len(pairs), "macro_f": round(statistics.fmean(per_class.values()), 2),
            "f_per_type": per_class}


def paired_counts(runs: Sequence[Dict[str, Any]], reference: Sequence[Dict[str, Any]]) -> Tuple[int, int]:
    """Test notes that only ``runs`` / only ``reference`` get right, fold by fold (a fold's runs score
    the same test file in the same order)."""
    by_fold = {r["fold"]: r["cats_per_doc"] for r in reference}
    only_runs = only_reference = 0
    for run in runs:
        theirs = by_fold[run["fold"]]
        if [gold for gold, _ in run["cats_per_doc"]] != [gold for gold, _ in theirs]:
            raise CLIError(f"fold {run['fold']}: {run['system']} and {reference[0]['system']} were scored on "
                           "different test notes; rerun both on the same folds")
        for (gold, predicted), (_, other) in zip(run["cats_per_doc"], theirs):
            only_runs += predicted == gold != other
            only_reference += other == gold != predicted
    return only_runs, only_reference


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar test: the chance that a fair coin splits the ``only_a + only_b``
    notes that the two systems disagree on at least as unevenly."""
    n = only_a + only_b
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def summarize(report: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Mean and sample sd of macro F1 over runs (seeds, and folds), per size and system (runs done
    so far); with folds, also macro F1 pooled over each seed's K test folds (seeds whose folds are
    all done), mean and sd over seeds, and per seed the notes that only this system or only the
    reference (the last system) gets right, with their McNemar p."""
    rows = []
    reference = report["systems"][-1]
    for size in report["sizes"]:
        for system in report["systems"]:
            runs = [r for r in report["runs"] if r["size"] == size and r["system"] == system]
            values = [r["cats_macro_f"] for r in runs if r["cats_macro_f"] is not None]
            if not runs:
                continue
            row = {"size": size, "documents": runs[0]["documents"], "system": system, "runs": len(runs),
                   "mean": round(statistics.fmean(values), 2) if values else None,
                   "sd": round(statistics.stdev(values), 2) if len(values) > 1 else None}
            if report.get("folds"):
                labels = sorted(runs[0]["cats_f_per_type"])
                reference_runs = [r for r in report["runs"] if r["size"] == size and r["system"] == reference]
                row["pooled"], row["paired"] = [], []
                for seed in report["seeds"]:  # only seeds whose folds are all scored
                    mine = [r for r in runs if r["seed"] == seed]
                    if len(mine) != report["folds"]:
                        continue
                    row["pooled"].append(pooled_scores([pair for r in mine for pair in r["cats_per_doc"]], labels))
                    theirs = [r for r in reference_runs if r["seed"] == seed]
                    if system != reference and len(theirs) == report["folds"]:
                        only_it, only_reference = paired_counts(mine, theirs)
                        row["paired"].append({"seed": seed, "only_it": only_it, "only_reference": only_reference,
                                              "p": round(mcnemar_p(only_it, only_reference), 3)})
            rows.append(row)
    return rows


def write_report(report: Dict[str, Any], output: Path, plot: bool) -> None:
    """The markdown, its JSON beside it and (``plot``) the PNG, from the runs done so far."""
    output.parent.mkdir(parents=True, exist_ok=True)
    report["summary"] = summarize(report)
    output.write_text(to_markdown(report), encoding="utf-8")
    output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if plot:
        plot_curve(report, output.with_suffix(".png"))


def concepts_sentence(variants: Sequence[str], types: Optional[Dict[str, List[str]]] = None) -> str:
    """What the report adds for ``--with-concepts`` variants: that they learn the concept types too
    (``types``: the variants that learn some types alone, and those types)."""
    if not variants:
        return ""
    one = len(variants) == 1
    alone = "; ".join(f"{name}: {', '.join(listed)} alone" for name, listed in (types or {}).items())
    return (f" Except {', '.join(variants)}: {'it learns' if one else 'they learn'} the training documents' concept "
            "types" + (f" ({alone})" if alone else "") + " beside the classes (the config's concept queries, their "
            "loss added to the classes' loss times its `cats_loss_weight`; no relations), still chosen on "
            "`cats_score`.")


def to_markdown(report: Dict[str, Any]) -> str:
    systems, runs, folds = report["systems"], report["runs"], report.get("folds", 0)
    wall = report.get("wall_seconds", 0)
    if folds:
        data = (f"Cross-validation: `{report['train']}`, `{report['dev']}` and `{report['test']}` pooled and "
                f"dealt into {folds} folds stratified by class; fold i's runs are scored on fold i, choose "
                f"model-best on fold i+1 and train on a subsample of the other {folds - 2} folds (training pools "
                "of " + ", ".join(str(f["train_pool"]) for f in report["fold_documents"].values()) + " documents)")
        sample = "the first N of one seeded shuffle of the fold's training pool"
        over = "folds and seeds"
    else:
        data = (f"Train file `{report['train']}` ({report['train_documents']} documents), dev "
                f"`{report['dev']}`, test `{report['test']}`")
        sample = "the first N of one seeded shuffle of the train file"
        over = "seeds"
    lines = [
        "# Document classes: learning curve", "",
        f"Made by: `{report['command']}`; do not edit. Backbone `{report['backbone']}`; every run "
        f"{report['max_steps']} training steps, the dev set scored every {report['eval_frequency']} steps, "
        "model-best chosen on its `cats_score` and scored on the test file with spaCy's textcat metrics "
        "(the pipeline over the texts, then spaCy's `Scorer`, as `spacy evaluate`; exclusive classes: the top "
        "class counts). "
        f"{data}; {len(runs)} runs, {wall / 60:.1f} min wall time in this invocation "
        "(resumed runs not counted; each run's own time is below).", "",
        f"A size's documents are {sample}, the same for every system; "
        "softprompt_ie learns the classes only (no concept or relation queries), exclusive like the stock "
        "textcat." + concepts_sentence(report.get("with_concepts", []), report.get("concept_types")), "",
    ]
    if folds:
        lines += pooled_markdown(report)
    lines += [
        f"## Macro F1 on test (mean ± sd over {over})", "",
        "| training documents | " + " | ".join(systems) + " |",
        "| ---: | " + " | ".join("---:" for _ in systems) + " |",
    ]
    for size in report["sizes"]:
        cells = []
        for system in systems:
            values = [r["cats_macro_f"] for r in runs if r["size"] == size and r["system"] == system
                      and r["cats_macro_f"] is not None]
            cells.append(mean_sd(values) + (f" (n={len(values)})" if values else ""))
        documents = next((r["documents"] for r in runs if r["size"] == size), None)
        label = f"all ({documents})" if size == "all" and documents else str(size)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    done = [s for s in report["sizes"] if any(r["size"] == s for r in runs)]
    if done:
        largest = done[-1]
        labels = sorted({label for r in runs if r["size"] == largest for label in r["cats_f_per_type"]})
        lines += ["", f"## F1 per class at {largest} training documents (mean ± sd over {over})", "",
                  "| system | " + " | ".join(labels) + " |", "| --- | " + " | ".join("---:" for _ in labels) + " |"]
        for system in systems:
            chosen = [r for r in runs if r["size"] == largest and r["system"] == system]
            if chosen:
                cells = [mean_sd([r["cats_f_per_type"][label] for r in chosen
                                   if r["cats_f_per_type"].get(label) is not None]) for label in labels]
                lines.append(f"| {system} | " + " | ".join(cells) + " |")
    lines += ["", "## Each run", "",
              "| documents | seed | fold | system | macro F1 | steps (best) | epochs | training s |",
              "| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in runs:
        fold = "–" if r.get("fold") is None else r["fold"]
        lines.append(f"| {r['documents']} | {r['seed']} | {fold} | {r['system']} | {_cell(r['cats_macro_f'])} "
                     f"| {r['steps']} ({r['best_step']}) | {r['epochs']} | {r['train_seconds']:.0f} |")
    lines += ["", "Subsamples (documents per class at 1.0):", ""]
    for key, sample in report["subsamples"].items():
        classes = ", ".join(f"{label} {n}" for label, n in sample["classes"].items())
        lines.append(f"- {key}: {sample['documents']} documents ({classes})")
    return "\n".join(lines) + "\n"


def pooled_markdown(report: Dict[str, Any]) -> List[str]:
    """The cross-validation table: macro F1 and F1 per class over every document, each tested once
    per seed (the K test folds pooled), mean ± sd over the seeds whose folds are all done."""
    rows = [row for row in report["summary"] if row.get("pooled")]
    heading = f"## Macro F1 over every document ({report['folds']} test folds pooled; mean ± sd over seeds)"
    if not rows:
        return [heading, "", "No seed has all its folds scored yet.", ""]
    labels = sorted({label for row in rows for pooled in row["pooled"] for label in pooled["f_per_type"]})
    lines = [heading, "",
             "| training documents | system | seeds | documents scored | macro F1 | " + " | ".join(labels) + " |",
             "| ---: | --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in labels) + " |"]
    for row in rows:
        pooled = row["pooled"]
        cells = [mean_sd([p["f_per_type"][label] for p in pooled]) for label in labels]
        lines.append(f"| {row['documents']} | {row['system']} | {len(pooled)} | {pooled[0]['documents']} "
                     f"| {mean_sd([p['macro_f'] for p in pooled])} | " + " | ".join(cells) + " |")
    reference = report["systems"][-1]
    paired = [(row, pair) for row in rows for pair in row.get("paired", [])]
    if paired:
        lines += ["", f"Paired with {reference}, note by note: the notes that only one of the two gets right, "
                      "and the exact McNemar p (the chance that a coin splits them at least as unevenly).", "",
                  f"| training documents | system | seed | only it right | only {reference} right | p |",
                  "| ---: | --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {row['documents']} | {row['system']} | {pair['seed']} | {pair['only_it']} "
                  f"| {pair['only_reference']} | {pair['p']:.3f} |" for row, pair in paired]
    return lines + [""]


def plot_curve(report: Dict[str, Any], path: Path) -> None:
    """Macro F1 against training documents, one line per system, sd over seeds as error bars; a
    cross-validation at one size instead as :func:`plot_folds`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if report.get("folds") and len(report["sizes"]) == 1:
        return plot_folds(report, path, plt)
    fig, ax = plt.subplots(figsize=(6, 4))
    for system in report["systems"]:
        rows = [r for r in report["summary"] if r["system"] == system and r["mean"] is not None]
        ax.errorbar([r["documents"] for r in rows], [r["mean"] for r in rows], yerr=[r["sd"] or 0 for r in rows],
                    marker="o", capsize=3, label=system)
    ax.set_xscale("log")
    ax.set_xlabel("training documents")
    ax.set_ylabel("macro F1 on test (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{report['max_steps']} steps per run, backbone {report['backbone']}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_folds(report: Dict[str, Any], path: Path, plt) -> None:
    """One row per system: macro F1 over every note (the folds pooled, mean over seeds) as a bar,
    each test fold's own macro F1 as a dot, so the spread between folds shows beside the systems'."""
    systems = report["systems"]
    fig, ax = plt.subplots(figsize=(6, 1.2 + 0.5 * len(systems)))
    for i, system in enumerate(systems):
        row = next((r for r in report["summary"] if r["system"] == system), None)
        if row and row.get("pooled"):
            ax.barh(i, statistics.fmean(p["macro_f"] for p in row["pooled"]), color="C0", alpha=0.35)
        folds = [r["cats_macro_f"] for r in report["runs"] if r["system"] == system and r["cats_macro_f"] is not None]
        ax.scatter(folds, [i] * len(folds), color="C0", s=14, zorder=3)
    ax.set_yticks(range(len(systems)), systems, fontsize=8)
    ax.invert_yaxis()
    lowest = min((r["cats_macro_f"] for r in report["runs"] if r["cats_macro_f"] is not None), default=50.0)
    ax.set_xlim(max(0.0, min(50.0, lowest - 5)), 100)
    ax.set_xlabel("macro F1 (%): bar, all notes pooled; dots, each test fold")
    ax.set_title(f"{report['folds']}-fold cross-validation, {report['sizes'][0]} training documents, "
                 f"{report['max_steps']} steps per run", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
