"""On a GPU (skipped only where there is none): the matrix's bf16 families on `device="cuda"`
give the CPU fp32 numbers within the bf16 tolerances of test_families.py, and the model's
weights stay on the device and in bf16 through the float32 KL measurement."""
import numpy as np
import pytest
import torch

import actwidgets as aw
from actwidgets.methods import patching as P
from actwidgets.methods import steering as S
from actwidgets.methods.activations import residual_stats
from actwidgets.methods.lens import logit_lens

from families import BF16, hf_model, tiny

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
ANSWER = (" Mary", " John")


@pytest.fixture(scope="module", params=BF16)
def pair(request, tokenizer):
    import copy

    gpu = copy.deepcopy(hf_model(request.param, len(tokenizer)))
    return tiny(request.param, tokenizer), aw.wrap(gpu, tokenizer, device="cuda", dtype=torch.bfloat16)


def test_cuda_bf16_methods_agree_with_cpu_fp32(pair):
    cpu, gpu = pair
    assert gpu.device.type == "cuda"
    np.testing.assert_allclose(residual_stats(gpu, CLEAN).norm, residual_stats(cpu, CLEAN).norm, rtol=2e-2)
    a, b = logit_lens(cpu, CLEAN, target=" Mary"), logit_lens(gpu, CLEAN, target=" Mary")
    np.testing.assert_allclose(np.log(b.target_prob), np.log(a.target_prob), atol=0.05)
    for method in P.METHODS:
        x, y = P.run(cpu, CLEAN, CORRUPTED, ANSWER, "resid", method), P.run(gpu, CLEAN, CORRUPTED, ANSWER, "resid", method)
        np.testing.assert_allclose(y.patched_ld, x.patched_ld, atol=0.05 * abs(x.ld_clean - x.ld_corrupted) + 0.02)


def test_cuda_kl_in_float32_leaves_the_weights_on_the_device_in_bf16(pair):
    cpu, gpu = pair
    v = np.random.default_rng(1).normal(size=cpu.d_model).astype(np.float32)
    cont = S.steer_generate(cpu, CLEAN, v, 1, 0.0, max_new_tokens=4, min_new_tokens=4).token_ids
    kl32 = S.measure_kl(cpu, CLEAN, cont, v, 1, 0.01).mean_kl
    kl16 = S.measure_kl(gpu, CLEAN, cont, v, 1, 0.01).mean_kl
    assert kl16 == pytest.approx(kl32, rel=0.05)
    assert {p.device.type for p in gpu.hf.parameters()} == {"cuda"}
    assert {p.dtype for p in gpu.hf.parameters()} == {torch.bfloat16}
