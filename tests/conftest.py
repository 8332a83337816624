"""Shared fixtures: tiny random models built offline, once per test session."""

from __future__ import annotations

import os

import pytest

# Two cores: keep each test process to one intra-op thread pool so concurrent
# subprocess tests do not thrash, and keep hub access off (no downloads in tests).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory):
    """tiny_model_factory(arch="gpt2", **shape) -> path of a random model folder (cached per shape)."""
    from rlhf.core.tiny import build_tiny_model

    cache: dict = {}

    def make(arch: str = "gpt2", **shape):
        key = (arch, tuple(sorted(shape.items())))
        if key not in cache:
            cache[key] = build_tiny_model(tmp_path_factory.mktemp(f"tiny-{arch}"), arch=arch, **shape)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_gpt2(tiny_model_factory):
    return tiny_model_factory("gpt2")


@pytest.fixture(scope="session")
def templateless_gpt2(tiny_gpt2, tmp_path_factory):
    """The tiny model without a chat template, as GPT-2 and most base models ship."""
    import json
    import shutil

    from rlhf.core.models import load_tokenizer

    path = tmp_path_factory.mktemp("base") / "model"
    shutil.copytree(tiny_gpt2, path)
    (path / "chat_template.jinja").unlink()
    config = json.loads((path / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    assert not load_tokenizer(str(path)).chat_template
    return path
