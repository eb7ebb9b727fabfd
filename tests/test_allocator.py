"""lslib.allocator: with freed memory kept, repeated passes over the same buffer sizes fault no
fresh pages in (the kernel's own count of minor page faults is the independent truth). Each case
runs in a subprocess, since the settings are process-wide."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from lslib.allocator import keep_freed_memory

# A workload that glibc's adaptive defaults hand back to the kernel every time: each block is a
# little larger than the last one freed, so it is at or above the adaptive mmap threshold (which
# follows the largest block freed) and is mapped, faulted in and unmapped on its own.
_SCRIPT = """
import json, resource, sys
import torch
from lslib.allocator import keep_freed_memory
tuned = keep_freed_memory() if sys.argv[1] == "1" else None
def rounds(start):
    for r in range(start, start + 10):
        torch.ones((16 * 2**20 + r * 2**18) // 4)  # 16 MiB and a little more each time, touched
rounds(0)  # warm up
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(10)
print(json.dumps({"tuned": tuned,
                  "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _faults(tune: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", _SCRIPT, "1" if tune else "0"], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="needs glibc's mallopt")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    pages = 10 * 16 * 2**20 // 4096  # pages the measured rounds write (at least)
    default, tuned = _faults(False), _faults(True)
    assert tuned["tuned"] is True
    assert tuned["faults"] < 0.05 * pages  # reused: only the growth (256 KiB a block) is new
    assert default["faults"] > 0.5 * pages  # the default hands every block back


def test_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    assert keep_freed_memory() is False
