"""Compress a reference model the way users do before deploying: prune (magnitude, Wanda, SparseGPT) or quantize.

    spec = parse_spec("wanda:2:4")            # ValueError listing the valid forms on a bad spec
    texts = calibration_texts("english", pool, eval_contexts, langs, seed=0)["*"]
    ids = calibration_batch(tokenizer, texts, nsamples=128, seqlen=2048, seed=0)
    report = compress_model(model, spec, ids if spec.needs_calibration else None, device)
    model = report.model                      # the same object, except for bnb-int8 / bnb-nf4
    save_compressed(model, tokenizer, "out/")  # safetensors, renamed into place when complete

Pruning touches every nn.Linear inside the decoder layers, never embeddings, norms or lm_head,
and runs one decoder layer at a time on `device`, feeding each layer the outputs of the
already-pruned layers before it.
"""

from .apply import CompressionReport, compress_model
from .calibration import calibration_batch, calibration_texts, fingerprint
from .save import save_compressed
from .spec import VALID_FORMS, CompressionSpec, parse_spec

__all__ = [
    "VALID_FORMS",
    "CompressionReport",
    "CompressionSpec",
    "calibration_batch",
    "calibration_texts",
    "compress_model",
    "fingerprint",
    "parse_spec",
    "save_compressed",
]
