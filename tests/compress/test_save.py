"""save_compressed: safetensors that plain transformers loads, written atomically."""

from __future__ import annotations

import pytest
import torch

from illusion_checks.compress import compress_model, parse_spec, save_compressed
from tests.helpers.tiny import tiny_calibration, tiny_lm


def test_pruned_model_round_trips_through_plain_transformers(arch, tmp_path):
    from transformers import AutoModelForCausalLM

    model = tiny_lm(arch)
    compress_model(model, parse_spec("wanda:2:4"), tiny_calibration())
    target = save_compressed(model, None, tmp_path / "pruned")
    assert (target / "model.safetensors").is_file() and (target / "config.json").is_file()
    assert not list(tmp_path.glob(".pruned*"))  # no staging directory left behind
    loaded = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight


def test_overwrites_an_existing_directory_whole(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale.txt").write_text("old", encoding="utf-8")
    save_compressed(tiny_lm("llama"), None, target)
    assert not (target / "stale.txt").exists() and (target / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_failed_save_leaves_the_old_directory_and_no_debris(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("old", encoding="utf-8")

    class Broken:
        def save_pretrained(self, path, **kwargs):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_compressed(Broken(), None, target)
    assert (target / "keep.txt").read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
