"""Cross-check the tool's own pruning against llm-compressor's, as an independent oracle.

For each pair (wanda:0.5 vs llmc:wanda:0.5, sparsegpt:0.5 vs llmc:sparsegpt:0.5) on the offline
`smollm2-135m`, both specs run through the library API (`evaluate`) with the same calibration ids
(the tool's pipeline: same texts, samples, seqlen, seed and tokenizer), each saving its compressed
model. Then it measures:

1. mask agreement: the share of identical zero-mask entries (weight == 0) of every nn.Linear in the
   decoder layers, per layer and per linear kind (q, k, v, o, gate, up, down), with each side's
   sparsity; embeddings and lm_head are checked to stay dense (as zero-free as the reference's);
2. fate agreement: over the items the reference both produced and recognized, the share with the
   same fate, a 4x4 confusion table (rows: the tool, columns: llm-compressor), and the dissociation
   rate and retention of both side by side.

The last line printed is JSON: per method the overall mask agreement and the fate agreement.
Everything (results cache, converted GGUF, compressed models) lives in a private work folder, so no
user cache is touched. Run from the repository root:

    ILLUSION_LLMC_PYTHON=.venv-llmc/bin/python OMP_WAIT_POLICY=PASSIVE .venv/bin/python \\
        benchmarks/crosscheck_llmc.py [--items 12] [--langs en] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

PAIRS = (("wanda:0.5", "llmc:wanda:0.5"), ("sparsegpt:0.5", "llmc:sparsegpt:0.5"))
REFERENCE = "smollm2-135m"
KINDS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
FATES = ("kept", "mc_only", "produced_only", "lost")
SHORT = {"kept": "kept", "mc_only": "mc_only", "produced_only": "prod_only", "lost": "lost"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line: items per language, languages, and an optional work folder to keep."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=12, help="items per language (default 12)")
    parser.add_argument("--langs", default="en", help="comma-separated languages (default en; e.g. en,de)")
    parser.add_argument("--work", default=None,
                        help="work folder to use and keep (caches, saved models); default: a temp folder, removed")
    args = parser.parse_args(argv)
    args.langs = tuple(lang.strip() for lang in args.langs.split(",") if lang.strip())
    if args.items < 1 or not args.langs:
        parser.error(f"--items must be at least 1 and --langs name a language, but are {args.items} and {args.langs}")
    return args


def folder_name(spec_text: str) -> str:
    """A folder name for a spec: `llmc:wanda:0.5` -> `llmc-wanda-0.5`."""
    return spec_text.replace(":", "-")


def run_spec(spec_text: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Evaluate one spec (saving its compressed model under work/saved); its results, seconds and phases."""
    from illusion_checks import EvaluationSpec, evaluate

    saved = work / "saved" / folder_name(spec_text)
    spec = EvaluationSpec(model=REFERENCE, compress=spec_text, dataset="fixtures", langs=args.langs,
                          items=args.items, calibration="english", calibration_samples=16, calibration_seqlen=256,
                          save_compressed=str(saved), cache_dir=str(work / "results"), no_reachability=True,
                          device="cpu", dtype="float32")
    start = time.perf_counter()
    outcome = evaluate(spec, log=lambda message: print(f"  [{spec_text}] {message}", flush=True))
    seconds = time.perf_counter() - start
    phases = dict(outcome.stats.phase_seconds) if outcome.stats else {}
    print(f"  [{spec_text}] done in {seconds:.1f} s; phases: "
          + ", ".join(f"{name} {value:.1f} s" for name, value in phases.items()), flush=True)
    return {"results": outcome.results, "seconds": seconds, "phases": phases, "saved": saved}


def zero_masks(folder: str) -> tuple[dict[tuple[int, str], Any], dict[str, float]]:
    """Per (decoder layer, linear kind) the zero mask of a saved model's weight, and the zero share of
    its embeddings and lm_head. Loaded dequantized on the CPU in float32."""
    import torch

    from illusion_checks.backends.hf.load import load_model
    from illusion_checks.compress.catcher import decoder_layers
    from illusion_checks.compress.prune import layer_linears

    model = load_model(folder, device="cpu", dtype="float32").model
    masks: dict[tuple[int, str], torch.Tensor] = {}
    weights: dict[tuple[int, str], torch.Tensor] = {}
    for index, layer in enumerate(decoder_layers(model)):
        for name, linear in layer_linears(layer).items():
            key = (index, name.split(".")[-1])
            masks[key] = linear.weight.detach() == 0
            weights[key] = linear.weight.detach().clone()
    embed, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    dense = {"embed_tokens": float((embed == 0).float().mean()), "lm_head": float((head == 0).float().mean()),
             "tied": embed.data_ptr() == head.data_ptr()}
    del model
    return {"masks": masks, "weights": weights}, dense


def pooled(keys: list[tuple[int, str]], ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, float]:
    """Over the linears `keys`: the share (and count) of identical mask entries, each side's sparsity,
    and the relative difference of the weights (||A - B|| / ||A||)."""
    same = total = zeros_a = zeros_b = 0
    diff = norm = 0.0
    for key in keys:
        a, b = ours["masks"][key], theirs["masks"][key]
        same += int((a == b).sum())
        total += a.numel()
        zeros_a, zeros_b = zeros_a + int(a.sum()), zeros_b + int(b.sum())
        diff += float((ours["weights"][key] - theirs["weights"][key]).pow(2).sum())
        norm += float(ours["weights"][key].pow(2).sum())
    return {"agree": same / total, "n_diff": total - same, "sparsity_tool": zeros_a / total,
            "sparsity_llmc": zeros_b / total, "rel_weight_diff": (diff / norm) ** 0.5 if norm else 0.0}


def keeps_zero_share(values: dict[str, float], reference: dict[str, float]) -> bool:
    """Whether embed_tokens and lm_head hold exactly the reference's zero share (nothing pruned there)."""
    return all(values[name] == reference[name] for name in ("embed_tokens", "lm_head"))


def mask_agreement(ours_folder: Path, llmc_folder: Path, reference_dense: dict[str, float]) -> dict[str, Any]:
    """Per decoder layer, per linear kind and overall: mask agreement and sparsity; and whether the
    embeddings and lm_head kept the reference's zero share (dense) in both models."""
    ours, dense_ours = zero_masks(str(ours_folder))
    theirs, dense_llmc = zero_masks(str(llmc_folder))
    assert ours["masks"].keys() == theirs["masks"].keys(), "the two models have different decoder linears"
    keys = sorted(ours["masks"])
    layers = sorted({index for index, _ in keys})
    dense = {side: {**values, "dense": keeps_zero_share(values, reference_dense)}
             for side, values in (("tool", dense_ours), ("llmc", dense_llmc))}
    return {"per_layer": {index: pooled([k for k in keys if k[0] == index], ours, theirs) for index in layers},
            "per_kind": {kind: pooled([k for k in keys if k[1] == kind], ours, theirs)
                         for kind in KINDS if any(k[1] == kind for k in keys)},
            "overall": pooled(keys, ours, theirs), "dense": dense}


def reference_zero_share() -> dict[str, float]:
    """The reference's own zero share in embeddings and lm_head (its GGUF dequantization may hold a few)."""
    from illusion_checks.backends.hf.load import load_model

    model = load_model(REFERENCE, device="cpu", dtype="float32").model
    embed, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    return {"embed_tokens": float((embed == 0).float().mean()), "lm_head": float((head == 0).float().mean())}


def fate_agreement(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Over items with a fate on either side: the share with the same fate and the confusion counts
    (tool fate, llmc fate); over all items, how often the compressed FF correctness and MC choice agree."""
    by_id = {item["id"]: item for item in theirs["items"]}
    confusion: Counter[tuple[str, str]] = Counter()
    ff_same = mc_same = common = 0
    for item in ours["items"]:
        other = by_id.get(item["id"])
        if other is None:
            continue
        common += 1
        ff_same += item["compressed"]["ff"]["correct"] == other["compressed"]["ff"]["correct"]
        mc_same += item["compressed"]["mc"]["choice"] == other["compressed"]["mc"]["choice"]
        if item["fate"] is not None or other["fate"] is not None:
            confusion[(item["fate"] or "-", other["fate"] or "-")] += 1
    fated = sum(confusion.values())
    same = sum(count for (a, b), count in confusion.items() if a == b)
    return {"n_items": common, "n_fated": fated, "agree": same / fated if fated else None,
            "confusion": confusion, "ff_same": ff_same / max(1, common), "mc_choice_same": mc_same / max(1, common)}


def summary_rows(ours: dict[str, Any], theirs: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(scope, tool summary, llmc summary) per language, then overall."""
    rows = [(lang, ours["summary"]["per_language"][lang], theirs["summary"]["per_language"].get(lang, {}))
            for lang in ours["summary"]["per_language"]]
    return rows + [("overall", ours["summary"]["overall"], theirs["summary"]["overall"])]


def fmt(value: Any, digits: int = 3) -> str:
    """A number at `digits` decimals, or '-' for None / missing."""
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def print_masks(title: str, masks: dict[str, Any]) -> None:
    """The mask table: per layer, per kind, overall; then the dense check."""
    print(f"\n== {title}: zero-mask agreement (tool vs llmc) ==")
    print(f"{'scope':<10} {'agree':>7} {'n.diff':>8} {'sp.tool':>8} {'sp.llmc':>8} {'rel.dW':>7}")
    rows = [(f"layer {i:>2}", v) for i, v in masks["per_layer"].items()]
    rows += [(kind, v) for kind, v in masks["per_kind"].items()] + [("overall", masks["overall"])]
    for label, v in rows:
        print(f"{label:<10} {v['agree']:>7.4f} {v['n_diff']:>8} {v['sparsity_tool']:>8.6f} {v['sparsity_llmc']:>8.6f} "
              f"{v['rel_weight_diff']:>7.4f}")
    for side, dense in masks["dense"].items():
        print(f"dense check {side:<4}: embed_tokens zeros {dense['embed_tokens']:.2e}, lm_head zeros "
              f"{dense['lm_head']:.2e}, tied {dense['tied']}, same zero share as the reference: {dense['dense']}")


def print_fates(title: str, fates: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    """The fate confusion table and the summary figures side by side."""
    print(f"\n== {title}: fates (rows: tool, columns: llmc) ==")
    columns = [*FATES, "-"] if any("-" in pair for pair in fates["confusion"]) else list(FATES)
    print(f"{'':<10}" + "".join(f"{SHORT.get(c, c):>10}" for c in columns))
    for row in columns:
        print(f"{SHORT.get(row, row):<10}" + "".join(f"{fates['confusion'][(row, c)]:>10}" for c in columns))
    print(f"same fate: {fmt(fates['agree'])} of {fates['n_fated']} fated items; over all {fates['n_items']} items: "
          f"compressed FF correctness same {fates['ff_same']:.3f}, MC choice same {fates['mc_choice_same']:.3f}")
    print(f"{'scope':<8} {'n_bc':>5} {'diss.tool':>10} {'diss.llmc':>10} {'ret.tool':>9} {'ret.llmc':>9} "
          f"{'FF.tool':>8} {'FF.llmc':>8} {'MC.tool':>8} {'MC.llmc':>8}")
    for scope, a, b in summary_rows(ours, theirs):
        acc_a, acc_b = a["acc"]["compressed"], b.get("acc", {}).get("compressed", {})
        print(f"{scope:<8} {a['n_both_correct']:>5} {fmt(a['dissociation_rate']):>10} "
              f"{fmt(b.get('dissociation_rate')):>10} {fmt(a['retention']):>9} {fmt(b.get('retention')):>9} "
              f"{fmt(acc_a['ff']):>8} {fmt(acc_b.get('ff')):>8} {fmt(acc_a['mc']):>8} {fmt(acc_b.get('mc')):>8}")


def compare_pair(pair: tuple[str, str], args: argparse.Namespace, work: Path,
                 reference_dense: dict[str, float]) -> dict[str, Any]:
    """Run both specs of a pair, print their mask and fate comparison; the figures for the JSON line."""
    ours_spec, llmc_spec = pair
    ours, theirs = run_spec(ours_spec, args, work), run_spec(llmc_spec, args, work)
    masks = mask_agreement(ours["saved"], theirs["saved"], reference_dense)
    fates = fate_agreement(ours["results"], theirs["results"])
    title = f"{ours_spec} vs {llmc_spec}"
    print_masks(title, masks)
    print_fates(title, fates, ours["results"], theirs["results"])
    print(f"run time: {ours_spec} {ours['seconds']:.1f} s, {llmc_spec} {theirs['seconds']:.1f} s")
    method = ours_spec.split(":")[0]
    return {"method": method, "mask_agreement": round(masks["overall"]["agree"], 6),
            "sparsity_tool": round(masks["overall"]["sparsity_tool"], 6),
            "sparsity_llmc": round(masks["overall"]["sparsity_llmc"], 6),
            "fate_agreement": None if fates["agree"] is None else round(fates["agree"], 6),
            "n_fated": fates["n_fated"], "dense": all(d["dense"] for d in masks["dense"].values()),
            "seconds": {ours_spec: round(ours["seconds"], 1), llmc_spec: round(theirs["seconds"], 1)}}


def prepare_environment(work: Path) -> None:
    """A private cache for everything the run writes, offline hub access, and a clear error when
    llm-compressor's Python is not named."""
    os.environ["ILLUSION_CHECKS_CACHE"] = str(work / "cache")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    python = os.environ.get("ILLUSION_LLMC_PYTHON")
    if not python or not Path(python).exists():
        raise SystemExit(f"ILLUSION_LLMC_PYTHON must name llm-compressor's Python (e.g. .venv-llmc/bin/python), "
                         f"but is {python!r}")


def main(argv: list[str]) -> int:
    """Run both pairs in a private work folder, print their tables and the closing JSON line."""
    args = parse_args(argv)
    work = Path(args.work).resolve() if args.work else Path(tempfile.mkdtemp(prefix="crosscheck-llmc-"))
    work.mkdir(parents=True, exist_ok=True)
    prepare_environment(work)
    print(f"crosscheck llmc: {REFERENCE}, langs {','.join(args.langs)}, {args.items} items each, calibration "
          f"english 16 x 256; work folder {work}", flush=True)
    start = time.perf_counter()
    try:
        reference_dense = reference_zero_share()
        figures = [compare_pair(pair, args, work, reference_dense) for pair in PAIRS]
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - start:.1f} s")
    print(json.dumps({"model": REFERENCE, "langs": list(args.langs), "items": args.items,
                      "methods": {f.pop("method"): f for f in figures}}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
