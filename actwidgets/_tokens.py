"""Token labels that read as what they are, never as U+FFFD, one token's label no other's.

A multi-byte character (an emoji, most CJK) is often split across tokens; decoded alone,
each piece is an invalid UTF-8 fragment and a tokenizer prints "\ufffd" for it, so
"'🚀' is 3 tokens ('\ufffd', '\ufffd', '\ufffd')". Such a piece is shown by its bytes instead:
the complete characters as text, every byte of an incomplete one as `<0xF0>`, the
notation SentencePiece's byte fallback already uses. The bytes come from the piece:
SentencePiece's byte tokens are literally `<0xHH>`; byte-level BPE (GPT-2, Llama-3,
Qwen, SmolLM) spells each byte as one printable character of a fixed table. A byte token
of SentencePiece's fallback is always shown as its piece: decoded, '<0x41>' would read 'A',
the label of another token.

A token keeps the space it starts with. Decoded alone, a SentencePiece token loses it (Llama-2,
Mistral, Mixtral: the decoder strips the text's first space), so '▁Paris' and 'Paris' both read
'Paris' and a prompt's tokens read "When", "Mary", "and". Each token is therefore decoded after
an anchor token, and the anchor's own text taken off.
"""
from __future__ import annotations

import codecs
import re
from functools import lru_cache

_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _hex_bytes(error: UnicodeDecodeError) -> tuple[str, int]:
    return "".join(f"<0x{b:02X}>" for b in error.object[error.start:error.end]), error.end


codecs.register_error("actwidgets-hex", _hex_bytes)


@lru_cache(maxsize=1)
def _byte_level_table() -> dict[str, int]:
    """Byte-level BPE's alphabet, char -> byte: printable Latin-1 bytes stand for
    themselves, the other 68 are shifted to U+0100 onwards, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, shifted = {}, 0
    for byte in range(256):
        if byte in printable:
            table[chr(byte)] = byte
        else:
            table[chr(256 + shifted)] = byte
            shifted += 1
    return table


def piece_bytes(piece: str) -> bytes | None:
    """The bytes a vocabulary piece stands for, when it spells them out; else None."""
    if _BYTE_TOKEN.fullmatch(piece):
        return bytes([int(piece[3:5], 16)])
    table = _byte_level_table()
    if piece and all(ch in table for ch in piece):
        return bytes(table[ch] for ch in piece)
    return None


def readable(tokenizer, ids) -> list[str]:
    """One label per token id: its decoded text, or its bytes where that text would be U+FFFD."""
    ids = [int(i) for i in ids]
    plain = dict(clean_up_tokenization_spaces=False)  # " ," must not lose its space in a pair
    anchor = tokenizer("a", add_special_tokens=False)["input_ids"][-1:]
    start = tokenizer.decode(anchor, **plain)
    texts = tokenizer.batch_decode([anchor + [i] for i in ids], **plain)
    for n, (i, text) in enumerate(zip(ids, texts)):
        piece = tokenizer.convert_ids_to_tokens(i) or ""
        # a decoder that joins the pair into other text: the token alone, as the tokenizer decodes it
        text = text[len(start):] if text.startswith(start) else tokenizer.decode([i], **plain)
        if _BYTE_TOKEN.fullmatch(piece):
            text = piece
        elif "\ufffd" in text:
            raw = piece_bytes(piece)
            if raw is not None:
                text = raw.decode("utf-8", errors="actwidgets-hex")
        texts[n] = text
    return texts
