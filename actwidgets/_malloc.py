"""How actwidgets asks glibc's malloc to give memory back, so a Binder kernel (2 GB) that ran
a long lens does not keep its peak. Both are no-ops where the C library is not glibc.

- `large_blocks_from_mmap()`: allocations of 4 MB and more (a lens chunk's logits, a long
  prompt's activations) come from mmap and go back to the OS when freed. glibc's default
  raises that threshold after the first such free, and the lens's repeated 25-64 MB
  temporaries then fragment the heap: a 131-token lens peaked at 1.1 GB or 2.5 GB, run to
  run; with the fixed threshold always 1.06 GB (the model alone: 0.97 GB). Mapping fresh
  pages costs a few ms per 50 MB, next to the matmul that fills them.
- `trim()`: malloc_trim, handing freed heap back once a worker's queue is empty.
"""
from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD_BYTES = 4 << 20

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
