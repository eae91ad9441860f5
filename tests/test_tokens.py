"""Token labels on a SentencePiece tokenizer like Llama-2's (tests/llama2_tokenizer.py): each
token's label is its own, keeps the space it starts with, and reads back as that token, in a
label, a typed target, an id and a click handed from one widget to another."""
from __future__ import annotations

from collections import Counter

import pytest
import torch

import actwidgets as aw
from llama2_tokenizer import SENTENCES, llama2_like


@pytest.fixture(scope="module")
def model():
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = llama2_like()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, bos_token_id=1, eos_token_id=2)
    return aw.wrap(LlamaForCausalLM(config).eval(), tokenizer, name="tiny-llama2-tokenizer")


def test_a_prompts_tokens_keep_their_spaces(model):
    """Decoded alone, '▁Mary' reads 'Mary' (the decoder strips the text's first space): the row
    read "WhenMaryand...", and '▁Paris' and 'Paris' had one label."""
    labels = model.token_texts(model.encode(SENTENCES[0])[0])
    assert labels[:4] == ["<s>", " When", " Mary", " and"]
    assert "".join(labels[1:]) == " " + SENTENCES[0]
    paris, bare = (model.tokenizer.convert_tokens_to_ids(p) for p in ("▁Paris", "Paris"))
    assert model.token_texts([paris, bare]) == [" Paris", "Paris"]


def test_every_label_is_its_own_tokens_and_reads_back_as_it(model):
    """Byte-fallback tokens read as their pieces: decoded, '<0x41>' read 'A', the label of 'A',
    and 82 of the 419 labels read back as another token (or none)."""
    n = len(model.tokenizer)
    labels = model.token_texts(range(n))
    assert [label for label, count in Counter(labels).items() if count > 1] == []
    assert labels[model.tokenizer.convert_tokens_to_ids("<0x41>")] == "<0x41>"
    assert [i for i in range(n) if model.single_token(labels[i]) != i] == []


def test_a_target_by_text_or_by_id_is_the_token_it_names(model):
    prompt = SENTENCES[2].rsplit(" ", 1)[0]
    with torch.no_grad():
        probs = torch.softmax(model.hf(model.encode(prompt)).logits[0, -1], -1)
    for text, piece in ((" Paris", "▁Paris"), ("Paris", "Paris")):
        token = model.tokenizer.convert_tokens_to_ids(piece)
        for target in (text, token):
            lens = aw.LogitLens(model, prompt, target=target).wait()
            assert lens.status == "done" and lens.target == text, (target, lens.error)
            assert float(lens.data.target_prob[-1, -1]) == pytest.approx(float(probs[token]), rel=1e-4)


@pytest.mark.parametrize("piece", ["Paris", "<0x54>", "▁"])
def test_a_lens_click_hands_on_the_token_the_lens_showed(model, piece):
    """The lens hands DLA its top-1 token by label: 'Paris' (no space) went to DLA as the text
    'Paris', which the tokenizer reads as '▁Paris', and DLA attributed that, saying "done"."""
    token = model.tokenizer.convert_tokens_to_ids(piece)
    prompt = SENTENCES[2].rsplit(" ", 1)[0]
    lm_head = model.hf.lm_head.weight
    saved = lm_head[token].clone()
    try:
        with torch.no_grad():  # make `piece` the last layer's top-1 at the last position
            last = model.hf(model.encode(prompt), output_hidden_states=True).hidden_states[-1][0, -1]
            lm_head[token] = 200 * last / last.norm() ** 2
        lens, dla = aw.LogitLens(model, prompt).wait(), aw.LogitAttribution(model, prompt).wait()
        assert int(lens.data.topk_ids[-1, -1, 0]) == token
        lens.link(dla)
        lens.selected = {"row": len(lens.row_labels) - 1, "col": len(lens.tokens) - 1}
        assert dla.wait().status == "done", dla.error
        assert dla.data.target_id == token and dla.target == model.token_texts([token])[0]
    finally:
        with torch.no_grad():
            lm_head[token] = saved
