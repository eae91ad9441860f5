"""How actwidgets asks the C library and PyTorch for memory: given back when freed, so a Binder
kernel (2 GB) that ran a long lens does not keep its peak, and mapped in 2 MB pages, so a long
prompt's large temporaries do not spend their time faulting in 4 KB ones. Each is a no-op where
the C library is not glibc, or the kernel lends no transparent huge pages.

- `large_blocks_from_mmap()`: allocations of 2 MB and more (a lens chunk's logits, a long
  prompt's activations) come from mmap and go back to the OS when freed. glibc's default
  raises that threshold after the first such free, and the lens's repeated 25-64 MB
  temporaries then fragment the heap: a 131-token lens peaked at 1.1 GB or 2.5 GB, run to
  run; with the fixed threshold always 1.06 GB (the model alone: 0.97 GB). 2 MB is where
  PyTorch starts asking for huge pages (below): such a block on the heap would keep a whole
  2 MB page while any of it is in use. The 8,192-token heatmap, lens and Attention view peaked
  at 1.94 GB with a 4 MB threshold and huge pages, 1.83 GB with 2 MB (1.89 GB without huge pages).
- `trim()`: malloc_trim, handing freed heap back once a worker's queue is empty.
- `ask_torch_for_huge_pages()`: PyTorch's own switch (`THP_MEM_ALLOC_ENABLE`, c10's CPU
  allocator since torch 2.2) to madvise tensors of 2 MB and more as transparent huge pages.
  Every activation of a long prompt is a fresh mapping (the threshold above), so without it an
  8,192-token forward takes 4.1M page faults (6.5 s of system time in 40 s); a 4,096-token one
  takes 2.0M, and 0.4M with it. What that buys is the lens's 64 MB logit chunks and the
  Attention view's score blocks, each mapped afresh. At 1,024 tokens (`bench/long.py`,
  `huge_pages_*_ratio_1024`, two runs): the lens 0.92-0.95x the time, the Attention view
  0.83-0.90x; a fresh process's first forward 1.07-1.11x, later forwards 0.95x. At 8,192
  tokens, against a run an hour apart (and a 4 MB threshold): the lens 0.94x, the Attention
  view 0.82x. A short prompt allocates little that large.
  PyTorch reads the switch once, at the process's first CPU allocation, so it is set when
  actwidgets is imported; a process that made a tensor before that keeps PyTorch's default.
  `THP_MEM_ALLOC_ENABLE=0` in the environment keeps it off.
"""
from __future__ import annotations

import ctypes
import os

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD_BYTES = 2 << 20  # PyTorch's huge-page threshold (c10's gAlloc_threshold_thp)
THP_SWITCH = "THP_MEM_ALLOC_ENABLE"

try:
    _libc = ctypes.CDLL("libc.so.6")
    _libc.mallopt.argtypes, _libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _libc.malloc_trim.argtypes, _libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
except (OSError, AttributeError):  # not glibc (macOS, Windows, musl)
    _libc = None


def large_blocks_from_mmap() -> bool:
    """Fix glibc's mmap threshold at MMAP_THRESHOLD_BYTES; True if it was set."""
    return bool(_libc and _libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def trim() -> None:
    if _libc is not None:
        _libc.malloc_trim(0)


def ask_torch_for_huge_pages() -> None:
    os.environ.setdefault(THP_SWITCH, "1")
