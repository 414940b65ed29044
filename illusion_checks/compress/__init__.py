"""Compress a reference model the way users do before deploying: prune (magnitude, Wanda, SparseGPT) or quantize."""

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
