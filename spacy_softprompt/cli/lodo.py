"""``lodo``: leave one dataset out (issue 14 item 3).

For each held-out corpus H and each system (a training config):

1. **source**: one component trained on the other corpora together (their train files in one
   folder, each Doc tagged with its corpus, so it is supervised on its own corpus's types only),
   every type asked by its description (``--strategy``: ``hard``, or ``hard_soft`` / ``hard_deep``
   with a shared learned prompt before it; packed: a type is a question, so a
   type never trained on can be asked); model-best on the other corpora's dev files;
2. **zero-shot**: H's types added to that component by description (``add_label(label,
   description, corpus=H)``), no training, scored on H's test file, its texts tagged H;
3. **few-shot** K per type (each K and seed): K examples per type of H's train file
   (``sampling.sample_few_shot``), trained from the zero-shot component (*transfer*) and from a
   fresh component (*single corpus*), the same steps, model-best on H's dev file; both scored
   on H's test file;
   With ``--replay R``, a third arm, *transfer + replay*, trains the zero-shot component on the K-shot
   sample and R examples per type of each other corpus's train file (each Doc tagged with its
   corpus, so supervised on its own types): rehearsal, against forgetting the types it knew;
4. **old types**: the source model and the transfer runs of ``--forgetting-seeds`` scored on each
   other corpus's test file (its texts tagged, its types only): whether learning H's types from K
   examples costs the types the component knew (item 2: "without forgetting the others").

Concepts only: the corpora's relation schemas differ and are not asked (``relation_schema = {}``).
Descriptions and the held-out types' related types come from a JSON table (``--types``,
``configs/lodo_types.json``). Every run keeps its ``run.json``: an interrupted study resumes;
the report (markdown, JSON, plot) is rewritten after every run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..calibration import DEFAULT_FLOOR, gold_density
from ..queries import PACKED_TYPES
from ..strategies import STRATEGIES, TYPE_SCORING
from . import (CLIError, at_least_one, check_distinct, check_output_files, gpu_id, markdown_output, non_negative,
               positive, read_docbin, read_json)
from .evaluate import probability
from .runs import (backbone_settings, config_sha1, corpus_settings, evaluate, finished_run, jsonl_log_settings,
                   load_systems, matplotlib_available, mean_sd, require_files, short_sha1, train, write_run_config)

HELP = ("leave one dataset out: train on the other corpora with types asked by description, score the "
        "held-out corpus zero-shot and after K-shot training against single-corpus training; table, JSON, plot")

HINT = "run `spacy project run convert-lodo`"
#: the arm that rehearses the other corpora (``--replay``); it and plain transfer start from the zero-shot model
REPLAY = "transfer + replay"
TRANSFER_KINDS = ("transfer", REPLAY)
KIND_HEADERS = {"transfer": "transfer (from the other corpora)", REPLAY: REPLAY, "single corpus": "single corpus"}
#: scores added to a finished run when a rerun asks for them (old types, zero-shot thresholds and calibration)
ADDED_ON_RESUME = ("old_f", "dev_by_threshold", "test_by_threshold", "dev_by_scale", "dev_types_by_scale",
                   "test_by_scale", "calibrated_thresholds", "calibration")
#: the strategy of the committed runs; another one is part of the run names
DEFAULT_STRATEGY = "hard"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", dest="corpora", nargs="+", required=True, metavar="NAME=FOLDER",
                        help="each corpus: its name (the doc._.corpus tag of its Docs) and a folder with "
                             "train.spacy, dev.spacy, test.spacy, e.g. ade=corpus/lodo/ade")
    parser.add_argument("--held-out", nargs="+", metavar="NAME", help="corpora to hold out (default: each)")
    parser.add_argument("--systems", nargs="+", default=["configs/lora_frozen.cfg"], metavar="CONFIG",
                        help="softprompt_ie training configs or init-config presets (their strategy is set to "
                             "--strategy, packed)")
    parser.add_argument("--strategy", choices=[n for n, c in STRATEGIES.items() if c.asks_description],
                        default=DEFAULT_STRATEGY,
                        help="how every type is asked (packed: all types in one query per window): its description, "
                             "or its description after a learned prompt shared by all types; a strategy other than "
                             "hard names the runs <system>+<strategy>")
    parser.add_argument("--packed-types", choices=PACKED_TYPES, default="all",
                        help="which types' parts a packed query holds: every type the component knows, or a "
                             "tagged Doc's corpus's alone (model setting packed_types; 'corpus' adds +corpus to "
                             "the run names)")
    parser.add_argument("--shuffle-types", action="store_true",
                        help="training draws the order of the types' parts anew for every query (model setting "
                             "shuffle_types; adds +shuffled to the run names)")
    parser.add_argument("--type-scoring", choices=TYPE_SCORING, default="dot",
                        help="how the packed head matches spans with a type's part (model setting type_scoring; "
                             "'cosine' adds +cosine to the run names)")
    parser.add_argument("--zero-shot-thresholds", nargs="+", type=probability, default=[], metavar="P",
                        help="also score each zero-shot model at these probabilities, on its held-out corpus's dev and "
                             "test files; the report gives each held-out corpus the one whose mean dev F1 over the "
                             "OTHER held-out corpora is best (a threshold for new types never chosen on their own labels)")
    parser.add_argument("--zero-shot-calibration", nargs="+", type=positive, default=[], metavar="SCALE",
                        help="also calibrate each zero-shot model's types on its held-out corpus's dev texts, their "
                             "labels unused (as the calibrate verb does): each type is predicted as often as the median "
                             "type of the other corpora's train files, times SCALE; scored on dev and test at each "
                             "SCALE, the report gives each held-out corpus the one best on the OTHER held-out corpora's "
                             "dev files (by their micro F1, and by the share of their related types found), with each "
                             "type's lenient test F1 beside the latter")
    parser.add_argument("--types", type=Path, default=Path("configs/lodo_types.json"),
                        help="JSON: descriptions (type -> its question) and related (held-out type -> types of "
                             "other corpora)")
    parser.add_argument("--shots", nargs="*", type=at_least_one, default=[5, 10, 20, 50, 100],
                        help="K examples per type")
    parser.add_argument("--seeds", nargs="+", type=non_negative, default=[0, 1, 2],
                        help="a seed draws the K-shot sample")
    parser.add_argument("--forgetting-seeds", nargs="*", type=non_negative, metavar="SEED",
                        help="transfer runs of these seeds are also scored on the other corpora's test files, "
                             "beside the source model (default: the first of --seeds; none: not measured)")
    parser.add_argument("--replay", type=int, default=0, metavar="R",
                        help="also run transfer + replay: the K-shot sample plus R examples per type of each "
                             "other corpus's train file (0: no such arm)")
    parser.add_argument("--source-steps", type=at_least_one, default=1500, help="training steps on the other corpora")
    parser.add_argument("--source-seed", type=int, default=None, metavar="SEED",
                        help="seed of the source training (default: the system config's [system] seed); another "
                             "source model of the same system, for a second estimate of its zero-shot and transfer "
                             "figures (adds +seed<SEED> to the run names)")
    parser.add_argument("--fewshot-steps", type=at_least_one, default=200, help="training steps on K examples per type")
    parser.add_argument("--eval-frequency", type=at_least_one, default=100, help="steps between dev evaluations")
    parser.add_argument("--dev-limit", type=non_negative, default=0,
                        help="dev docs evaluated while training, per corpus (0 = all)")
    parser.add_argument("--max-length", type=at_least_one, default=512,
                        help="subwords per sequence: every type's question and a window of text")
    parser.add_argument("--backbone", default="default")
    parser.add_argument("--gpu-id", type=gpu_id, default=-1)
    parser.add_argument("--runs", type=Path, default=Path("training/lodo"), help="data, pipelines, run.json files")
    parser.add_argument("--output", type=markdown_output, default=Path("docs/lodo/all.md"), help="markdown; JSON and PNG beside it")
    parser.add_argument("--no-plot", dest="plot", action="store_false",
                        help="no PNG of the few-shot curves (no matplotlib needed); a zero-shot-only run writes none")


def parse_corpora(values: Sequence[str]) -> Dict[str, Path]:
    corpora: Dict[str, Path] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not name or not folder:
            raise CLIError(f"--corpus takes NAME=FOLDER, not {value!r}")
        if name in corpora:
            raise CLIError(f"--corpus names {name} twice ({corpora[name]}, {folder})")
        corpora[name] = Path(folder)
    if len(corpora) < 2:
        raise CLIError("--corpus: leaving one out needs at least two corpora")
    require_files([corpora[n] / f"{part}.spacy" for n in corpora for part in ("train", "dev", "test")], HINT)
    return corpora


def corpus_types(folder: Path, name: str) -> Tuple[List[str], List[str]]:
    """The concept types a corpus annotates (train, dev and test), and those with a mention in its
    test file (what a zero-shot score can count), checking its Docs carry its tag."""
    types: Dict[str, set] = {}
    for part in ("train", "dev", "test"):
        types[part] = set()
        docs = read_docbin(folder / f"{part}.spacy")
        if not docs:
            raise CLIError(f"{folder / part}.spacy: no documents ({HINT})")
        for doc in docs:
            if doc._.corpus != name:
                raise CLIError(f"{folder / part}.spacy: a document is tagged {doc._.corpus!r}, not {name!r} "
                               f"(convert with --corpus {name}; {HINT})")
            types[part].update(span.label_ for span in doc.spans.get("softprompt", ()))
    if not types["train"]:
        raise CLIError(f"{folder / 'train'}.spacy: no concepts in span group 'softprompt' ({HINT})")
    return sorted(set().union(*types.values())), sorted(types["test"])


def load_types(path: Path, types: Dict[str, List[str]]) -> Tuple[Dict[str, str], Dict[str, List[str]]]:
    """The types table (``--types``): each corpus type's description, and each held-out type's related types of
    the other corpora, checked against the corpora's types (``types``: corpus -> its types)."""
    shape = 'an object with "descriptions" (type -> its text) and "related" (type -> a list of types)'
    if not path.is_file():
        raise CLIError(f"--types {path} not found")
    data = read_json(path, shape)
    descriptions, related = (data.get("descriptions", {}), data.get("related", {})) if isinstance(data, dict) else (
        None, None)
    if not (isinstance(descriptions, dict) and isinstance(related, dict)):
        raise CLIError(f"{path}: expected {shape}")
    bad = [t for t, text in descriptions.items() if not (isinstance(text, str) and text.strip())]
    bad += [t for t, others in related.items() if not (isinstance(others, list)
                                                       and all(isinstance(o, str) for o in others))]
    if bad:
        raise CLIError(f"{path}: {', '.join(bad)}: a description is a non-empty string, related types a list of "
                       "type names")
    known = {t for ts in types.values() for t in ts}
    missing = sorted(t for t in known if t not in descriptions)
    if missing:
        raise CLIError(f"{path}: no description for {', '.join(missing)} (every type is asked by its description)")
    # (a type of a corpus not in this run may be named: the table is for all three shared corpora)
    unknown = sorted({o for t, others in related.items() for o in [t, *others] if o not in descriptions})
    if unknown:
        raise CLIError(f"{path}: related names {', '.join(unknown)}, which \"descriptions\" lacks (a misspelt type?)")
    return descriptions, related


def source_data(runs: Path, corpora: Dict[str, Path], held_out: str, dev_limit: int) -> Tuple[Path, Path]:
    """Folders holding the other corpora's train and dev files (spaCy reads every .spacy in one),
    rebuilt on every call so that a changed --corpus set never leaves a stale file behind. The dev
    folder holds the first ``dev_limit`` documents of each corpus (0: all): spaCy's own limit would
    take them from the first file only."""
    from spacy.tokens import DocBin

    folders = []
    for part in ("train", "dev"):
        folder = runs / "data" / f"without-{held_out}" / part
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.spacy"):
            old.unlink()
        for name, path in corpora.items():
            if name == held_out:
                continue
            source, target = path / f"{part}.spacy", folder / f"{name}.spacy"
            if part == "dev" and dev_limit:
                DocBin(store_user_data=True, docs=read_docbin(source)[:dev_limit]).to_disk(target)
            else:
                target.symlink_to(source.resolve())
        folders.append(folder)
    return folders[0], folders[1]


def few_shot_file(runs: Path, folder: Path, held_out: str, shots: int, seed: int) -> Tuple[Path, int]:
    """K examples per type of the held-out train file, written once (resumed runs reuse it)."""
    from spacy.tokens import DocBin

    from ..sampling import sample_few_shot

    path = runs / "data" / f"{held_out}-{shots}shot-seed{seed}.spacy"
    if path.is_file():
        return path, len(DocBin().from_disk(path))
    sample, _ = sample_few_shot(read_docbin(folder / "train.spacy"), shots, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(store_user_data=True, docs=sample).to_disk(path)
    return path, len(sample)


def replay_data(runs: Path, corpora: Dict[str, Path], held_out: str, sample: Path, replay: int,
                seed: int) -> Tuple[Path, int]:
    """A folder with the K-shot sample and ``replay`` examples per type of each other corpus's train
    file (drawn with ``seed``), rebuilt on every call; its number of replayed documents."""
    from spacy.tokens import DocBin

    from ..sampling import sample_few_shot

    folder = runs / "data" / f"{sample.stem}-replay{replay}"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.spacy"):
        old.unlink()
    (folder / f"{held_out}.spacy").symlink_to(sample.resolve())
    replayed = 0
    for name, path in corpora.items():
        if name != held_out:
            docs, _ = sample_few_shot(read_docbin(path / "train.spacy"), replay, seed)
            DocBin(store_user_data=True, docs=docs).to_disk(folder / f"{name}.spacy")
            replayed += len(docs)
    return folder, replayed


def inputs_of(args: argparse.Namespace) -> Dict[str, Any]:
    """What a finished run depends on besides its steps and backbone: reused only if unchanged."""
    return {"max_length": args.max_length, "dev_limit": args.dev_limit,
            "types_sha1": short_sha1(args.types.read_bytes())}


def _stamp(path: Path) -> Optional[str]:
    """A finished run's identity (its run.json's digest, without the scores added to a finished run on
    resume, which change nothing built on it): runs built on it are redone if it is."""
    if not path.is_file():
        return None
    record = {k: v for k, v in json.loads(path.read_text(encoding="utf-8")).items() if k not in ADDED_ON_RESUME}
    return short_sha1((json.dumps(record, indent=2) + "\n").encode("utf-8"))


def add_types(source: Path, target: Path, types: Sequence[str], descriptions: Dict[str, str], corpus: str) -> None:
    """The source pipeline with the held-out types added by description, saved as ``target``."""
    import spacy

    nlp = spacy.load(source)
    pipe = nlp.get_pipe("softprompt_ie")
    for label in types:
        pipe.add_label(label, description=descriptions[label], corpus=corpus)
    target.parent.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(target)


def per_type_f(scores: Dict[str, Any], mode: str = "strict") -> Dict[str, float]:
    """Each concept type's F1 (%) of a score dict, strict or lenient."""
    return {label: round(100 * v["f"], 2) for label, v in scores[f"concepts_{mode}_per_type"].items()}


def strict_scores(scores: Dict[str, Any]) -> Dict[str, Any]:
    """What a run keeps of a concept score dict: micro and per-type strict F1, in %."""
    return {"strict_f": round(100 * scores["concepts_strict_f"], 2), "per_type": per_type_f(scores)}


def run_name(system: str, args: argparse.Namespace) -> str:
    """The system's name, with what differs from the committed runs' settings appended."""
    extras = [args.strategy] if args.strategy != DEFAULT_STRATEGY else []
    extras += ["corpus"] if args.packed_types != "all" else []
    extras += ["shuffled"] if args.shuffle_types else []
    extras += [args.type_scoring] if args.type_scoring != "dot" else []
    extras += [f"seed{args.source_seed}"] if args.source_seed is not None else []
    return "+".join([system] + extras)


def run(args: argparse.Namespace) -> int:
    from .bench import dev_curve

    check_output_files(output=args.output)  # (written after the first run)
    if args.replay < 0:
        raise CLIError(f"--replay {args.replay}: examples per old type must be 0 (no replay arm) or more")
    for option, values in (("--seeds", args.seeds), ("--shots", args.shots), ("--held-out", args.held_out or []),
                           ("--forgetting-seeds", args.forgetting_seeds or [])):
        check_distinct(values, option)
    elsewhere = [seed for seed in args.forgetting_seeds or [] if seed not in args.seeds]
    if elsewhere:  # (no transfer run of that seed: forgetting would go unmeasured without a word)
        raise CLIError(f"--forgetting-seeds {' '.join(map(str, elsewhere))}: not among --seeds "
                       f"{' '.join(map(str, args.seeds))}")
    corpora = parse_corpora(args.corpora)
    held_outs = args.held_out or list(corpora)
    unknown = [h for h in held_outs if h not in corpora]
    if unknown:
        raise CLIError(f"--held-out {', '.join(unknown)}: not among --corpus {', '.join(corpora)}")
    types, in_test = {}, {}
    for name, folder in corpora.items():
        types[name], in_test[name] = corpus_types(folder, name)
    descriptions, related = load_types(args.types, types)
    plot = args.plot and matplotlib_available(required=False, verb="lodo")
    forgetting_seeds = args.seeds[:1] if args.forgetting_seeds is None else args.forgetting_seeds
    systems = load_systems(args.systems)
    report: Dict[str, Any] = {
        "command": "python -m spacy_softprompt " + " ".join(sys.argv[1:]), "backbone": args.backbone,
        "source_steps": args.source_steps, "fewshot_steps": args.fewshot_steps, "types": types,
        "related": {t: related.get(t, []) for h in held_outs for t in types[h]},
        "in_test": {h: in_test[h] for h in held_outs}, "runs": [],
    }
    start = time.perf_counter()

    def record(run_dir: Path, config, settings: Dict[str, Any], held_out: str, info: Dict[str, Any],
               source: Optional[Path] = None) -> Dict[str, Any]:
        """One run: trained (or, with no steps, the zero-shot pipeline built) and scored, or read back."""
        path = run_dir / "run.json"
        steps = settings.get("training.max_steps", 0)
        inputs = dict(inputs_of(args), source=_stamp(source.parent / "run.json") if source else None)
        digest = None if config is None else config_sha1(config)  # (not kept by runs made before it was)
        done = finished_run(path, str(run_dir), lambda record: None if (
            record.get("max_steps"), record.get("backbone")) == (steps, args.backbone) and record.get(
            "inputs", inputs) == inputs and record.get("config_sha1", digest) == digest
            else f"made with other settings (max_steps {record.get('max_steps')}, {record.get('inputs')}, "
            f"config {record.get('config_sha1')})")
        if done is not None:
            added = False
            if wants_old_types(done) and "old_f" not in done:  # measured on a run made before it was asked
                done["old_f"] = old_types_f(run_dir / "model-best", run_dir, held_out)
                added = True
            if wants_thresholds(done) and set(done.get("dev_by_threshold", {})) != set(map(str, thresholds)):
                done.update(threshold_scores(run_dir / "pipeline", run_dir, held_out))
                added = True
            if wants_calibration(done) and (set(done.get("dev_by_scale", {})) != set(map(str, scales))
                                            or done.get("calibration") != calibration(held_out)
                                            or "dev_types_by_scale" not in done
                                            or any("lenient_per_type" not in v for v in done["test_by_scale"].values())):
                done.update(calibration_scores(run_dir / "pipeline", held_out))
                added = True
            if added:
                path.write_text(json.dumps(done, indent=2) + "\n", encoding="utf-8")
            return done
        print(f"{run_dir}: {info['kind']}", flush=True)
        entry = dict(info, held_out=held_out, max_steps=steps, backbone=args.backbone, inputs=inputs,
                     **({"config_sha1": digest} if digest else {}))
        if info["kind"] == "zero-shot":
            pipeline = run_dir / "pipeline"
            add_types(source, pipeline, types[held_out], descriptions, held_out)
        else:
            log = run_dir / "train_log.jsonl"
            settings = {**settings, **jsonl_log_settings(log)}
            result = train(write_run_config(config, settings, run_dir / "config.cfg"), run_dir, gpu_id=args.gpu_id)
            pipeline = result.pipeline
            entry.update(train_seconds=round(result.train_seconds, 1), **dev_curve(log))
        if info["kind"] != "source":  # the source model knows none of the held-out types
            scores = evaluate(pipeline, corpora[held_out] / "test.spacy", run_dir / "metrics.json",
                              gpu_id=args.gpu_id, corpus=held_out, concept_types=types[held_out],
                              thresholds=thresholds if wants_thresholds(entry) else ())
            strict = strict_scores(scores)  # (keys in the order earlier run.json files have them)
            entry.update(strict_f=strict["strict_f"], lenient_f=round(100 * scores["concepts_lenient_f"], 2),
                         per_type=strict["per_type"])
        if wants_old_types(entry):
            entry["old_f"] = old_types_f(pipeline, run_dir, held_out)
        if wants_thresholds(entry):
            entry.update(threshold_scores(pipeline, run_dir, held_out, scores["by_threshold"]))
        if wants_calibration(entry):
            entry.update(calibration_scores(pipeline, held_out))
        path.write_text(json.dumps(entry, indent=2) + "\n", encoding="utf-8")
        return entry

    thresholds = sorted(set(args.zero_shot_thresholds))

    def wants_thresholds(entry: Dict[str, Any]) -> bool:
        return bool(thresholds) and entry["kind"] == "zero-shot"

    def threshold_scores(pipeline: Path, run_dir: Path, held_out: str,
                         test: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The zero-shot model's micro strict F1 on the held-out dev file, and its micro and per-type
        strict F1 on the test file, at each of --zero-shot-thresholds; ``test``: the test file's
        ``by_threshold`` when the run's own evaluation already gave it."""
        def by_threshold(part: str) -> Dict[str, Any]:
            return evaluate(pipeline, corpora[held_out] / f"{part}.spacy", run_dir / f"thresholds-{part}.json",
                            gpu_id=args.gpu_id, corpus=held_out, concept_types=types[held_out],
                            thresholds=thresholds)["by_threshold"]

        dev, test = by_threshold("dev"), test if test is not None else by_threshold("test")
        return {"dev_by_threshold": {t: strict_scores(v)["strict_f"] for t, v in dev.items()},
                "test_by_threshold": {t: strict_scores(v) for t, v in test.items()}}

    scales = sorted(set(args.zero_shot_calibration))
    # each held-out corpus's calibration target: the other corpora's median type, per token
    densities = {h: gold_density((doc for name, folder in corpora.items() if name != h
                                  for doc in read_docbin(folder / "train.spacy")), "softprompt")
                 for h in (held_outs if scales else ())}
    if densities:
        report["calibration_density_per_100_tokens"] = {h: round(100 * d, 3) for h, d in densities.items()}

    def wants_calibration(entry: Dict[str, Any]) -> bool:
        return bool(scales) and entry["kind"] == "zero-shot"

    def calibration(held_out: str) -> Dict[str, float]:
        """What a run's calibrated thresholds were chosen with besides the scales: redone if it changes."""
        return {"density": densities[held_out], "floor": DEFAULT_FLOOR}

    def calibration_scores(pipeline: Path, held_out: str) -> Dict[str, Any]:
        """The zero-shot model's held-out types calibrated on the held-out dev texts at each of
        --zero-shot-calibration (the dev labels unused there), then scored on dev (micro strict F1,
        and per type for the types with a dev mention) and test (micro and per type, per type lenient too); one
        prediction pass per file, down to the calibration floor."""
        from ..calibration import density_thresholds
        from ..scoring import score_concepts_and_relations
        from . import load_pipeline
        from .calibrate import predict_down_to, softprompt_pipe
        from .evaluate import concepts_above
        from .runs import _release_memory

        labels = types[held_out]

        def predict() -> Tuple[str, float, Dict[str, Tuple[List[Any], List[Any]]]]:
            """The span group and threshold of the pipeline, and per file (gold, predicted) Docs;
            the pipeline is dropped on return, so that its memory can be released."""
            nlp = load_pipeline(pipeline, args.gpu_id)
            _, pipe = softprompt_pipe(nlp, str(pipeline))
            predicted = {}
            for part in ("dev", "test"):
                gold = read_docbin(corpora[held_out] / f"{part}.spacy", nlp.vocab)
                predicted[part] = (gold, predict_down_to(nlp, pipe, [doc.text for doc in gold], labels,
                                                         DEFAULT_FLOOR, held_out))
            return pipe.cfg["spans_key"], pipe.cfg["threshold"], predicted

        try:
            key, ceiling, predicted = predict()
        finally:
            _release_memory(args.gpu_id)
        result: Dict[str, Any] = {"dev_by_scale": {}, "dev_types_by_scale": {}, "test_by_scale": {},
                                  "calibrated_thresholds": {}, "calibration": calibration(held_out)}
        for scale in scales:
            chosen = density_thresholds(predicted["dev"][1], key, labels, scale * densities[held_out],
                                        DEFAULT_FLOOR, ceiling)
            result["calibrated_thresholds"][str(scale)] = chosen
            for part, (gold, docs) in predicted.items():
                kept = [concepts_above(doc, key, ceiling, chosen) for doc in docs]
                scores = score_concepts_and_relations(zip(kept, gold), spans_key=key, concept_types=labels)
                strict = strict_scores(scores)
                result[f"{part}_by_scale"][str(scale)] = strict["strict_f"] if part == "dev" else dict(
                    strict, predicted={label: v["tp"] + v["fp"] + v["ignored"]
                                       for label, v in scores["concepts_strict_per_type"].items()},
                    lenient_per_type=per_type_f(scores, "lenient"))
                if part == "dev":
                    result["dev_types_by_scale"][str(scale)] = {
                        label: strict["per_type"][label] for label, v in scores["concepts_strict_per_type"].items()
                        if v["tp"] + v["fn"] > 0}
        return result

    def wants_old_types(entry: Dict[str, Any]) -> bool:
        return bool(forgetting_seeds) and (entry["kind"] == "source" or (
            entry["kind"] in TRANSFER_KINDS and entry["seed"] in forgetting_seeds))

    def old_types_f(pipeline: Path, run_dir: Path, held_out: str) -> Dict[str, float]:
        """Micro strict F1 of ``pipeline`` on each other corpus's test file, over that corpus's types."""
        scores = {}
        for name, folder in corpora.items():
            if name != held_out:
                metrics = evaluate(pipeline, folder / "test.spacy", run_dir / f"old-types-{name}.json",
                                   gpu_id=args.gpu_id, corpus=name, concept_types=types[name])
                scores[name] = round(100 * metrics["concepts_strict_f"], 2)
        return scores

    for system, config in systems:
        name = run_name(system, args)
        base = {"components.softprompt_ie.model.strategy": args.strategy, "components.softprompt_ie.model.packed": True,
                "components.softprompt_ie.model.packed_types": args.packed_types,
                "components.softprompt_ie.model.shuffle_types": args.shuffle_types,
                "components.softprompt_ie.model.type_scoring": args.type_scoring}
        base.update({"components.softprompt_ie.model.max_length": args.max_length,
                     "components.softprompt_ie.query_texts": descriptions,
                     "initialize.components.softprompt_ie": {"relation_schema": {}}})
        base.update(backbone_settings(config, args.backbone))
        for held_out in held_outs:
            folder = args.runs / name / held_out
            train_dir, dev_dir = source_data(args.runs, corpora, held_out, args.dev_limit)
            settings = {**base, **corpus_settings(train_dir, dev_dir, max_steps=args.source_steps,
                                                  eval_frequency=args.eval_frequency, seed=args.source_seed)}
            info = {"system": name, "kind": "source", "shots": None, "seed": None}
            report["runs"].append(record(folder / "source", config, settings, held_out, info))
            zero = dict(info, kind="zero-shot", shots=0)
            report["runs"].append(record(folder / "zero-shot", None, {}, held_out, zero,
                                         folder / "source" / "model-best"))
            write_report(report, args.output, plot, time.perf_counter() - start)
            for shots in args.shots:
                for seed in args.seeds:
                    sample, documents = few_shot_file(args.runs, corpora[held_out], held_out, shots, seed)
                    settings = {**base, **corpus_settings(sample, corpora[held_out] / "dev.spacy", seed=seed,
                                                          max_steps=args.fewshot_steps,
                                                          eval_frequency=args.eval_frequency, dev_limit=args.dev_limit)}
                    # every held-out type, as the transfer run knows them (a K-shot sample may lack a rare one)
                    settings["initialize.components.softprompt_ie"] = {"relation_schema": {},
                                                                      "labels": types[held_out]}
                    transfer = {"components.softprompt_ie": {"source": str(folder / "zero-shot" / "pipeline")},
                                "paths.train": sample, "paths.dev": corpora[held_out] / "dev.spacy",
                                **{k: v for k, v in settings.items() if not k.startswith("components.")
                                   and not k.startswith("initialize.")}}
                    # (kind, its settings, its folder, what the run record adds)
                    arms = [("transfer", transfer, "transfer", {"documents": documents}),
                            ("single corpus", settings, "single-corpus", {"documents": documents})]
                    if args.replay:
                        mixed, replayed = replay_data(args.runs, corpora, held_out, sample, args.replay, seed)
                        arms.insert(1, (REPLAY, dict(transfer, **{"paths.train": mixed}), f"transfer-replay{args.replay}",
                                        {"documents": documents + replayed, "replay": args.replay}))
                    for kind, run_settings, slug, extra in arms:
                        info = {"system": name, "kind": kind, "shots": shots, "seed": seed, **extra}
                        run_dir = folder / f"{shots}shot-seed{seed}" / slug
                        source = folder / "zero-shot" / "pipeline" if kind in TRANSFER_KINDS else None
                        report["runs"].append(record(run_dir, config, run_settings, held_out, info, source))
                        write_report(report, args.output, plot, time.perf_counter() - start)
    write_report(report, args.output, plot, time.perf_counter() - start)
    print("\n" + to_markdown(report))
    return 0


@dataclass(frozen=True)
class ZeroShotGrid:
    """A zero-shot setting scored at several values (run.json: ``dev`` value -> micro dev F1, ``test``
    value -> test micro and per type); each held-out corpus is reported at the value chosen on the
    others' dev files (:func:`chosen_values`), by their micro F1 or (``dev_types``: value -> dev
    F1 of each type with a dev mention) by the share of their related types found."""

    dev: str
    test: str
    label: str  # a value as the report names it
    title: str
    about: str  # what the table of dev scores shows
    dev_types: Optional[str] = None  # set: the types vote

    def name(self, value: str) -> str:
        return self.label.format(value)


THRESHOLDS = ZeroShotGrid(
    "dev_by_threshold", "test_by_threshold", "p = {}", "Zero-shot thresholds",
    "Micro strict F1 on each held-out corpus's dev file, its types added by description, at each threshold")
CALIBRATION = ZeroShotGrid(
    "dev_by_scale", "test_by_scale", "calibrated, density × {}", "Zero-shot calibration",
    "Micro strict F1 on each held-out corpus's dev file, its types added by description, each type's threshold "
    "calibrated on the dev texts (labels unused) to find it as often as the other corpora's median type, times "
    "each scale")
#: the same calibration scales, each held-out corpus given the one at which the other held-out
#: corpora find most of their related types on dev (docs/lodo/README.md, lever 5)
CALIBRATION_BY_TYPES = ZeroShotGrid(
    "dev_by_scale", "test_by_scale", "calibrated, types vote, density × {}", "Zero-shot calibration, types vote",
    "Related types found (dev strict F1 above 0) of those with a dev mention, on each held-out corpus's dev file, "
    "at each calibration scale", dev_types="dev_types_by_scale")
GRIDS = (THRESHOLDS, CALIBRATION, CALIBRATION_BY_TYPES)


def _f(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}"


def write_report(report: Dict[str, Any], output: Path, plot: bool, seconds: float) -> None:
    report["wall_seconds"] = round(seconds, 1)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(to_markdown(report), encoding="utf-8")
    output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if plot and any(r["kind"] in KIND_HEADERS for r in report["runs"]):  # a curve needs few-shot runs
        plot_curves(report, output.with_suffix(".png"))


def to_markdown(report: Dict[str, Any]) -> str:
    runs = report["runs"]
    lines = [
        "# Leave one dataset out", "",
        f"Made by: `{report['command']}`; do not edit. Backbone `{report['backbone']}`; source training "
        f"{report['source_steps']} steps on the other corpora, few-shot training {report['fewshot_steps']} steps; "
        f"model-best on dev; {len(runs)} runs, {report['wall_seconds'] / 60:.1f} min wall time in this invocation "
        "(resumed runs not counted). Concepts only, strict F1 (%) on the held-out corpus's test file, its texts "
        "tagged with the corpus so only its types are asked.", "",
    ]
    chosen = {grid: chosen_values(runs, grid, report.get("related", {})) for grid in GRIDS}
    for held_out in dict.fromkeys(r["held_out"] for r in runs):
        mine = [r for r in runs if r["held_out"] == held_out]
        systems = list(dict.fromkeys(r["system"] for r in mine))
        labels = report["types"][held_out]
        zero_runs = [r for r in mine if r["kind"] == "zero-shot"]
        # (header, per-type scores, strict?) of each column: each system at its threshold, at each chosen
        # setting, and at the types vote's scale lenient too (a span of the type overlapping a gold one)
        columns = [(s, next((r["per_type"] for r in zero_runs if r["system"] == s), {}), True) for s in systems]
        for grid in GRIDS:
            for r in zero_runs:
                value = chosen[grid].get((r["system"], held_out))
                if value is not None:
                    scored = r[grid.test][value]
                    columns.append((f"{r['system']}, {grid.name(value)}", scored["per_type"], True))
                    if grid is CALIBRATION_BY_TYPES and "lenient_per_type" in scored:
                        columns.append((f"{r['system']}, {grid.name(value)}, lenient F1",
                                        scored["lenient_per_type"], False))
        lines += [f"## Held out: {held_out}", "", "Zero-shot, per type (related types of the other corpora in "
                  "brackets; the target is F1 > 0 on each type that has one)" + (
                      "; p, density ×: the threshold or calibration scale chosen on the other held-out corpora's "
                      "dev files" if len(columns) > len(systems) else "") + (
                      "; lenient F1: a span of the type overlapping a gold one counts (not the target)"
                      if not all(strict for _, _, strict in columns) else "") + ":", "",
                  "| type | related | " + " | ".join(h for h, _, _ in columns) + " |",
                  "| --- | --- | " + " | ".join("---:" for _ in columns) + " |"]
        for label in labels:  # n/r: neither in test nor predicted
            cells = [_f(scores[label]) if label in scores else "n/r" for _, scores, _ in columns]
            lines.append(f"| {label} | {', '.join(report['related'].get(label, [])) or '-'} | " + " | ".join(cells) + " |")
        if "in_test" in report:  # the target's count: types with a related type and a mention in test
            counted = [label for label in report["in_test"][held_out] if report["related"].get(label)]
            cells = [f"{sum(scores.get(label, 0.0) > 0 for label in counted)} of {len(counted)}"
                     + ("" if strict else " (lenient)") for _, scores, strict in columns]
            lines.append("| **related types above 0** | | " + " | ".join(cells) + " |")
        kinds = [k for k in KIND_HEADERS if k in {r["kind"] for r in mine} or k != REPLAY]
        lines += ["", "Micro strict F1 over the held-out types (mean ± sd over seeds):", "",
                  "| system | K per type | " + " | ".join(KIND_HEADERS[k] for k in kinds) + " |",
                  "| --- | ---: | " + " | ".join("---:" for _ in kinds) + " |"]
        for system in systems:
            zero = [r["strict_f"] for r in mine if r["system"] == system and r["kind"] == "zero-shot"]
            lines.append(f"| {system} | 0 (zero-shot) | {mean_sd(zero)} | " + " | ".join("-" for _ in kinds[1:]) + " |")
            for grid in GRIDS:
                if (system, held_out) in chosen[grid]:
                    value = chosen[grid][(system, held_out)]
                    at = [r[grid.test][value]["strict_f"] for r in mine if r["system"] == system and r["kind"] == "zero-shot"]
                    lines.append(f"| {system} | 0 (zero-shot, {grid.name(value)}) | {mean_sd(at)} | "
                                 + " | ".join("-" for _ in kinds[1:]) + " |")
            for shots in sorted({r["shots"] for r in mine if r["shots"]}):
                cells = [mean_sd([r["strict_f"] for r in mine if r["system"] == system and r["kind"] == kind
                                   and r["shots"] == shots]) for kind in kinds]
                lines.append(f"| {system} | {shots} | " + " | ".join(cells) + " |")
        lines += [""] + _old_types_table(mine)
    for grid in GRIDS:
        lines += _grid_table(runs, chosen[grid], grid, report.get("related", {}))
    if "calibration_density_per_100_tokens" in report:
        lines += ["Calibration's density at scale 1 (the other corpora's median type, concepts per 100 tokens): "
                  + ", ".join(f"{h} {d}" for h, d in report["calibration_density_per_100_tokens"].items()), ""]
    lines += ["## Each run", "", "| held out | system | run | K | seed | strict F1 | lenient F1 | steps (best) | training s |",
              "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in runs:
        steps = f"{r['steps']} ({r['best_step']})" if "steps" in r else "-"
        seconds = f"{r['train_seconds']:.0f}" if "train_seconds" in r else "-"
        lines.append(f"| {r['held_out']} | {r['system']} | {r['kind']} | {r['shots'] if r['shots'] is not None else '-'} "
                     f"| {r['seed'] if r['seed'] is not None else '-'} | {_f(r.get('strict_f'))} | {_f(r.get('lenient_f'))} "
                     f"| {steps} | {seconds} |")
    return "\n".join(lines) + "\n"


def related_found(run: Dict[str, Any], grid: ZeroShotGrid, value: str, related: Dict[str, List[str]]) -> Tuple[int, int]:
    """(related types found, related types with a dev mention) on a zero-shot run's dev file at a
    value of ``grid`` (a types-vote grid): what the types vote counts."""
    scores = {label: f for label, f in run[grid.dev_types][value].items() if related.get(label)}
    return sum(f > 0 for f in scores.values()), len(scores)


def chosen_values(runs: List[Dict[str, Any]], grid: ZeroShotGrid,
                  related: Optional[Dict[str, List[str]]] = None) -> Dict[Tuple[str, str], str]:
    """(system, held-out corpus) -> the value of ``grid`` (a zero-shot threshold, a calibration
    scale) best on the dev files of the system's OTHER held-out corpora, so that no held-out
    corpus's labels choose its own: by their mean micro F1, or for a types-vote grid by the mean
    share of their related types found (corpora with none in dev do not count), then their mean
    micro F1; ties: the higher value. None where the system has no other held-out corpus scored."""
    key = grid.dev_types or grid.dev
    scored = [r for r in runs if r["kind"] == "zero-shot" and key in r]
    chosen = {}
    for r in scored:
        others = [o for o in scored if o["system"] == r["system"] and o["held_out"] != r["held_out"]]
        # values every run was scored at (resumed runs may hold another set)
        common = set(r[key]).intersection(*(o[key] for o in others)) if others else set()

        def merit(t: str) -> Tuple[float, float, float]:
            micro = statistics.fmean(o[grid.dev][t] for o in others)
            if grid.dev_types is None:
                return 0.0, micro, float(t)
            shares = [found / n for found, n in (related_found(o, grid, t, related or {}) for o in others) if n]
            return (statistics.fmean(shares) if shares else 0.0), micro, float(t)

        if common:
            chosen[(r["system"], r["held_out"])] = max(common, key=merit)
    return chosen


def _grid_table(runs: List[Dict[str, Any]], chosen: Dict[Tuple[str, str], str], grid: ZeroShotGrid,
                related: Dict[str, List[str]]) -> List[str]:
    """What the choice of ``grid``'s value reads on each held-out corpus's dev file at each value
    (micro strict F1, or the related types found), the chosen one in bold where it is chosen."""
    key = grid.dev_types or grid.dev
    scored = [r for r in runs if r["kind"] == "zero-shot" and key in r]
    if not scored:
        return []

    def cell(r: Dict[str, Any], t: str) -> str:
        if t not in r[key]:
            return "-"
        if grid.dev_types is None:
            return _f(r[grid.dev][t])
        return "{} of {}".format(*related_found(r, grid, t, related))

    values = sorted({t for r in scored for t in r[key]}, key=float)
    lines = [f"## {grid.title}", "", f"{grid.about}; a held-out corpus is scored at the value best on average over "
             "the others' rows (its own row does not vote), in bold in its row:", "",
             "| system | held out | " + " | ".join(grid.name(t) for t in values) + " |",
             "| --- | --- | " + " | ".join("---:" for _ in values) + " |"]
    for r in scored:
        pick = chosen.get((r["system"], r["held_out"]))
        cells = [("**{}**" if t == pick else "{}").format(cell(r, t)) for t in values]
        lines.append(f"| {r['system']} | {r['held_out']} | " + " | ".join(cells) + " |")
    return lines + [""]


def _old_types_table(runs: List[Dict[str, Any]]) -> List[str]:
    """The other corpora's types before (source model) and after K-shot transfer, with the change."""
    measured = [r for r in runs if "old_f" in r]
    if not measured:
        return []
    corpora = list(measured[0]["old_f"])
    has_replay = any(r["kind"] == REPLAY for r in measured)
    arms = "transfer, and transfer + replay of R examples per old type" if has_replay else "transfer"
    lines = ["Old types: micro strict F1 on each other corpus's test file, over its own types, before (the source "
             f"model) and after learning the held-out types from K per type ({arms}); change in brackets:", "",
             "| system | model | " + " | ".join(corpora) + " |", "| --- | --- | " + " | ".join("---:" for _ in corpora) + " |"]
    for system in dict.fromkeys(r["system"] for r in measured):
        before = next((r["old_f"] for r in measured if r["system"] == system and r["kind"] == "source"), {})
        lines.append(f"| {system} | source (before) | " + " | ".join(_f(before.get(c)) for c in corpora) + " |")
        for r in sorted((r for r in measured if r["system"] == system and r["kind"] in TRANSFER_KINDS),
                        key=lambda r: (r["shots"], r["seed"], r["kind"])):
            cells = [_f(r["old_f"][c]) + (f" ({r['old_f'][c] - before[c]:+.1f})" if c in before else "")
                     for c in corpora]
            arm = f" + replay {r.get('replay', '')}".rstrip() if r["kind"] == REPLAY else ""
            lines.append(f"| {system} | K = {r['shots']}{arm}, seed {r['seed']} | " + " | ".join(cells) + " |")
    return lines + [""]


def plot_curves(report: Dict[str, Any], path: Path) -> None:
    """Strict F1 against K per type, one panel per held-out corpus, transfer (and transfer + replay)
    and single corpus per system (sd over seeds as error bars), zero-shot at K = 0 on the transfer
    lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    held_outs = list(dict.fromkeys(r["held_out"] for r in report["runs"]))
    fig, axes = plt.subplots(1, len(held_outs), figsize=(5 * len(held_outs), 4), squeeze=False)
    for ax, held_out in zip(axes[0], held_outs):
        mine = [r for r in report["runs"] if r["held_out"] == held_out]
        for system in dict.fromkeys(r["system"] for r in mine):
            for kind, start in (("transfer", "zero-shot"), (REPLAY, "zero-shot"), ("single corpus", None)):
                if not any(r["kind"] == kind for r in mine):
                    continue
                xs, ys, sds = [], [], []
                for shots in sorted({r["shots"] for r in mine if r["shots"] is not None}):
                    wanted = start if shots == 0 else kind
                    values = [r["strict_f"] for r in mine if r["system"] == system and r["kind"] == wanted
                              and r["shots"] == shots]
                    if values:
                        xs.append(shots)
                        ys.append(statistics.fmean(values))
                        sds.append(statistics.stdev(values) if len(values) > 1 else 0.0)
                if xs:
                    ax.errorbar(xs, ys, yerr=sds, marker="o", capsize=3, label=f"{system}, {kind}")
        ax.set_xscale("symlog", linthresh=5)
        ticks = sorted({r["shots"] for r in mine if r["shots"] is not None})
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks])
        ax.set_xlabel("examples per type (0: zero-shot)")
        ax.set_ylabel("strict F1 on test (%)")
        ax.set_title(f"held out: {held_out}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
