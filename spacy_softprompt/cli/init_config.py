"""``init-config``: write a complete training config from a few choices.

In the spirit of ``spacy init config``: the component blocks come from the
factories' own default configs (``softprompt_ie``'s, or spaCy's ``transformer``
and ``ner`` or ``textcat`` for the stock baselines), with only the chosen settings changed, so
a setting added to a component appears here without touching this module.
The training sections around them are the ones this project trains with.

The committed ``configs/*.cfg`` are this module's output (``make configs``;
``tests/test_configs.py`` fails when they drift). The experiment verbs
(``bench``, ``experiment``, ``scaling``) generate their configs here too, so
they work from an installed wheel, where there is no ``configs/`` folder.
"""
from __future__ import annotations

import argparse
import copy
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional

from . import CLIError, at_least_one, positive, read_json

HELP = "write a training config (strategy, frozen backbone, backbone, prompt layer, corpus paths, gpu)"

#: learning rates chosen by --frozen/--no-frozen: a frozen backbone trains only prompts and
#: heads, which take a much larger step than fine-tuning the whole backbone can.
LEARN_RATE = {True: 0.005, False: 0.0001}
MAX_STEPS = 600
STOCK = "stock_transformer_ner"
#: the stock baseline of the classification learning curve (issue 14): spaCy's textcat on the backbone
STOCK_TEXTCAT = "stock_transformer_textcat"
#: the stock baseline that handles overlapping concepts (ner cannot): spaCy's spancat on the backbone
STOCK_SPANCAT = "stock_transformer_spancat"
#: the stock textcat's model (--textcat-model): spaCy's TextCatEnsemble.v2 (the preset), or an ablation of
#: it: spaCy's parametric-attention textcat on the same transformer (TextCatParametricAttention.v1: the
#: ensemble's transformer branch plus a key transform, spaCy registers no architecture for the branch
#: itself), or the ensemble's bag of words without a transformer (TextCatBOW.v3, at spaCy's default
#: learning rate for a bag-of-words textcat)
BOW_LEARN_RATE = 0.001
TEXTCAT_ABLATIONS = {  # each ablation, and the sentence its config's header adds
    "attention": "Here spaCy's parametric-attention textcat instead (--textcat-model attention: "
                 "TextCatParametricAttention.v1 on the same transformer, no bag of words).",
    "bow": f"Here the ensemble's bag-of-words half alone (--textcat-model bow: TextCatBOW.v3, no transformer, "
           f"learning rate {BOW_LEARN_RATE}).",
}
TEXTCAT_MODELS = ("ensemble", *TEXTCAT_ABLATIONS)
#: presets that build spaCy's own pipelines, not softprompt_ie
STOCK_PRESETS = (STOCK, STOCK_TEXTCAT, STOCK_SPANCAT)
#: the stock pipelines' task component: ner or spancat (concepts), textcat (one exclusive class per document)
STOCK_HEADS = ("ner", "textcat", "spancat")
#: spancat reads and writes the concepts where the corpora keep them (relations.DEFAULT_SPANS_KEY)
#: and proposes spans up to softprompt_ie's default max_span_width, so both see the same candidates
SPANCAT_SPANS_KEY = "softprompt"
SPANCAT_MAX_WIDTH = 12
#: the hub name written for the stock pipeline when the backbone is "default" (spacy-transformers
#: does not know our offline alias; bench writes the resolved folder instead)
STOCK_DEFAULT_NAME = "sentence-transformers/all-MiniLM-L6-v2"
#: the [model.adapter] block of lora_frozen and of bench's LoRA systems: rank 8, alpha 16 on the
#: architecture's attention projections, in every layer
LORA_ADAPTER: Dict[str, Any] = {"@misc": "spacy_softprompt.LoRA.v1", "r": 8, "alpha": 16}


@dataclass(frozen=True)
class Choices:
    """What a user picks; everything else comes from the factories' defaults."""

    strategy: str = "soft"
    frozen: bool = True
    backbone: str = "default"
    prompt_layer: Optional[int] = None  # None: the factory's default
    train: Optional[str] = None
    dev: Optional[str] = None
    gpu: bool = False
    max_steps: int = MAX_STEPS
    stock: bool = False  # spaCy's transformer + stock_head instead of softprompt_ie
    stock_head: str = "ner"  # with stock: one of STOCK_HEADS
    adapter: Optional[Dict[str, Any]] = None  # a [model.adapter] block (e.g. LORA_ADAPTER); None: none
    cats_text_pooling: str = "mean"  # how a classification query pools a window's text (nn/cats.py)
    head_lr_scale: float = 1.0  # learning rate of prompts and heads relative to the backbone's
    query_texts: Optional[str] = None  # a JSON file of label -> hard-prompt question, into [...query_texts]
    textcat_model: str = "ensemble"  # stock textcat only: one of TEXTCAT_MODELS
    cats_bag_of_words: bool = False  # document classes also read a bag of the window's subwords (nn/cats.py)
    cats_loss_weight: float = 1.0  # the classes' loss times this, beside the concept and relation queries'
    packed: bool = False  # every concept type in one query per window (model.py)
    packed_types: str = "all"  # packed: every type's part, or a tagged Doc's corpus's alone
    shuffle_types: bool = False  # packed: the parts' order drawn anew for every training query
    type_scoring: str = "dot"  # packed: a span matched with a type's part by a dot product or a cosine


@dataclass(frozen=True)
class Preset:
    choices: Choices
    description: str


PRESETS: Dict[str, Preset] = {
    "finetune": Preset(Choices(strategy="none", frozen=False),
                       "Strategy 1 (paper): fine-tuning without prompts; backbone unfrozen, typed span outputs "
                       "from one pass."),
    "hard_prompt": Preset(Choices(strategy="hard", frozen=False),
                          "Strategy 2 (paper): hard prompts (a natural-language question per type); backbone "
                          "unfrozen."),
    "soft_prompt": Preset(Choices(strategy="soft", frozen=False),
                          "Strategy 3 (paper): soft prompts (learned vectors per query); backbone unfrozen."),
    "soft_prompt_frozen": Preset(Choices(strategy="soft", frozen=True),
                                 "Strategy 4 (paper): soft prompts with a frozen backbone; only prompts and heads "
                                 "learn."),
    "deep_prompt_frozen": Preset(Choices(strategy="deep", frozen=True),
                                 "Beyond the paper: deep prompts (a learned prompt at every layer) with a frozen "
                                 "backbone."),
    "lora_frozen": Preset(Choices(strategy="none", frozen=True, prompt_layer=4, adapter=LORA_ADAPTER),
                          "Beyond the paper: LoRA (rank 8) on the attention of a frozen backbone, no prompts; only "
                          "LoRA, the trigger marker (from layer 4) and the span head learn. The best frozen "
                          "configuration measured in docs/peft.md, and the default of `make demo`."),
    STOCK: Preset(Choices(frozen=False, stock=True),
                  "The stock spaCy way to do the concept part of the job: spacy-transformers + ner, fine-tuned, "
                  "with the same backbone, batcher, steps and learning rate schedule as finetune.cfg. It is the "
                  "baseline of `python -m spacy_softprompt bench`."),
    STOCK_TEXTCAT: Preset(Choices(frozen=False, stock=True, stock_head="textcat"),
                          "The stock spaCy way to classify documents: spacy-transformers + textcat (exclusive "
                          "classes; spaCy's own TextCatEnsemble.v2, the transformer listener beside its "
                          "bag-of-words model, as `spacy init config --pipeline textcat --optimize accuracy --gpu` "
                          "writes it), "
                          "fine-tuned, the same backbone, batcher, steps and schedule as finetune.cfg. The "
                          "baseline of the SDoH status learning curve (docs/sdoh_status.md); train it on "
                          "corpus/sdoh-smoking."),
    STOCK_SPANCAT: Preset(Choices(frozen=False, stock=True, stock_head="spancat"),
                          "The stock spaCy way to find overlapping concepts: spacy-transformers + spancat "
                          "(spans of 1 to 12 tokens, each scored per type; gold and predictions in "
                          "doc.spans['softprompt'], where the converters put the concepts), fine-tuned, the same "
                          "backbone, batcher, steps and schedule as finetune.cfg. The stock baseline for ADE's "
                          "SpERT folds, whose entities overlap."),
}

# The training sections this project uses around the components (spaCy's own defaults fill
# anything missing). total_steps is written as a number by generate(): a ${training.max_steps}
# reference fails `spacy debug data` ("total_steps value is not a valid integer").
TRAINING_SECTIONS = """
[paths]
train = null
dev = null
vectors = null
init_tok2vec = null

[system]
gpu_allocator = "pytorch"
seed = 0

[nlp]
lang = "en"
pipeline = []
batch_size = 64
disabled = []
before_creation = null
after_creation = null
after_pipeline_creation = null
tokenizer = {"@tokenizers":"spacy.Tokenizer.v1"}

[components]

[corpora]

[corpora.train]
@readers = "spacy.Corpus.v1"
path = ${paths.train}
max_length = 0
gold_preproc = false
limit = 0
augmenter = null

[corpora.dev]
@readers = "spacy.Corpus.v1"
path = ${paths.dev}
max_length = 0
gold_preproc = false
limit = 0
augmenter = null

[training]
seed = ${system.seed}
gpu_allocator = ${system.gpu_allocator}
dropout = 0.1
accumulate_gradient = 1
patience = 1600
max_epochs = 0
max_steps = 600
eval_frequency = 100
frozen_components = []
annotating_components = []
dev_corpus = "corpora.dev"
train_corpus = "corpora.train"
before_to_disk = null
before_update = null

[training.batcher]
@batchers = "spacy.batch_by_words.v1"
discard_oversize = false
tolerance = 0.2
size = 400
get_length = null

[training.logger]
@loggers = "spacy.ConsoleLogger.v1"
progress_bar = true

[training.optimizer]
@optimizers = "Adam.v1"
beta1 = 0.9
beta2 = 0.999
L2_is_weight_decay = true
L2 = 0.01
grad_clip = 1.0
use_averages = false
eps = 0.00000001

[training.optimizer.learn_rate]
@schedules = "warmup_linear.v1"
warmup_steps = 50
total_steps = 600
initial_rate = 0.0001

[training.score_weights]

[pretraining]

[initialize]
vectors = ${paths.vectors}
init_tok2vec = ${paths.init_tok2vec}
vocab_data = null
lookups = null
before_init = null
after_init = null

[initialize.components]

[initialize.tokenizer]
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..queries import PACKED_TYPES
    from ..strategies import STRATEGIES, TYPE_SCORING

    parser.add_argument("output", type=Path, help="config file to write ('-' for stdout); a folder with --preset all")
    parser.add_argument(
        "--preset", choices=[*PRESETS, "all"],
        help="start from a named config of configs/ (explicit options override it); 'all' writes every "
             "preset into the OUTPUT folder, as `make configs` does",
    )
    parser.add_argument("--strategy", choices=list(STRATEGIES), help="query part: none, hard, soft, deep, or "
                        "hard_soft / hard_deep (a question after a shared learned prompt) (default soft)")
    parser.add_argument("--frozen", action=argparse.BooleanOptionalAction, default=None,
                        help=f"freeze the backbone (default); the learning rate follows: "
                             f"{LEARN_RATE[True]} frozen, {LEARN_RATE[False]} unfrozen")
    parser.add_argument("--backbone", help="Hugging Face id or folder; 'default' is the offline all-MiniLM-L6-v2")
    parser.add_argument("--prompt-layer", type=int, help="0: query part at the input (the paper); k > 0: late "
                        "prompts from layer k, lower layers shared by all queries of a window")
    parser.add_argument("--train", help="training .spacy written into [paths] (else pass --paths.train to spacy train)")
    parser.add_argument("--dev", help="dev .spacy written into [paths]")
    parser.add_argument("--max-steps", type=at_least_one, help=f"training steps, also the schedule's length "
                        f"(default {MAX_STEPS})")
    parser.add_argument("--cats-text-pooling", choices=["mean", "attention"],
                        help="document classes: pool a window's text as the mean of its tokens (default) or "
                             "by each class's attention over them")
    parser.add_argument("--cats-bag-of-words", action="store_true", default=None,
                        help="document classes: beside the backbone's states, a learned weight per subword of "
                             "the window for each class (a bag of words, as spaCy's textcat ensemble has)")
    parser.add_argument("--cats-loss-weight", type=positive,
                        help="document classes: their loss times this, added to the concept and relation "
                             "queries' loss (default 1.0; raise it when concepts are learned beside the classes)")
    parser.add_argument("--head-lr-scale", type=positive,
                        help="learning rate of prompts and heads as a multiple of the optimizer's, which the "
                             "backbone and its adapter keep (default: the preset's, 1.0)")
    parser.add_argument("--query-texts", metavar="FILE.json",
                        help="a JSON object of label -> question, written into [components.softprompt_ie.query_texts]: "
                             "the hard prompt asked for each concept, relation or document class (default: a "
                             "question made from the label's name)")
    parser.add_argument("--textcat-model", choices=list(TEXTCAT_MODELS),
                        help="stock textcat only: spaCy's ensemble (default), its parametric attention over the "
                             "transformer alone, or its bag of words alone (no transformer)")
    parser.add_argument("--packed", action="store_true", default=None,
                        help="ask every concept type in one query per window (one backbone pass, not one per type)")
    parser.add_argument("--packed-types", choices=list(PACKED_TYPES),
                        help="with --packed: a concept query holds every type's part (all, the default) or, for a "
                             "Doc tagged with a corpus, its corpus's types alone (corpus)")
    parser.add_argument("--shuffle-types", action="store_true", default=None,
                        help="with --packed: training draws the order of a concept query's type parts anew for "
                             "every query, so the head cannot know a type by its place")
    parser.add_argument("--type-scoring", choices=list(TYPE_SCORING),
                        help="with --packed: a span is matched with each type's part by a dot product (default) or "
                             "a scaled cosine (meant for types added by description)")
    parser.add_argument("--gpu", action="store_true", help="train on a GPU: mixed precision on")


def run(args: argparse.Namespace) -> int:
    explicit = {key: value for key, value in (
        ("strategy", args.strategy), ("frozen", args.frozen), ("backbone", args.backbone),
        ("prompt_layer", args.prompt_layer), ("train", args.train), ("dev", args.dev),
        ("max_steps", args.max_steps), ("cats_text_pooling", args.cats_text_pooling),
        ("head_lr_scale", args.head_lr_scale), ("query_texts", args.query_texts),
        ("textcat_model", args.textcat_model), ("cats_bag_of_words", args.cats_bag_of_words),
        ("cats_loss_weight", args.cats_loss_weight),
        ("packed", args.packed), ("packed_types", args.packed_types), ("shuffle_types", args.shuffle_types),
        ("type_scoring", args.type_scoring)) if value is not None}
    if args.gpu:
        explicit["gpu"] = True
    if args.preset == "all":  # every text made (and so checked) before one is written
        texts = {args.output / f"{name}.cfg": generate(name, output=args.output / f"{name}.cfg", **explicit)
                 for name in PRESETS}
        args.output.mkdir(parents=True, exist_ok=True)
        for path, text in texts.items():
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
        return 0
    text = generate(args.preset, output=None if str(args.output) == "-" else args.output, **explicit)
    if str(args.output) == "-":
        print(text, end="")
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    return 0


def generate(preset: Optional[str] = None, output: Optional[Path] = None, **choices: Any) -> str:
    """The config text for ``preset`` (or the defaults) with ``choices`` (fields of :class:`Choices`)
    replacing the preset's; a comment header says what it is and how to train it (as ``output``,
    for a config that is not a preset as committed; a preset's own header names ``configs/<preset>.cfg``)."""
    from ..strategies import strategy_class

    if preset is not None and preset not in PRESETS:
        raise CLIError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    base = PRESETS[preset].choices if preset else Choices()
    try:
        chosen = replace(base, **choices)
    except TypeError as err:
        raise CLIError(f"unknown config choice: {err}") from err
    type_parts = (chosen.packed_types, chosen.shuffle_types, chosen.type_scoring) != (
        Choices.packed_types, Choices.shuffle_types, Choices.type_scoring)
    if chosen.stock and (chosen.prompt_layer is not None or "strategy" in choices or chosen.frozen
                         or chosen.adapter is not None or chosen.cats_text_pooling != "mean"
                         or chosen.head_lr_scale != 1.0 or chosen.query_texts is not None or chosen.cats_bag_of_words
                         or chosen.packed or type_parts or chosen.cats_loss_weight != 1.0):
        raise CLIError(f"the stock transformer+{chosen.stock_head} pipeline has no strategy, frozen backbone, "
                       "prompt layer, adapter, text pooling, bag of words, head learning rate, query text, "
                       "packed query or class loss weight choice")
    if type_parts and not chosen.packed:
        raise CLIError("--packed-types, --shuffle-types and --type-scoring are about the type parts of a packed "
                       "concept query: add --packed")
    if chosen.packed and not strategy_class(chosen.strategy).has_query_part:
        raise CLIError(f"--packed is for the strategies with a query part (hard, soft, deep, ...): strategy "
                       f"{chosen.strategy} already answers every type in one pass")
    if chosen.textcat_model != "ensemble" and not (chosen.stock and chosen.stock_head == "textcat"):
        raise CLIError(f"--textcat-model is a choice of the stock textcat ({STOCK_TEXTCAT}) only")
    if chosen.textcat_model not in TEXTCAT_MODELS:
        raise CLIError(f"textcat_model must be one of {', '.join(TEXTCAT_MODELS)}, not {chosen.textcat_model!r}")
    if chosen.stock_head not in STOCK_HEADS:
        raise CLIError(f"stock_head must be one of {', '.join(STOCK_HEADS)}, not {chosen.stock_head!r}")
    return _header(preset, chosen, output) + build_config(chosen).to_str() + "\n"


def build_config(choices: Choices):
    """The config as a thinc ``Config`` (not interpolated: ``${paths.train}`` stays a reference)."""
    import spacy
    from spacy.util import CONFIG_SECTION_ORDER, combine_score_weights
    from thinc.api import Config

    if choices.max_steps < 1:
        raise CLIError(f"max_steps must be a positive number of steps, not {choices.max_steps}")
    nlp = spacy.blank("en")  # creating a Language loads the factories' entry points
    config = Config(section_order=CONFIG_SECTION_ORDER).from_str(TRAINING_SECTIONS, interpolate=False)
    components = _stock_components(nlp, choices) if choices.stock else _softprompt_components(nlp, choices)
    config["nlp"]["pipeline"] = list(components)
    if choices.stock:
        config["nlp"]["batch_size"] = 128
    config["components"] = {name: block for name, block in sorted(components.items())}
    weights = [nlp.get_factory_meta(block["factory"]).default_score_weights for block in components.values()]
    config["training"]["score_weights"] = combine_score_weights(weights)
    if choices.stock and choices.stock_head == "spancat":  # the factory's weights name its default key, "sc":
        # spaCy would add them back and halve the score, so they are written as 0
        config["training"]["score_weights"] = {**{f"spans_sc_{m}": 0.0 for m in "fpr"},
                                               **{f"spans_{SPANCAT_SPANS_KEY}_{m}": float(m == "f") for m in "fpr"}}
    config["training"]["max_steps"] = choices.max_steps
    schedule = config["training"]["optimizer"]["learn_rate"]
    schedule["total_steps"] = choices.max_steps
    schedule["initial_rate"] = BOW_LEARN_RATE if choices.textcat_model == "bow" else LEARN_RATE[choices.frozen]
    for split in ("train", "dev"):
        if getattr(choices, split) is not None:
            config["paths"][split] = str(getattr(choices, split))
    return config


def _factory_block(nlp, factory: str) -> Dict[str, Any]:
    """``[components.<name>]`` as the factory's default config fills it."""
    return {"factory": factory, **copy.deepcopy(dict(nlp.get_factory_meta(factory).default_config))}


def _softprompt_components(nlp, choices: Choices) -> Dict[str, Dict[str, Any]]:
    block = _factory_block(nlp, "softprompt_ie")
    model = block["model"]
    model.update(strategy=choices.strategy, freeze_backbone=choices.frozen, backbone=choices.backbone)
    if choices.prompt_layer is not None:
        if choices.prompt_layer < 0:
            raise CLIError(f"--prompt-layer is a layer number (0 for input prompts), not {choices.prompt_layer}")
        model["prompt_layer"] = choices.prompt_layer
    if choices.adapter is not None:
        model["adapter"] = copy.deepcopy(choices.adapter)
    model["cats_text_pooling"] = choices.cats_text_pooling
    model["cats_bag_of_words"] = choices.cats_bag_of_words
    if not choices.head_lr_scale > 0:
        raise CLIError(f"--head-lr-scale must be above 0, not {choices.head_lr_scale}")
    model["head_lr_scale"] = float(choices.head_lr_scale)
    model.update(packed=choices.packed, packed_types=choices.packed_types, shuffle_types=choices.shuffle_types,
                 type_scoring=choices.type_scoring)
    if choices.gpu:
        model["mixed_precision"] = True
    if choices.query_texts is not None:
        block["query_texts"] = read_query_texts(Path(choices.query_texts))
    if not choices.cats_loss_weight > 0:
        raise CLIError(f"--cats-loss-weight must be above 0, not {choices.cats_loss_weight}")
    block["cats_loss_weight"] = float(choices.cats_loss_weight)
    return {"softprompt_ie": block}


def read_query_texts(path: Path) -> Dict[str, str]:
    """``--query-texts``: a JSON object of label -> question (both strings), or an error naming the file."""
    texts = read_json(path, "--query-texts: a JSON object of label -> question")
    if not isinstance(texts, dict) or not texts or not all(
            isinstance(k, str) and k.strip() and isinstance(v, str) and v.strip() for k, v in texts.items()):
        raise CLIError(f"--query-texts {path}: expected a JSON object of label -> question, both non-empty strings")
    keyed = [label for label in texts if ":" in label or "=" in label]
    if keyed:  # (the config was written, and then would not load)
        raise CLIError(f"--query-texts {path}: label {keyed[0]!r}: a label cannot hold ':' or '=' (a config key "
                       "cannot hold them); qualify it with '/'")
    labels = [label for label, _ in json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=lambda p: p)]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:  # (json keeps the last question without a word)
        raise CLIError(f"--query-texts {path}: {repeated[0]} is given more than once")
    return dict(texts)


def _stock_components(nlp, choices: Choices) -> Dict[str, Dict[str, Any]]:
    head = _factory_block(nlp, choices.stock_head)
    if choices.textcat_model == "bow":  # the ensemble's linear half alone: no transformer to read
        return {choices.stock_head: {**head, "model": head["model"]["linear_model"]}}
    transformer = _factory_block(nlp, "transformer")
    transformer["model"]["name"] = STOCK_DEFAULT_NAME if choices.backbone == "default" else choices.backbone
    transformer["model"]["mixed_precision"] = choices.gpu
    if choices.stock_head == "ner":  # as spaCy's own transformer configs: the transformer is the hidden layer
        head["model"]["use_upper"] = False
    if choices.stock_head == "spancat":
        head["spans_key"] = SPANCAT_SPANS_KEY
        head["suggester"] = {"@misc": "spacy.ngram_range_suggester.v1", "min_size": 1, "max_size": SPANCAT_MAX_WIDTH}
    if choices.textcat_model == "attention":  # spaCy's parametric-attention textcat, no bag of words
        head["model"] = {"@architectures": "spacy.TextCatParametricAttention.v1",
                         "exclusive_classes": head["model"]["linear_model"]["exclusive_classes"], "nO": None}
    # textcat: the factory's TextCatEnsemble.v2 (exclusive classes), its tok2vec the transformer
    head["model"]["tok2vec"] = {"@architectures": "spacy-transformers.TransformerListener.v1",
                                "grad_factor": 1.0, "pooling": {"@layers": "reduce_mean.v1"}, "upstream": "*"}
    return {"transformer": transformer, choices.stock_head: head}


def _header(preset: Optional[str], choices: Choices, output: Optional[Path]) -> str:
    """The comment lines on top: what the config is, how it was made, how to train it."""
    # the preset's own words while its kind of model is kept (--max-steps, --backbone ...); else what was made
    kept = preset and _kind(PRESETS[preset].choices) == _kind(choices)
    description = PRESETS[preset].description if kept else _describe(choices)
    if choices.textcat_model != "ensemble":
        description += " " + TEXTCAT_ABLATIONS[choices.textcat_model]
    as_committed = preset and choices == PRESETS[preset].choices  # configs/<preset>.cfg itself
    path = Path("configs", f"{preset}.cfg") if as_committed else Path(output or "config.cfg")
    command = ["python -m spacy_softprompt init-config", str(path)]
    if preset:
        command.append(f"--preset {preset}")
    start = PRESETS[preset].choices if preset else Choices()
    for field, flag in (("strategy", "--strategy"), ("backbone", "--backbone"), ("prompt_layer", "--prompt-layer"),
                        ("train", "--train"), ("dev", "--dev"), ("max_steps", "--max-steps"),
                        ("cats_text_pooling", "--cats-text-pooling"), ("head_lr_scale", "--head-lr-scale"),
                        ("query_texts", "--query-texts"), ("textcat_model", "--textcat-model"),
                        ("packed_types", "--packed-types"), ("type_scoring", "--type-scoring"),
                        ("cats_loss_weight", "--cats-loss-weight")):
        value = getattr(choices, field)
        if value != getattr(start, field):
            command.append(f"{flag} {value}")
    if choices.frozen != start.frozen:
        command.append("--frozen" if choices.frozen else "--no-frozen")
    for field, flag in (("cats_bag_of_words", "--cats-bag-of-words"), ("packed", "--packed"),
                        ("shuffle_types", "--shuffle-types")):
        if getattr(choices, field) and not getattr(start, field):
            command.append(flag)
    if choices.gpu:
        command.append("--gpu")
    paths = "" if choices.train and choices.dev else (
        " --paths.train corpus/train.spacy --paths.dev corpus/dev.spacy")
    lines = _wrap(description) + [
        f"# Made by: {' '.join(command)}  (do not edit: regenerate)",
        f"# Train: python -m spacy train {path}{paths} --output training/{path.stem}"
        + (" --gpu-id 0" if choices.gpu else ""),
    ]
    if not choices.stock:
        lines.append("# (--gpu-id 0 on a GPU; --components.softprompt_ie.model.backbone <hf id or folder> for another "
                     "backbone; prompt_layer 0: prompts at the input, k > 0: late prompts from layer k)")
    lines.append("# Overriding --training.max_steps? Override --training.optimizer.learn_rate.total_steps with it.")
    return "\n".join(lines) + "\n"


def _kind(choices: Choices) -> tuple:
    """What a preset's description speaks of: strategy, frozen or not, stock pipes, adapter."""
    return choices.strategy, choices.frozen, choices.stock, choices.stock_head, choices.adapter


def _describe(choices: Choices) -> str:
    """A preset's description when the choices match one, else a plain one."""
    for preset in PRESETS.values():
        if _kind(preset.choices) == _kind(choices):
            return preset.description
    adapter = f", a {choices.adapter['@misc'].split('.')[1]} adapter" if choices.adapter else ""
    return (f"softprompt_ie, strategy {choices.strategy!r}{adapter}, backbone "
            + ("frozen: only prompts and heads learn." if choices.frozen else "unfrozen."))


def _wrap(text: str, width: int = 100) -> List[str]:
    lines, line = [], "#"
    for word in text.split():
        if len(line) + 1 + len(word) > width:
            lines.append(line)
            line = "#"
        line += " " + word
    return lines + [line]
