"""aw.load and the adapter: the default model offline, the cache, clear load errors."""
import dataclasses
import os
import re
import shutil
import time

import pytest
import torch

import actwidgets as aw
from actwidgets._tokens import readable
from actwidgets._weights import _gguf_cache_path, default_gguf
from actwidgets.model import Adapter


def test_default_model_is_smollm2_and_answers_paris(default_model):
    assert default_model.n_layers == 30 and default_model.d_model == 576
    assert default_model.adapter.blocks == "model.layers"
    ids = default_model.encode("The Eiffel Tower is located in the city of")
    with torch.no_grad():
        logits = default_model.hf(ids).logits[0, -1]
    assert default_model.tokenizer.decode([int(logits.argmax())]) == " Paris"


def test_default_model_is_cached_after_first_load(default_model):
    cached = _gguf_cache_path(default_gguf())
    assert (cached / "config.json").exists() and list(cached.glob("*.safetensors"))
    start = time.perf_counter()
    again = aw.load()
    assert time.perf_counter() - start < 60  # a bound against hangs; bench/load.py measures speed
    assert again.n_layers == 30


def test_the_converted_copy_is_found_again_after_a_reinstall(tmp_path):
    """The same GGUF file written anew (a reinstalled wheel, another environment) has a new
    mtime, not new contents: it maps to the same converted copy, and a changed file does not."""
    original = default_gguf()
    copy = tmp_path / original.name
    shutil.copyfile(original, copy)
    os.utime(copy, (1_000_000, 1_000_000))
    assert _gguf_cache_path(copy) == _gguf_cache_path(original)
    with open(copy, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 1]))
    assert _gguf_cache_path(copy) != _gguf_cache_path(original)


def test_a_new_conversion_removes_the_old_copies_of_the_same_file(tmp_path):
    from actwidgets._weights import _drop_older_copies

    kept, old, recent, other = (tmp_path / name for name in (
        "SmolLM2.Q4_1-aaaa", "SmolLM2.Q4_1-bbbb", "SmolLM2.Q4_1-cccc", "Other.Q4_1-dddd"))
    for folder in (kept, old, recent, other):
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    for folder in (old, other):
        os.utime(folder, (time.time() - 3 * 86400,) * 2)
    _drop_older_copies(kept)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Other.Q4_1-dddd", "SmolLM2.Q4_1-aaaa", "SmolLM2.Q4_1-cccc"]


def test_gguf_first_load_builds_the_same_model_as_the_cache(tmp_path, monkeypatch, capfd, default_model):
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    def widget_bar(*args, **kwargs):  # tqdm.auto: an ipywidget in a notebook, a dead one once saved
        raise AssertionError("the conversion used transformers' own (widget) progress bar")

    monkeypatch.setattr(gguf_utils, "tqdm", widget_bar)
    monkeypatch.setenv("ACTWIDGETS_CACHE", str(tmp_path))
    fresh = aw.load()
    assert gguf_utils.tqdm is widget_bar  # put back after the load
    out = capfd.readouterr().out
    assert "converting" in out and "tensors" in out and "100%" in out  # a text bar with rate and time left
    assert list(tmp_path.iterdir()), "the converted weights were not cached"
    ids = default_model.encode("Hello world")
    with torch.no_grad():
        assert torch.equal(fresh.hf(ids).logits, default_model.hf(ids).logits)


def test_adapter_knows_llama_and_gpt2(tiny_model):
    assert tiny_model.n_layers == 3
    assert tiny_model.adapter.blocks in ("model.layers", "transformer.h")
    assert tiny_model.adapter.unembed == "lm_head"


def test_adapter_names_an_unknown_architecture():
    class Odd(torch.nn.Module):
        config = type("C", (), {"model_type": "oddformer"})()

        def get_output_embeddings(self):
            return None

    with pytest.raises(aw.ModelLoadError, match="Odd.*oddformer"):
        Adapter.for_model(Odd())


def test_unloadable_model_name_fails_fast_and_says_offline():
    start = time.perf_counter()
    with pytest.raises(aw.ModelLoadError, match="offline"):
        aw.load("no-such-org/no-such-model-xyz")
    assert time.perf_counter() - start < 30


def test_remote_without_key_says_so(monkeypatch):
    import nnsight

    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    monkeypatch.setattr(nnsight.CONFIG.API, "APIKEY", None, raising=False)
    with pytest.raises(aw.ModelLoadError, match="NDIF_API_KEY"):
        aw.load("meta-llama/Llama-3.1-8B", remote=True)


def test_input_checks(default_model):
    with pytest.raises(aw.InputError, match="empty"):
        default_model.encode("   ")
    with pytest.raises(aw.InputError, match="out of range.*30 layers"):
        default_model.check_layers([30])
    assert default_model.check_layers([-1]) == [29]
    with pytest.raises(aw.InputError, match="2 tokens"):
        default_model.single_token(" Parisxx")
    assert default_model.token_texts(default_model.encode("a b"))[-1] == " b"


def test_prompt_longer_than_context_is_refused(tiny_llama):
    with pytest.raises(aw.InputError, match="reads at most 256"):
        tiny_llama.encode("word " * 300)


def test_a_dtype_cast_keeps_computed_buffers_in_float32(tiny_llama):
    """Like from_pretrained(dtype=bf16): weights in bf16, rotary inv_freq still float32."""
    import copy

    model = aw.wrap(copy.deepcopy(tiny_llama.hf), tiny_llama.tokenizer, dtype=torch.bfloat16)
    assert {p.dtype for p in model.hf.parameters()} == {torch.bfloat16}
    assert model.hf.model.rotary_emb.inv_freq.dtype == torch.float32


# --- readable tokens (issue: byte pieces showed as U+FFFD) -----------------------------
def _bytes_back(label: str) -> bytes:
    """A label turned back into bytes: `<0xHH>` is one byte, anything else its UTF-8."""
    out, rest = b"", label
    while rest:
        if re.match(r"<0x[0-9A-F]{2}>", rest):
            out, rest = out + bytes([int(rest[3:5], 16)]), rest[6:]
        else:
            out, rest = out + rest[0].encode(), rest[1:]
    return out


@pytest.mark.parametrize("text", ["🚀 launch", "漢字 and é", "a 👩‍💻 codes"])
def test_token_labels_of_split_characters_show_bytes_not_replacement_chars(default_model, text):
    ids = default_model.tokenizer(text, add_special_tokens=False)["input_ids"]
    labels = default_model.token_texts(ids)
    assert all("\ufffd" not in label for label in labels)
    assert any(re.search(r"<0x[0-9A-F]{2}>", label) for label in labels)  # the case is exercised
    assert b"".join(_bytes_back(label) for label in labels).decode() == default_model.tokenizer.decode(ids)


def test_token_labels_are_decoded_once_per_id(default_model, monkeypatch):
    ids = default_model.tokenizer("a 🚀 and a 🚀 again", add_special_tokens=False)["input_ids"]
    fresh = readable(default_model.tokenizer, ids)
    model = dataclasses.replace(default_model, _texts={})  # nothing decoded yet
    decoded = []
    batch_decode = model.tokenizer.batch_decode
    monkeypatch.setattr(model.tokenizer, "batch_decode", lambda seqs, **kw: decoded.extend(seqs) or batch_decode(seqs, **kw))
    labels = model.token_texts(ids)
    assert labels == fresh and "<0xF0>" in "".join(labels)  # split characters still read as bytes
    assert sorted(seq[-1] for seq in decoded) == sorted(set(ids)) and len(set(ids)) < len(ids)  # after the anchor
    assert model.token_texts(list(reversed(ids))) == labels[::-1] and len(decoded) == len(set(ids))


def test_a_message_about_a_split_character_names_its_bytes(default_model):
    with pytest.raises(aw.InputError) as err:
        default_model.single_token("🚀")
    assert "\ufffd" not in str(err.value) and "<0xF0>" in str(err.value)


def test_sentencepiece_byte_fallback_pieces_read_as_their_bytes():
    from llama2_tokenizer import llama2_like

    tokenizer = llama2_like()
    ids = tokenizer("é🚀 Paris", add_special_tokens=False)["input_ids"]  # '▁' then bytes, no piece of their own
    labels = readable(tokenizer, ids)
    assert labels[1:7] == ["<0xC3>", "<0xA9>", "<0xF0>", "<0x9F>", "<0x9A>", "<0x80>"] and labels[-1] == " Paris"
    assert b"".join(_bytes_back(label) for label in labels).decode() == " é🚀 Paris"  # the first '▁' a space


def test_a_trace_builds_no_key_value_cache_unless_asked(default_model, tiny_model):
    """A trace reads activations: the cache a forward keeps by default (377 MB at 8,192
    tokens of the default model) is not built, unless asked for."""
    import nnsight

    for model in (default_model, tiny_model):
        ids = model.encode("The cat sat on the mat")
        with model.trace(ids):
            plain = nnsight.save(model.lm.output.cache)
        with model.trace(ids, use_cache=True):
            asked = nnsight.save(model.lm.output.cache)
        assert plain is None
        assert asked is not None and asked.get_seq_length() == ids.shape[1]


@pytest.mark.parametrize("given, expected", [("bfloat16", torch.bfloat16), ("bf16", torch.bfloat16),
                                             ("torch.float16", torch.float16), ("FP32", torch.float32),
                                             (torch.bfloat16, torch.bfloat16), (None, None)])
def test_a_dtype_may_be_named(given, expected):
    from actwidgets.model import check_dtype

    assert check_dtype(given) is expected


@pytest.mark.parametrize("given", ["int8", torch.int64, 16, "cuda"])
def test_a_dtype_that_is_not_a_float_says_which_are(given):
    from actwidgets.model import check_dtype

    with pytest.raises(aw.InputError, match=r"^dtype must be a floating-point torch dtype or its name "
                                            r"\('float32', 'bfloat16', 'float16'\), not "):
        check_dtype(given)


def test_wrap_refuses_what_is_not_a_transformers_model(tokenizer):
    for wrong in (None, "gpt2", torch.nn.Linear(3, 3)):
        with pytest.raises(aw.InputError, match="wrap takes a transformers causal LM"):
            aw.wrap(wrong, tokenizer)


def _tiny_config():
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)


def test_a_model_wrapped_twice_has_one_lock(tokenizer):
    """A re-run cell wraps the same weights again: its widgets and the old ones must not trace
    at the same time, so both wrappers hold the one lock of those weights."""
    from transformers import LlamaForCausalLM

    hf = LlamaForCausalLM(_tiny_config())
    first, again = aw.wrap(hf, tokenizer), aw.wrap(hf, tokenizer)
    assert first.lock is again.lock
    assert aw.wrap(LlamaForCausalLM(_tiny_config()), tokenizer).lock is not first.lock


def test_a_model_on_the_meta_device_is_a_load_error(tokenizer):
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        empty = LlamaForCausalLM(_tiny_config())
    with pytest.raises(aw.ModelLoadError, match="on the meta device, not loaded"):
        aw.wrap(empty, tokenizer)


def test_a_model_put_in_training_mode_is_refused_with_a_sentence(tokenizer):
    """Dropout makes every run differ: a widget says so, and runs again once the model is in eval mode."""
    from transformers import LlamaForCausalLM

    from actwidgets.methods import prefix_cache

    model = aw.wrap(LlamaForCausalLM(_tiny_config()), tokenizer)
    model.hf.train()
    widget = aw.Heatmap(model, "The cat sat").wait()
    assert widget.status == "error" and "training mode (model.hf.train() was called)" in widget.error
    # every way in is refused before a forward: a generation, and a shared prompt start that
    # would be computed with dropout and kept for the runs after eval()
    held = prefix_cache.cached_bytes()
    start = "The old keeper counted the boats at dawn and wrote their names in a book. " * 3
    with pytest.raises(aw.InputError, match="training mode"):
        aw.steering.steer_generate(model, "The cat sat", torch.ones(32), [0], 1.0, max_new_tokens=2)
    with pytest.raises(aw.InputError, match="training mode"):
        aw.patching.attribution_patching(model, start + "John gave it to", start + "Mary gave it to", (" Mary", " John"))
    assert prefix_cache.cached_bytes() == held
    model.hf.eval()
    widget.prompt = "The dog sat"
    assert widget.wait().status == "done", widget.error


@pytest.mark.parametrize("remote", ["yes", 1, None])
def test_remote_is_false_true_or_local(tokenizer, remote):
    """1 == True: it passed as remote and ran through nnsight's plain backend, without the key
    check, the queue status or cancel; "yes" failed later with "Invalid host URL"."""
    from transformers import LlamaForCausalLM

    with pytest.raises(aw.InputError, match=r"^remote must be False, True or 'local', not "):
        aw.wrap(LlamaForCausalLM(_tiny_config()), tokenizer, remote=remote)
    with pytest.raises(aw.InputError, match=r"^remote must be False, True or 'local', not "):
        aw.load("some/model", remote=remote)


def test_a_remote_model_takes_no_device_or_dtype():
    with pytest.raises(aw.InputError, match="NDIF chooses the device and dtype"):
        aw.load("meta-llama/Llama-3.1-8B", remote=True, dtype="bfloat16")


def test_a_folder_without_a_model_is_a_load_error(tmp_path):
    with pytest.raises(aw.ModelLoadError, match="Could not load .* offline"):
        aw.load(tmp_path)


def test_a_tokenizer_larger_than_the_model_is_named_at_the_first_prompt(tokenizer):
    """A mismatched tokenizer would index past the embedding (a raw IndexError inside the forward)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    small = aw.wrap(LlamaForCausalLM(config), tokenizer, name="tiny-1000")
    with pytest.raises(aw.InputError, match=r"gives token id [\d,]+ but tiny-1000 embeds 1,000 tokens: the tokenizer "
                                            r"is not this model's"):
        small.encode("The Eiffel Tower is in Paris")
    heatmap = aw.Heatmap(small, "The Eiffel Tower is in Paris").wait()
    assert heatmap.status == "error" and "the tokenizer is not this model's" in heatmap.error


def test_a_model_that_mixes_dense_and_moe_blocks_says_what_works(tokenizer):
    """DeepSeek, GLM-4.5 and Qwen2-MoE (mlp_only_layers) mix dense and MoE blocks; the adapter
    reads block 0. What reads MLP parts says so in a sentence (it was a raw AttributeError from
    nnsight's Envoy), and the rest runs."""
    import transformers

    config = transformers.Qwen2MoeConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
        shared_expert_intermediate_size=32, mlp_only_layers=[0], bos_token_id=0, eos_token_id=0, pad_token_id=0)
    model = aw.wrap(transformers.AutoModelForCausalLM.from_config(config), tokenizer, name="mixed")
    clean, corrupted = "When Mary and John went to the store, John gave a drink to", "When Mary and John went to the store, Mary gave a drink to"
    for widget in (aw.LogitAttribution(model, clean, " Mary"), aw.PatchingGrid(model, clean, corrupted, (" Mary", " John"), method="relp")):
        assert widget.wait(300).status == "error" and widget.error.startswith("The blocks of mixed are not all alike"), widget.error
    assert aw.Heatmap(model, clean).wait().status == "done"
