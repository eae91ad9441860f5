"""Fixtures for remote runs through nnsight's real transport: a tiny random Llama saved to a
folder (with a byte-level BPE tokenizer trained here, so nothing is downloaded), the NDIF
test server (tests/remote/ndif_server.py) serving it from a subprocess on a free port, and the
same model loaded twice in this process: with ``remote=True`` (a weightless copy whose
traces go to the server) and locally, for the reference numbers.

The client is pointed at the server the way nnsight documents: ``CONFIG.API.HOST`` and the
key in ``NDIF_API_KEY`` (which `aw.load` hands to ``CONFIG.API.APIKEY``), set per test."""
from __future__ import annotations

import pytest
import torch
from ndif_server import NDIFServer  # this folder is on sys.path, as for every test folder here

import actwidgets as aw

API_KEY = "aw-test-key-7f3c9e21d4b8"  # distinctive, so finding it anywhere it should not be means a leak

CORPUS = [
    "The Eiffel Tower is located in the city of Paris.",
    "Paris is the capital of France, and Rome is the capital of Italy.",
    "When Mary and John went to the store, John gave a drink to Mary.",
    "The Mont Blanc is the highest mountain in the Alps, far from Paris and Rome.",
] * 20


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>")


@pytest.fixture(scope="session")
def api_key() -> str:
    return API_KEY


def save_tiny_llama(folder) -> str:
    """Write the tiny random Llama and its tokenizer to `folder` (also what bench/remote.py serves)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=False, bos_token_id=0, eos_token_id=0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> str:
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def ndif(tiny_dir):
    """The server process, started first so it loads while this process loads its models;
    stopped when the session ends."""
    server = NDIFServer(tiny_dir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def local_model(tiny_dir, ndif):
    return aw.load(tiny_dir)


@pytest.fixture(scope="session")
def _remote_model(tiny_dir, ndif):
    import nnsight
    from nnsight.modeling import huggingface

    with pytest.MonkeyPatch.context() as mp:
        # A folder has no Hub id to canonicalise; the server keys it by the same string.
        mp.setitem(huggingface._ID_CACHE, tiny_dir, tiny_dir)
        mp.setenv("NDIF_API_KEY", API_KEY)
        mp.setattr(nnsight.CONFIG.API, "APIKEY", nnsight.CONFIG.API.APIKEY)  # aw.load sets it: put it back after
        return aw.load(tiny_dir, remote=True)


@pytest.fixture
def remote_model(_remote_model, ndif, monkeypatch):
    """The remote model, with nnsight pointed at the test server and holding the key, for one test."""
    import nnsight
    from nnsight.modeling import huggingface

    monkeypatch.setitem(huggingface._ID_CACHE, _remote_model.name, _remote_model.name)
    monkeypatch.setattr(nnsight.CONFIG.API, "HOST", ndif.url)
    monkeypatch.setattr(nnsight.CONFIG.API, "APIKEY", API_KEY)
    ndif.reset()
    return _remote_model
