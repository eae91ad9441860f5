"""A tokenizer that behaves like Llama-2's (also Mistral's, Mixtral's, TinyLlama's), built in
memory: no SentencePiece tokenizer can be had offline.

BPE with byte fallback (`<0x00>`..`<0xFF>`), the Metaspace pre-tokenizer ('▁' before a word,
one put before the text's first), the decoder of transformers' Llama converter (which strips
the text's first space: '▁Paris' decoded alone reads 'Paris'), and `<s>` added in front. The
vocabulary is learnt from a few sentences, with both '▁Paris' and 'Paris' in it.
"""
from __future__ import annotations

import functools
import json

SENTENCES = ["When Mary and John went to the store, John gave a drink to",
             "When Mary and John went to the store, Mary gave a drink to",
             "The Eiffel Tower is located in the city of Paris",
             "The Colosseum is located in the city of Rome"]
CORPUS = SENTENCES * 20 + ["Paris is the capital. Paris, Paris! (Paris) Paris Paris."] * 30
SPECIALS = ["<unk>", "<s>", "</s>"]


@functools.lru_cache(maxsize=1)
def _learnt() -> tuple[dict, list]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    learner = Tokenizer(models.BPE(unk_token="<unk>"))
    learner.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    alphabet = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,!()'▁")
    learner.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, initial_alphabet=alphabet,
                                                            show_progress=False))
    learnt = json.loads(learner.to_str())["model"]
    vocab = {piece: n for n, piece in enumerate(SPECIALS + [f"<0x{b:02X}>" for b in range(256)])}
    for piece, _ in sorted(learnt["vocab"].items(), key=lambda item: item[1]):
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in learnt["merges"]]
    assert {"▁Paris", "Paris", "▁Mary", "▁John"} <= set(vocab)
    return vocab, merges


def llama2_like():
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab, merges = _learnt()
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    backend.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   clean_up_tokenization_spaces=False)
