"""How a kernel that imported actwidgets gets its memory (actwidgets/_malloc.py): PyTorch's
transparent huge pages, asked for at import, unless the user's environment said no, and every
tensor large enough for them in a mapping of its own, off glibc's heap.

Each case is a fresh Python (PyTorch reads the switch once, at its first CPU allocation) that
imports actwidgets, then allocates and fills 64 MB tensors as a long prompt's forward does, and
counts its page faults: 16,384 per tensor in 4 KB pages, 32 in 2 MB ones.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SWITCH = "THP_MEM_ALLOC_ENABLE"
TENSORS, PAGES_4K = 16, (64 << 20) // 4096
CHILD = f"""
import os, resource
import actwidgets, torch
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({TENSORS}):
    tensor = torch.ones(16 << 20)
    del tensor
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start
small = torch.ones(3 << 18)  # 3 MB: PyTorch asks for huge pages from 2 MB
heap = [line.split()[0].split("-") for line in open("/proc/self/maps") if line.rstrip().endswith("[heap]")]
on_heap = any(int(a, 16) <= small.data_ptr() < int(b, 16) for a, b in heap)
print(os.environ.get("{SWITCH}"), faults, on_heap)
"""


def faults(switch: str | None) -> tuple[str, int, bool]:
    env = {k: v for k, v in os.environ.items() if k != SWITCH}
    if switch is not None:
        env[SWITCH] = switch
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    said, count, on_heap = done.stdout.split()[-3:]
    return said, int(count), on_heap == "True"


def kernel_mode() -> str:
    """The kernel's THP mode: 'always', 'madvise' (only where asked, as PyTorch does) or 'never'."""
    path = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    found = re.search(r"\[(\w+)\]", path.read_text()) if path.exists() else None
    return found.group(1) if found else "never"


def test_importing_actwidgets_asks_torch_for_huge_pages_and_a_user_can_say_no():
    on, off = faults(None), faults("0")
    assert on[0] == "1" and off[0] == "0", (on, off)  # set by the import; the user's "0" kept
    assert not on[2] and not off[2], (on, off)  # a 3 MB tensor, freed, goes back to the OS whole
    assert off[1] >= 0.9 * TENSORS * PAGES_4K or kernel_mode() == "always", off  # 4 KB pages: a fault each
    if kernel_mode() == "madvise":  # huge pages only where asked: actwidgets made the difference
        assert on[1] * 10 < off[1], (on, off)
    else:  # the kernel gives them to everyone, or to no one: asking changes nothing
        assert on[1] <= 1.2 * off[1] + 1000, (on, off)
