"""Loading models and finding their parts.

`load()` returns a `Model`: an nnsight-wrapped causal LM plus an adapter that knows
where the blocks, the final norm and the unembedding live for the architecture at
hand, so `methods/` never spells out a module path. Reading the weights (the embedded
default offline, GGUF files, Hugging Face ids) is `_weights.py`'s job.
"""
from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ._adapter import Adapter, get_path
from ._tokens import readable
from ._weights import DEFAULT_NAME, default_gguf, load_gguf, load_pretrained
from .errors import InputError, ModelLoadError
from .methods import _checks

# Keyword arguments by which a trace asks for, or hands in, a key/value cache (`Model.trace`).
CACHE_ARGS = frozenset({"use_cache", "cache", "past_key_values"})


@dataclass
class Model:
    """A loaded causal LM: the nnsight wrapper, its tokenizer and its adapter.

    `remote` is False (run here), True (run on NDIF) or "local" (nnsight's
    serialize -> deserialize -> execute path in-process, used by tests).
    All model work takes `lock`, so widgets sharing a model never interleave traces; it is
    one lock per set of weights, whichever wrapper holds them. Your own calls of the model
    (``model.hf(...)``, a trace of your own) take it too while a widget may be running:
    ``with model.lock: ...``.
    """

    lm: object
    tokenizer: object
    adapter: Adapter
    name: str
    remote: bool | str = False
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    # id -> label, filled as ids are shown: a filling-in lens relabels its prompt and its
    # top-k table at every redraw, and a label depends on its id alone.
    _texts: dict = field(default_factory=dict, repr=False)
    # label -> the one id it names (None: more than one), over the whole vocabulary, built once
    _owners: dict = field(default_factory=dict, repr=False)

    @property
    def config(self):
        return self.lm.config

    @property
    def hf(self) -> torch.nn.Module:
        """The underlying transformers model (local models only)."""
        return self.lm._module

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def d_model(self) -> int:
        cfg = self.config
        return getattr(cfg, "hidden_size", None) or cfg.n_embd

    @property
    def n_heads(self) -> int:
        cfg = self.config
        return getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", None) or cfg.num_heads

    @property
    def head_dim(self) -> int:
        """Width of one head's slice of the attention output projection's input."""
        out_proj = get_path(self.hf, f"{self.adapter.blocks}.0.{self.adapter.attn_out}")
        width = out_proj.weight.shape[0] if type(out_proj).__name__ == "Conv1D" else out_proj.in_features
        return width // self.n_heads

    @property
    def max_tokens(self) -> int | None:
        cfg = self.config
        return getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)

    @property
    def blocks(self):
        return get_path(self.lm, self.adapter.blocks)

    @property
    def final(self) -> list:
        """Envoys of what runs between the last block and the unembedding (final norm, ...)."""
        return [get_path(self.lm, path) for path in self.adapter.final]

    def part(self, block, name: str):
        """A part of one block as an envoy: `attn`, `attn_out`, `mlp` (what the mlp site reads),
        `act`, `up`, `gate_up`, `down`, or a norm's relative path."""
        path = {"mlp": self.adapter.mlp_out}.get(name) or getattr(self.adapter, name, None) or name
        try:
            return get_path(block, path)
        except AttributeError:  # the adapter reads block 0: DeepSeek, GLM-4.5 or Qwen2-MoE mix dense and MoE layers
            raise InputError(f"The blocks of {self.name} are not all alike: block 0 has `{path}` and another does "
                             "not (dense and mixture-of-experts layers mixed). What reads a block's MLP parts (the "
                             "mlp site, DLA, RelP) needs them in every block; the heatmap, the lens, attention and "
                             "the resid and heads sites work.") from None

    @property
    def unembed(self):
        return get_path(self.lm, self.adapter.unembed)

    @property
    def head(self) -> tuple:
        """(final envoys, unembedding envoy, logit transform): what `apply_head` needs inside a
        trace, resolved outside it (a trace body must not name the Model: it holds a lock)."""
        return self.final, self.unembed, self.adapter.logit_transform

    @property
    def device(self) -> torch.device:
        try:
            device = next(self.hf.parameters()).device
        except StopIteration:  # pragma: no cover - a model with no parameters
            return torch.device("cpu")
        # A remote model's local copy lives on the meta device; its inputs are sent from here.
        return torch.device("cpu") if device.type == "meta" else device

    def trace(self, *inputs, **kwargs):
        """An nnsight trace that runs where this model runs (here or NDIF).

        It builds no key/value cache unless asked (``use_cache=True``) or handed one: a trace
        reads activations, and the cache a forward keeps by default is as large as a third
        of the residual states it could save (377 MB on an 8,192-token prompt of the
        default model, where it held the lens's peak over Binder's 2 GB)."""
        if not CACHE_ARGS & kwargs.keys():
            kwargs["use_cache"] = False
        return self.lm.trace(*inputs, **self.where(**kwargs))

    def check_eval(self) -> None:
        """Refuse a local model in training mode: its dropout makes every run differ. Called
        before every forward actwidgets makes (traces through `where`, generations, prefills)."""
        if self.remote is False and self.hf.training:
            raise InputError("The model is in training mode (model.hf.train() was called): its dropout makes "
                             "every run differ. Call model.hf.eval(), then run the widget again.")

    def where(self, **kwargs) -> dict:
        """Keyword arguments for an nnsight trace or generation of this model: remote ones
        send the actwidgets helpers a trace body calls along. (nnsight must see the `with`
        line, so a generation is opened as ``with model.lm.generate(**model.where(...))``.)"""
        self.check_eval()
        if self.remote:
            _ship_actwidgets_by_value()
            if self.remote is True and "backend" not in kwargs:  # NDIF, its failures said in one sentence
                from ._remote import backend
                kwargs["backend"] = backend(self.lm, verbose=kwargs.pop("verbose", False))
            kwargs.setdefault("remote", self.remote)
        return kwargs

    # --- tokens -----------------------------------------------------------
    def encode(self, prompt: str, name: str = "prompt") -> torch.Tensor:
        """Token ids [1, T] for one prompt, checked against the model's context."""
        _checks.text(prompt, name)
        # a prompt that already begins with the BOS token (a chat template wrote it) gets no second one
        bos = getattr(self.tokenizer, "bos_token", None)
        fresh = not (bos and prompt.startswith(bos))
        ids = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=fresh)["input_ids"]
        limit = self.max_tokens
        if limit and ids.shape[1] > limit:
            raise InputError(
                f"The prompt is {ids.shape[1]:,} tokens long; {self.name} reads at most {limit:,}."
            )
        rows = self.hf.get_input_embeddings().weight.shape[0]
        if ids.numel() and int(ids.max()) >= rows:
            raise InputError(f"The tokenizer gives token id {int(ids.max()):,} but {self.name} embeds {rows:,} tokens: "
                             "the tokenizer is not this model's. Wrap the model with its own tokenizer.")
        return ids

    def chat(self, messages, name: str = "prompt") -> str:
        """A chat ([{"role": "user", "content": "..."}, ...]) as the text the model reads: its
        tokenizer's chat template, ending where the assistant's reply begins."""
        if not (isinstance(messages, (list, tuple)) and messages and all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages)):
            raise InputError(f"{name} must be text, or a chat: a list of {{'role': ..., 'content': ...}} "
                             f"messages with text in both, not {_checks.shown(messages)}.")
        if not getattr(self.tokenizer, "chat_template", None):
            raise InputError(f"{name} is a chat, but {self.name}'s tokenizer has no chat template: "
                             "pass the prompt as text.")
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

    def token_texts(self, ids) -> list[str]:
        """One decoded string per token id, so labels read as the text they came from
        (a piece of a multi-byte character as its bytes, e.g. '<0xF0><0x9F>'; see _tokens.py)."""
        ids = torch.as_tensor(ids).flatten().tolist()
        new = list({i for i in ids if i not in self._texts})
        if new:
            self._texts.update(zip(new, readable(self.tokenizer, new)))
        return [self._texts[i] for i in ids]

    def single_token(self, text: str | int, name: str | None = None) -> int:
        """The id of a text that must be exactly one token (answers, lens targets); `name`, the
        parameter's, starts any message."""
        try:
            return self._single_token(text)
        except InputError as exc:
            if name is None:
                raise
            raise InputError(f"{name} must be one token (its text, e.g. ' Paris', or its id): {exc}") from None

    def _single_token(self, text) -> int:
        if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
            text = int(text)
            if not 0 <= text < len(self.tokenizer):
                raise InputError(f"Token id {text} is outside the vocabulary (0..{len(self.tokenizer) - 1}).")
            return text
        if not isinstance(text, str) or not text:
            raise InputError(f"A token must be given as its text (e.g. ' Paris') or its id, not "
                             f"{_checks.shown(text)}.")
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) == 1 and self.token_texts(ids)[0] == text:
            return ids[0]
        # A label the widgets show that is not the tokenizer's reading of its text names its own
        # token: '<0xF0><0x9F>' (a piece of a character), 'Paris' (SentencePiece reads ' Paris').
        owner = self._label_owner(text)
        if owner is not None:
            return owner
        if len(ids) != 1:
            pieces = ", ".join(repr(t) for t in self.token_texts(ids)) or "no tokens"
            raise InputError(f"{text!r} is {len(ids)} tokens ({pieces}); a single token is needed here.")
        return ids[0]

    def _label_owner(self, text: str) -> int | None:
        """The one token labelled `text` in the whole vocabulary (labels are built for all of
        it once, about 0.5 s for 49k tokens), else None."""
        if not self._owners:
            owners: dict = {}
            for i, label in enumerate(self.token_texts(range(len(self.tokenizer)))):
                owners[label] = None if label in owners else i
            self._owners.update(owners)
        return self._owners.get(text)

    def check_layers(self, layers, name: str = "layers") -> list[int]:
        """Block indices, sorted and de-duplicated; negative ones count from the end. `name` is
        the parameter's, for the messages (steering's is `layer`)."""
        n = self.n_layers
        if layers is None:
            return list(range(n))
        if torch.is_tensor(layers) and not layers.is_floating_point() and layers.dtype != torch.bool:
            layers = layers.tolist()  # as a numpy array of ints is taken
        if isinstance(layers, (int, np.integer)) and not isinstance(layers, bool):
            layers = [layers]
        if isinstance(layers, (str, bytes, dict)) or not hasattr(layers, "__iter__"):
            raise InputError(f"{name} must be a block index or a list of them (0..{n - 1}, negative from "
                             f"the end), not {'the text ' if isinstance(layers, str) else ''}{_checks.shown(layers)}.")
        out = set()
        for layer in layers:
            if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
                raise InputError(f"{name} must be whole numbers (block indices 0..{n - 1}), not "
                                 f"{_checks.shown(layer)}.")
            if not -n <= layer < n:
                raise InputError(f"Layer {int(layer)} is out of range: {self.name} has {n} layers (0..{n - 1}).")
            out.add(int(layer) % n)
        if not out:
            raise InputError(f"{name} is an empty list: name at least one block.")
        return sorted(out)


def _ship_actwidgets_by_value() -> None:
    """NDIF has no actwidgets installed: helpers called inside a trace travel as source.

    nnsight only does this on its own for modules outside site-packages, which an
    editable or a regular install of actwidgets is not always.
    """
    import nnsight

    nnsight.register("actwidgets")


def _remote(name: str):
    import nnsight

    from ._remote import NO_KEY, weightless
    if not (os.environ.get("NDIF_API_KEY") or getattr(nnsight.CONFIG.API, "APIKEY", None)):
        raise ModelLoadError(NO_KEY)
    if os.environ.get("NDIF_API_KEY"):
        nnsight.CONFIG.API.APIKEY = os.environ["NDIF_API_KEY"]
    return weightless(name)


def load(name_or_path: str | os.PathLike | None = None, *, device=None, dtype=None, remote=False) -> Model:
    """Load a causal LM for tracing.

    - no argument: the embedded SmolLM2-135M-Instruct (offline; cached after first load);
    - a Hugging Face id or a local folder, or a path to a ``.gguf`` file;
    - ``device="cuda"`` to run on a GPU; ``dtype`` e.g. ``torch.bfloat16``;
    - ``remote=True`` to run traces on NDIF (the name must be an NDIF-hosted model id;
      the key comes from ``NDIF_API_KEY`` or nnsight's config and is never stored here);
      ``remote="local"`` runs nnsight's remote path in-process.
    """
    _check_remote(remote)
    if remote is True:
        if name_or_path is None:
            raise ModelLoadError("remote=True needs the id of a model that NDIF hosts, e.g. 'meta-llama/Llama-3.1-8B'.")
        if device is not None or dtype is not None:
            raise InputError("With remote=True, NDIF chooses the device and dtype it serves the model in: "
                             "leave out device= and dtype=.")
        lm = _remote(str(name_or_path))
        return Model(lm, lm.tokenizer, Adapter.for_model(lm._module), str(name_or_path), remote=True)

    dtype = check_dtype(dtype)
    if name_or_path is None:
        tok, hf = load_gguf(default_gguf())
        name = DEFAULT_NAME
    elif str(name_or_path).endswith(".gguf"):
        path = Path(name_or_path)
        if not path.exists():
            raise ModelLoadError(f"No GGUF file at {path}.")
        tok, hf = load_gguf(path)
        name = path.stem
    else:
        tok, hf = load_pretrained(str(name_or_path), dtype)
        name = str(name_or_path)
    return wrap(hf, tok, name=name, device=device, dtype=dtype, remote=remote)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_NAMES = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}


def check_dtype(dtype) -> torch.dtype | None:
    """A floating-point torch dtype, given as one or by name ('bfloat16', 'bf16', 'torch.float16')."""
    if dtype is None or isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return dtype
    if isinstance(dtype, str):
        name = dtype.lower().removeprefix("torch.")
        if DTYPE_NAMES.get(name, name) in DTYPES:
            return DTYPES[DTYPE_NAMES.get(name, name)]
    raise InputError(f"dtype must be a floating-point torch dtype or its name ({', '.join(map(repr, DTYPES))}), "
                     f"not {_checks.shown(dtype)}.")


def _cast(hf_model, dtype) -> None:
    """Cast weights to `dtype`, as `from_pretrained(dtype=...)` leaves them: computed buffers
    that are not saved (rotary `inv_freq`) keep their float32, or bf16 RoPE angles go wrong."""
    kept = [(module, name, buffer) for module in hf_model.modules() for name, buffer in module._buffers.items()
            if buffer is not None and name in module._non_persistent_buffers_set]
    hf_model.to(dtype)
    for module, name, buffer in kept:
        module._buffers[name] = buffer.to(device=module._buffers[name].device)


def wrap(hf_model, tokenizer, *, name: str | None = None, device=None, dtype=None, remote=False) -> Model:
    """Wrap an already-built transformers model (tests build tiny ones from a config)."""
    import nnsight

    _check_remote(remote)
    if not isinstance(hf_model, torch.nn.Module) or not hasattr(hf_model, "config"):
        raise InputError("wrap takes a transformers causal LM (e.g. from AutoModelForCausalLM.from_pretrained), "
                         f"not {_checks.shown(hf_model)}; aw.load(name) loads one by name.")
    dtype = check_dtype(dtype)
    if dtype is not None:
        _cast(hf_model, dtype)
    if device is not None:
        try:
            hf_model = hf_model.to(device)
        except (RuntimeError, AssertionError) as exc:
            raise ModelLoadError(f"Could not move the model to {device!r}: {exc}") from None
    if remote is False and any(p.is_meta for p in hf_model.parameters()):
        raise ModelLoadError("The model's weights are on the meta device, not loaded (an empty-weights init, or "
                             "device_map='meta'): load them, or give aw.load the model's name or folder.")
    hf_model.eval()
    adapter = Adapter.for_model(hf_model)
    lm = nnsight.TransformersModel(hf_model, tokenizer=tokenizer, task="text-generation")
    return Model(lm, tokenizer, adapter, name or type(hf_model).__name__, remote=remote, lock=_lock_of(hf_model))


def _check_remote(remote) -> None:
    # `is` tests: 1 == True would pass as True and skip the NDIF backend's checks and statuses
    if not (remote is False or remote is True or remote == "local"):
        raise InputError(f"remote must be False, True or 'local', not {_checks.shown(remote)}.")


_locks: "weakref.WeakKeyDictionary[torch.nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()


def _lock_of(hf_model) -> threading.RLock:
    """One lock per set of weights: a cell that wraps the same model again (re-run) must not
    give its widgets a second lock, under which their traces would interleave. (Kept beside
    the model, not on it: a lock cannot be deep-copied.)"""
    return _locks.setdefault(hf_model, threading.RLock())
