"""What every patching method shares: the problem (two prompts and an answer pair), the
result grid and what its scores mean, and how a site is read inside a trace.

Trace bodies only touch envoys and tensors resolved beforehand: a remote trace ships what its
body names, and a Model (it holds a lock) cannot travel.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import nnsight
import numpy as np
import torch

from ..errors import InputError
from ..model import Model
from ._checks import choice
from ._prefix import common_start
from ._trace import residual
from .metric import LogitDiff, last_metric

SITES = ("resid", "attn", "mlp", "heads")
METHODS = ("exact", "attribution", "relp")


@dataclass
class Problem:
    """Two prompts of equal token length and the answer pair they disagree on."""

    clean_ids: torch.Tensor
    corrupted_ids: torch.Tensor
    correct_id: int
    wrong_id: int
    tokens: list[str]

    @property
    def shared(self) -> int:
        """How many tokens both prompts begin with: there, the two runs are the same."""
        return common_start([self.clean_ids[0], self.corrupted_ids[0]])

    def source_target(self, denoise: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Where activations come from, and the run they are patched into."""
        return (self.clean_ids, self.corrupted_ids) if denoise else (self.corrupted_ids, self.clean_ids)

    def metric(self, chosen=None):
        """The metric a grid reports: the one chosen, else this problem's logit difference."""
        return chosen or LogitDiff(self.correct_id, self.wrong_id)


@dataclass
class PatchingResult:
    site: str
    method: str
    rows: list[str]
    cols: list[str]
    col_label: str  # "token" or "head"
    patched_ld: np.ndarray  # [rows, cols]: LD after patching (estimated for approximations); NaN = not run
    ld_clean: float
    ld_corrupted: float
    denoise: bool = True
    done: np.ndarray = field(default=None, repr=False)  # [rows, cols] bool: cells computed so far

    @property
    def score_meaning(self) -> str:
        """What 0 and 1 of `normalized` mean for this patching direction."""
        return SCORE_MEANING[self.denoise]

    @property
    def normalized(self) -> np.ndarray:
        """(LD_patched - LD_corr) / (LD_clean - LD_corr) in both directions: 1 is the clean
        behaviour, 0 the corrupted one (`score_meaning` says what that is for this direction)."""
        span = self.ld_clean - self.ld_corrupted
        if abs(span) < 1e-6:
            raise InputError(
                f"The clean and corrupted runs give the same logit difference ({self.ld_clean:+.3f}): there is "
                "nothing to restore, so the normalized score is undefined. Choose prompts the model answers "
                "differently, or show the raw logit difference (normalized=False)."
            )
        return (self.patched_ld - self.ld_corrupted) / span


SCORE_MEANING = {True: "0: no effect, 1: clean answer restored",
                 False: "1: no effect, 0: clean answer destroyed"}


def prepare(model: Model, clean: str, corrupted: str, answer) -> Problem:
    """Tokenize and check the inputs; every message says what to change."""
    clean_ids, corrupted_ids = model.encode(clean, "clean prompt"), model.encode(corrupted, "corrupted prompt")
    if clean_ids.shape != corrupted_ids.shape:
        show = lambda ids: "[" + ", ".join(repr(t) for t in model.token_texts(ids[0])) + "]"  # noqa: E731
        raise InputError(
            "The clean and corrupted prompts must have the same number of tokens, so that positions line up: "
            f"clean has {clean_ids.shape[1]} {show(clean_ids)}, corrupted has {corrupted_ids.shape[1]} "
            f"{show(corrupted_ids)}."
        )
    if not isinstance(answer, (list, tuple)) or len(answer) != 2:
        raise InputError("answer must be a pair: (correct token, wrong token), e.g. (' Mary', ' John').")
    correct, wrong = (model.single_token(a, "each answer") for a in answer)
    if correct == wrong:
        raise InputError("The correct and wrong answers are the same token: the logit difference would be 0.")
    return Problem(clean_ids, corrupted_ids, correct, wrong, model.token_texts(clean_ids[0]))


def check_site(site: str) -> str:
    return choice(site, SITES, "site")


# --- reading a site inside a trace -------------------------------------------

def site_refs(model: Model, site: str) -> list[tuple]:
    """(envoy, "output" | "input", flat) per layer: the tensor patched at `site`
    ([B, T, d]; heads: the attention output projection's input, [B, T, H*dh]). `flat` marks
    a site the model computes on [B*T, d] (OPT's MLP)."""
    refs = []
    for block in model.blocks:
        if site == "resid":
            refs.append((block, "output", False))
        elif site == "heads":
            refs.append((model.part(block, "attn_out"), "input", False))
        else:
            flat = site == "mlp" and model.adapter.mlp_flat
            refs.append((model.part(block, site), "output", flat))
    return refs


def read(ref, batch: int):
    """The site's tensor as [batch, T, width] (a view: writing into it patches the model)."""
    envoy, attr, flat = ref
    value = getattr(envoy, attr)
    value = residual(value) if attr == "output" else value
    return unflatten(value, batch) if flat else value


def read_for_grad(ref):
    """The site's tensor as the model made it (flat or not), to take its gradient. A module
    output is handed on as a copy: the model may add into it in place afterwards (Falcon's
    parallel block adds the attention output into the MLP output)."""
    envoy, attr, _ = ref
    value = getattr(envoy, attr)
    if attr == "output" and torch.is_tensor(value):
        setattr(envoy, attr, value.clone())
    return residual(value) if attr == "output" else value


def unflatten(value, batch: int):
    return value.unflatten(0, (batch, -1)) if value.dim() == 2 else value


def grid_axes(model: Model, problem: Problem, site: str) -> tuple[list[str], list[str], str]:
    rows = [str(layer) for layer in range(model.n_layers)]
    if site == "heads":
        return rows, [f"H{h}" for h in range(model.n_heads)], "head"
    return rows, list(problem.tokens), "token"


def cache_runs(model: Model, problem: Problem, site: str, denoise: bool, metric):
    """One trace each over source and target: site activations, block outputs, metric, and
    the key/value cache (kept here only: a remote run's cache stays on the server)."""
    return [cache_run(model, ids, site, metric) for ids in problem.source_target(denoise)]


def cache_run(model: Model, ids: torch.Tensor, site: str, metric):
    """One of `cache_runs`, in a frame of its own: a remote trace ships the names its body
    reads, and a second run in the same frame shipped the first one's saved activations."""
    refs, block_list, lm, keep_cache = site_refs(model, site), list(model.blocks), model.lm, not model.remote
    unembed = model.unembed
    with model.trace(ids.to(model.device), use_cache=keep_cache, logits_to_keep=1):
        sites, blocks = [], []
        for ref, block in zip(refs, block_list):  # execution order: a site comes before its block's output
            sites.append(read(ref, 1)[0].clone())  # Falcon adds into its MLP output in place
            blocks.append(residual(block.output)[0])
        sites, blocks = nnsight.save(sites), nnsight.save(blocks)
        value = nnsight.save(last_metric(lm, unembed, metric))
        if keep_cache:
            kv = nnsight.save(lm.output.cache)
    return sites, blocks, float(value[0]), kv if keep_cache else None
