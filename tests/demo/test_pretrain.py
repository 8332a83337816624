"""`rlhf pretrain`: the loss falls, the model learns the world's facts, and the cache is reused."""

from __future__ import annotations

import json

import pytest
import torch

from rlhf.config import ConfigError, load_config
from rlhf.demo.pretrain import SHAPES, PretrainConfig, cache_dir, main, pack_blocks


def small_config(tmp_path, **kw) -> PretrainConfig:
    values = dict(sizes=["small"], steps=60, documents=1500, heldout_documents=100, block_size=64, batch_size=8,
                  logging_steps=10, cache=str(tmp_path / "cache"))
    values.update(kw)
    return PretrainConfig(**values)


def test_sizes_span_twenty_five_times_in_parameters():
    from transformers import AutoModelForCausalLM

    from rlhf.core.tiny import model_config
    from rlhf.world import World

    vocab = len(World(0).tokenizer())
    counts = {s: sum(p.numel() for p in AutoModelForCausalLM.from_config(
        model_config("gpt2", vocab, max_len=256, **shape)).parameters()) for s, shape in SHAPES.items()}
    assert counts["small"] < counts["medium"] < counts["large"]
    assert counts["large"] / counts["small"] >= 25
    assert 2 * sum(counts.values()) < 40e6  # bf16: the three shipped bases fit the package's 40 MB


def test_pack_blocks_joins_documents_with_eos_and_drops_the_partial_row():
    from rlhf.world import World

    tok = World(0).tokenizer()
    docs = ["the cat is red.", "the dog has 4 legs."]
    blocks = pack_blocks(docs * 10, tok, 8)
    stream = []
    for d in docs * 10:
        stream += tok(d, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert blocks.shape == (len(stream) // 8, 8)
    assert blocks.flatten().tolist() == stream[: blocks.numel()]


def test_loss_falls_and_a_second_run_reuses_the_cached_model(tmp_path):
    config = small_config(tmp_path)
    first = main(config, str(tmp_path / "run1"))
    # Uniform guessing over ~600 tokens is 6.4 nats; a trained model must be far below it.
    assert first["pretrain/small/loss_last"] < first["pretrain/small/loss_first"] - 1.0
    assert first["pretrain/small/heldout_ppl"] < 0.25 * 600
    assert first["pretrain/small/reused"] == 0
    path = json.loads((tmp_path / "run1" / "models.json").read_text())["small"]
    assert path == str(cache_dir(config, "small"))
    stamp = (cache_dir(config, "small") / "model.safetensors").stat().st_mtime_ns

    second = main(config, str(tmp_path / "run2"))
    assert second["pretrain/small/reused"] == 1
    assert second["pretrain/small/heldout_ppl"] == pytest.approx(first["pretrain/small/heldout_ppl"])
    assert (cache_dir(config, "small") / "model.safetensors").stat().st_mtime_ns == stamp  # not rewritten

    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)  # a plain transformers folder
    assert model.config.model_type == "gpt2"
    with safe_open(str(cache_dir(config, "small") / "model.safetensors"), "pt") as f:  # stored in bf16
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"torch.bfloat16"}
    # bf16 rounding of a trained model's weights costs it almost nothing
    assert first["pretrain/small/heldout_ppl_bf16"] == pytest.approx(first["pretrain/small/heldout_ppl"], rel=0.02)


def test_a_killed_pretraining_resumes_from_its_checkpoint_to_the_same_weights(tmp_path, monkeypatch):
    """A 100-minute pretraining killed near its end must not start over, nor give other weights."""
    import rlhf.demo.pretrain as pretrain
    from safetensors.torch import load_file

    whole = small_config(tmp_path, steps=40, save_steps=15, cache=str(tmp_path / "whole"))
    main(whole, str(tmp_path / "run-whole"))

    killed = small_config(tmp_path, steps=40, save_steps=15, cache=str(tmp_path / "killed"))
    real_check = pretrain.check_finite

    def kill_at_step_33(loss, step, *rest):
        if step == 33:
            raise KeyboardInterrupt
        return real_check(loss, step, *rest)

    monkeypatch.setattr(pretrain, "check_finite", kill_at_step_33)
    with pytest.raises(KeyboardInterrupt):
        main(killed, str(tmp_path / "run-killed"))
    final = cache_dir(killed, "small")
    partial = pretrain.partial_dir(final)
    assert not final.exists() and torch.load(partial / "state.pt", weights_only=True)["step"] == 30
    monkeypatch.setattr(pretrain, "check_finite", real_check)

    resumed = main(killed, str(tmp_path / "run-resumed"))
    assert resumed["pretrain/small/reused"] == 0 and not partial.exists()
    assert json.loads((final / "pretrain.json").read_text())["resumed_at"] == 30
    a, b = load_file(str(cache_dir(whole, "small") / "model.safetensors")), load_file(str(final / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_shipped_base_whose_name_matches_is_used_without_training(tmp_path, monkeypatch):
    """The package ships the default world's bases: a folder in rlhf/demo/bases/ named as the cache would name
    it (the hash of the config and of the world's text) is used as it is, and nothing is trained."""
    import shutil

    from rlhf.demo import pretrain

    config = small_config(tmp_path)
    main(config, str(tmp_path / "train"))
    shipped = tmp_path / "bases"
    shipped.mkdir()
    shutil.move(str(cache_dir(config, "small")), shipped / cache_dir(config, "small").name)
    monkeypatch.setattr(pretrain, "SHIPPED", shipped)
    monkeypatch.setattr(pretrain, "train_size", lambda *a, **k: pytest.fail("a shipped base must not be retrained"))
    metrics = main(config, str(tmp_path / "use"))
    assert metrics["pretrain/small/shipped"] == 1
    assert json.loads((tmp_path / "use" / "models.json").read_text())["small"].startswith(str(shipped))
    assert not cache_dir(config, "small").exists()


def test_cache_key_changes_with_what_decides_the_weights(tmp_path):
    base = small_config(tmp_path)
    assert cache_dir(base, "small") == cache_dir(small_config(tmp_path, logging_steps=5), "small")
    assert cache_dir(base, "small") != cache_dir(small_config(tmp_path, steps=61), "small")
    assert cache_dir(base, "small") != cache_dir(small_config(tmp_path, seed=1), "small")
    assert cache_dir(base, "small").name.startswith("world-0-small-")


def test_cache_key_changes_when_the_worlds_text_changes(tmp_path, monkeypatch):
    """A change to the world's code (its text, its vocabulary) must not reuse a model trained on the old text:
    a stale cached model has a different tokenizer from the freshly trained sizes."""
    from rlhf.world import World

    base = small_config(tmp_path)
    before = cache_dir(base, "small")
    original = World.pretraining_text
    monkeypatch.setattr(World, "pretraining_text", lambda self, n, split="train": original(self, n, split)[::-1])
    assert cache_dir(base, "small") != before


def test_a_half_written_model_is_not_taken_for_a_cached_one(tmp_path):
    from rlhf.demo.pretrain import cached_summary

    config = small_config(tmp_path)
    folder = cache_dir(config, "small")
    folder.mkdir(parents=True)
    (folder / "pretrain.json").write_text("{}")  # no config.json: an interrupted copy
    assert cached_summary(folder) is None


def test_bad_config_values_fail_with_the_key():
    with pytest.raises(ConfigError, match="unknown size"):
        load_config(PretrainConfig, None, ["sizes=[tiny]"])
    with pytest.raises(ConfigError, match="arch"):
        load_config(PretrainConfig, None, ["arch=bert"])


def test_cli_help_lists_the_config_keys(capsys):
    from rlhf.cli import main as cli

    with pytest.raises(SystemExit):
        cli(["pretrain", "--help"])
    assert "block_size" in capsys.readouterr().out


def test_every_shipped_base_belongs_to_the_current_world_and_default_recipe():
    """A change to the world's text or vocabulary, or to the default recipe, renames the bases it needs: the
    shipped folders must then be retrained (`rlhf pretrain`) and replaced, or every demo trains for ~100 min."""
    from rlhf.demo.pretrain import SHIPPED, world_fingerprint

    config = PretrainConfig()
    fingerprint = world_fingerprint(config)
    wanted = {size: cache_dir(config, size, fingerprint).name for size in config.sizes}
    shipped = sorted(p.name for p in SHIPPED.iterdir() if p.is_dir())
    assert shipped and set(shipped) <= set(wanted.values()), (
        f"shipped bases {shipped} do not match this world and recipe {wanted}: run `rlhf pretrain` and ship its folders")
    for name in shipped:
        summary = json.loads((SHIPPED / name / "pretrain.json").read_text())
        assert (SHIPPED / name / "model.safetensors").stat().st_size < 40e6 / 3
        assert summary["steps"] == config.steps and summary["heldout_ppl_bf16"] < 3.0
