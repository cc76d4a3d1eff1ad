"""The project's GPU paths, run on a CUDA machine as a user types them, with what happened.

CI has no GPU, so no test reaches CUDA; a session lent one runs this there and commits its
report (docs/gpu_check/README.md and the JSON it writes):

    python docs/gpu_check.py --backbone PATH --out DIR [--steps N] [--label NAME]

Steps, each a command of the README's "GPU" section, timed, its exit status and last lines kept
(a failed step does not stop the ones after it):

1. ``spacy train configs/lora_frozen.cfg --gpu-id 0`` on ADE with ``mixed_precision = true``;
2. the ``evaluate`` verb on the trained pipeline, on the GPU and on the CPU (same scores?);
3. the ``annotate`` verb on 200 ADE test sentences, on the GPU and on the CPU: the records are
   compared note by note (concepts and relations, ignoring scores);
4. ``cats-curve --gpu-id 0``: softprompt_ie and spaCy's stock textcat on 25 smoking notes.

Reads corpus/ade and corpus/sdoh-smoking (``spacy project run convert``, ``convert-sdoh-status``).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def step(name: str, command: List[str], report: Dict[str, Any], timeout: int = 900) -> bool:
    """Run one command, keep its status, time and output tail in ``report``; True if it passed."""
    print(f"== {name}: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        status, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as err:
        status, output = "timeout", f"{err.stdout or ''}{err.stderr or ''}"
    seconds = round(time.perf_counter() - start, 1)
    tail = "\n".join(output.strip().splitlines()[-15:])
    report["steps"].append({"name": name, "command": " ".join(command), "status": status, "seconds": seconds,
                            "tail": tail})
    print(f"   -> {status} in {seconds} s\n{tail}\n", flush=True)
    return status == 0


def environment() -> Dict[str, Any]:
    import spacy
    import thinc
    import torch
    import transformers

    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "spacy": spacy.__version__, "thinc": thinc.__version__, "transformers": transformers.__version__,
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        import cupy

        env["cupy"] = cupy.__version__
    except ImportError as err:
        env["cupy"] = f"not importable ({err})"
    return env


def records(folder: Path) -> Dict[str, Any]:
    """note id -> its concepts and relations (offsets and labels) from an annotate JSONL output."""
    out = {}
    for shard in sorted(folder.glob("*.jsonl")):
        if shard.name == "errors.jsonl":
            continue
        for line in shard.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            concepts = sorted((c["start"], c["end"], c["label"]) for c in record.get("concepts", []))
            relations = sorted(json.dumps({k: v for k, v in r.items() if k != "score"}, sort_keys=True)
                               for r in record.get("relations", []))
            out[record["id"]] = (concepts, relations)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", required=True, help="backbone folder (on a GPU machine: no model hub)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs and gpu_check.json")
    parser.add_argument("--steps", type=int, default=60, help="training steps of the ADE run")
    parser.add_argument("--label", default="", help="what this run is, for the report")
    parser.add_argument("--prompt-layer", type=int, help="lora_frozen's prompt_layer (4) for a backbone of fewer layers")
    parser.add_argument("--no-cats", dest="cats", action="store_false", help="leave out the cats-curve step")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report: Dict[str, Any] = {"label": args.label, "backbone": args.backbone, "steps_trained": args.steps,
                              "environment": environment(), "steps": []}
    ade, train = ROOT / "corpus" / "ade", args.out / "ade"
    eval_every = max(1, args.steps // 4)
    trained = step("train on GPU, mixed precision", [
        PY, "-m", "spacy", "train", "configs/lora_frozen.cfg", "--output", str(train), "--gpu-id", "0",
        "--paths.train", str(ade / "train.spacy"), "--paths.dev", str(ade / "dev.spacy"),
        "--components.softprompt_ie.model.backbone", args.backbone,
        "--components.softprompt_ie.model.mixed_precision", "true",
        "--training.max_steps", str(args.steps), "--training.optimizer.learn_rate.total_steps", str(args.steps),
        "--training.eval_frequency", str(eval_every), "--corpora.dev.limit", "200",
        *(["--components.softprompt_ie.model.prompt_layer", str(args.prompt_layer)] if args.prompt_layer else [])],
        report)
    pipeline = train / "model-best"
    if trained:
        scores = {}
        for device, gpu in (("gpu", "0"), ("cpu", "-1")):
            path = args.out / f"scores_{device}.json"
            if step(f"evaluate on {device}", [PY, "-m", "spacy_softprompt", "evaluate", str(pipeline),
                                              str(ade / "test.spacy"), "--gpu-id", gpu, "--output", str(path)], report):
                scores[device] = json.loads(path.read_text())
        report["scores"] = {device: {k: v for k, v in s.items() if k.endswith("_f") and isinstance(v, float)}
                            for device, s in scores.items()}
        notes = args.out / "notes"
        notes.mkdir(exist_ok=True)
        import spacy
        from spacy.tokens import DocBin

        docs = list(DocBin().from_disk(ade / "test.spacy").get_docs(spacy.blank("en").vocab))[:200]
        for i, doc in enumerate(docs):
            (notes / f"note{i:03d}.txt").write_text(doc.text, encoding="utf-8")
        outputs = {}
        for device, gpu in (("gpu", "0"), ("cpu", "-1")):
            outputs[device] = args.out / f"annotate_{device}"
            step(f"annotate on {device}", [PY, "-m", "spacy_softprompt", "annotate", str(pipeline), str(notes),
                                           str(outputs[device]), "--gpu-id", gpu, "--overwrite"], report)
        gpu_records, cpu_records = records(outputs["gpu"]), records(outputs["cpu"])
        report["annotate_agreement"] = {
            "notes": len(cpu_records), "notes_on_gpu": len(gpu_records),
            "same": sum(gpu_records.get(k) == v for k, v in cpu_records.items()),
            "concepts_cpu": sum(len(v[0]) for v in cpu_records.values()),
            "concepts_gpu": sum(len(v[0]) for v in gpu_records.values())}
    smoking = ROOT / "corpus" / "sdoh-smoking"
    if args.cats:
        step("cats-curve on GPU", [
            PY, "-m", "spacy_softprompt", "cats-curve", "--systems", "configs/finetune.cfg",
            "configs/stock_transformer_textcat.cfg", "--train", str(smoking / "train.spacy"),
            "--dev", str(smoking / "dev.spacy"), "--test", str(smoking / "test.spacy"), "--sizes", "25",
            "--seeds", "0", "--max-steps", "27", "--eval-frequency", "27", "--gpu-id", "0", "--backbone", args.backbone,
            "--runs", str(args.out / "cats"), "--output", str(args.out / "cats.md"), "--no-plot"], report)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in report.items() if k != "steps"}, indent=2))
    return 0 if all(s["status"] == 0 for s in report["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
