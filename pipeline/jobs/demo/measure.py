"""What a stage costs: wall time, CPU time, the process's peak resident set and its rise during the stage, and on
CUDA the peak allocated GPU memory (see the package docstring); and the machine the figures were measured on.

Also used by the benchmarks (`benchmarks/run.py`, `benchmarks/official_sizes.py`)."""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch


@dataclass(frozen=True)
class Usage:
    """Resources one stage used."""

    seconds: float
    """Wall-clock time."""
    user_seconds: float
    """CPU time in user mode, all threads."""
    system_seconds: float
    peak_rss_mb: float
    """Peak resident set of the process during the stage (the process-wide peak so far where it cannot be reset)."""
    rss_rise_mb: float
    """That peak minus the resident set at the start of the stage: the stage's own working memory."""
    cuda_peak_mb: Optional[float] = None
    """Peak allocated CUDA memory during the stage (CUDA runs only)."""


def _status_kb(key: str) -> Optional[int]:
    """A ``kB`` line of /proc/self/status (None off Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the process's peak RSS (VmHWM) to its current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _release_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc's ``malloc_trim``): the resident set at the start of a stage is
    then what is alive, not what earlier stages freed but the allocator kept, so each stage's peak is its own."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the peaks then include memory kept from earlier stages
        pass


def _peak_rss_kb() -> int:
    hwm = _status_kb("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, kB elsewhere


def measure(fn: Callable[[], Any], device: torch.device) -> tuple[Any, Usage]:
    """Run ``fn`` once; its result and the resources it used (see the module docstring)."""
    _release_free_memory()
    _reset_peak_rss()
    rss_start = _status_kb("VmRSS") or _peak_rss_kb()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    usage_start = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    result = fn()
    cuda_peak = None
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        cuda_peak = torch.cuda.max_memory_allocated(device) / 2**20
    seconds = time.perf_counter() - start
    usage_end = resource.getrusage(resource.RUSAGE_SELF)
    peak = _peak_rss_kb()
    return result, Usage(seconds=seconds, user_seconds=usage_end.ru_utime - usage_start.ru_utime,
                         system_seconds=usage_end.ru_stime - usage_start.ru_stime, peak_rss_mb=peak / 1024,
                         rss_rise_mb=max(peak - rss_start, 0) / 1024, cuda_peak_mb=cuda_peak)


def threads_default() -> int:
    """Torch's own CPU thread count (what `--threads 0` keeps)."""
    return torch.get_num_threads()


def machine_info(device: torch.device) -> dict[str, Any]:
    """CPU model, cores, torch version and threads, and the device: what the timings were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
                            "torch_threads": torch.get_num_threads(), "device": str(device),
                            "python": platform.python_version(),
                            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default")}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
