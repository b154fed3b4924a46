"""Helpers shared by the benchmark scripts: timing, peak memory and a description of the machine."""

from __future__ import annotations

import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux keeps ru_maxrss across exec (a child would start at its
    parent's peak), so read the high-water mark of this process's own address space where there is one."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], repeats: int, device: str) -> list[float]:
    """Milliseconds of each of ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def summary(times: list[float]) -> tuple[float, float]:
    return min(times), statistics.median(times)


class PeakMemory:
    """Peak memory (MB) above the level at construction: resident memory on CPU, the allocator's on CUDA."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated() / 2**20
        else:
            self.base = peak_rss_mb()

    def peak_mb(self) -> float:
        return (torch.cuda.max_memory_allocated() / 2**20 if self.cuda else peak_rss_mb()) - self.base


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def sgemm_gflops(device: str, size: int = 2048, repeats: int = 10) -> float:
    """float32 matrix-multiply rate of this machine: timings on shared hosts drift, this says how fast it was."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    ms = min(timed(lambda: a @ b, repeats, device))
    return 2 * size**3 / (ms / 1e3) / 1e9


def machine(device: str) -> str:
    """One line naming the device, threads, torch version and the measured sgemm rate."""
    cuda = device.startswith("cuda")
    where = torch.cuda.get_device_name() if cuda else f"{cpu_name()}, {torch.get_num_threads()} threads"
    return f"{where}, torch {torch.__version__}, sgemm {sgemm_gflops(device):.0f} GFLOP/s"


def run_child(script: str, args: list[str]) -> dict:
    """Run ``script ARGS`` in a fresh process, so that its peak memory is its own; its last line is JSON."""
    result = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"benchmark {' '.join(args)} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])
