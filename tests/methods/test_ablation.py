"""Directional ablation (`operation="ablate"` in the steering widget) at several blocks,
against plain torch hooks: the generated tokens, the measured KL and the remote path."""
import numpy as np
import pytest
import torch

import actwidgets as aw
from actwidgets._adapter import get_path
from actwidgets.errors import InputError
from actwidgets.methods import steering as st

PROMPT = "Q: What is 9 + 8?\nA:"


def test_ablation_at_several_blocks_matches_plain_torch(tiny_llama):
    """Directional ablation at blocks [0, 1]: the greedy tokens are the argmax of a full
    (no-cache) forward with the direction's component removed from both blocks' outputs at
    every position (positions="all"), and the measured KL is that run's against the plain one."""
    m = tiny_llama
    r = torch.randn(m.d_model, generator=torch.Generator().manual_seed(3))
    unit = r / r.norm()
    ids = m.encode(PROMPT)
    out = st.steer_generate(m, PROMPT, r, [1, 0, 1], 1.0, max_new_tokens=8, min_new_tokens=8, positions="all",
                            mode="ablate")
    full = torch.cat([ids[0], torch.tensor(out.token_ids)])[None]
    n = ids.shape[1]

    def hook(module, args, output):
        return output - (output @ unit)[..., None] * unit

    blocks = get_path(m.hf, m.adapter.blocks)
    handles = [blocks[i].register_forward_hook(hook) for i in (0, 1)]
    try:
        with torch.no_grad():
            ablated = m.hf(full).logits[0, n - 1:-1]
    finally:
        for handle in handles:
            handle.remove()
    assert ablated.argmax(-1).tolist() == out.token_ids
    with torch.no_grad():
        plain = m.hf(full).logits[0, n - 1:-1]
    p, q = torch.log_softmax(plain.double(), -1), torch.log_softmax(ablated.double(), -1)
    expected = (p.exp() * (p - q)).sum(-1).numpy()
    kl = st.measure_kl(m, PROMPT, out.token_ids, r, [0, 1], 1.0, positions="all", mode="ablate")
    np.testing.assert_allclose(kl.kl_per_token, expected, rtol=1e-4, atol=1e-9)
    remote = aw.Model(m.lm, m.tokenizer, m.adapter, "x", remote="local")
    far = st.steer_generate(remote, PROMPT, r, [0, 1], 1.0, max_new_tokens=8, min_new_tokens=8, positions="all",
                            mode="ablate")
    assert far.token_ids == out.token_ids
    with pytest.raises(InputError, match="layer is an empty list"):
        st.measure_kl(m, PROMPT, out.token_ids, r, [], 1.0, mode="ablate")
