"""This process's memory, for the benchmarks' figures: resident now and at its peak (Linux).

The peak is the kernel's high-water mark of the process's resident set (VmHWM in
/proc/self/status); `reset_peak_rss()` starts it again from the current size, so that a phase
can report its own peak rather than the largest of every phase before it.
"""

from __future__ import annotations

from pathlib import Path

STATUS = Path("/proc/self/status")


def peak_rss_mb() -> float:
    """The most memory this process has held resident (since the last reset_peak_rss()), in MB."""
    return round(_status_kib("VmHWM") / 1024, 1)


def rss_mb() -> float:
    """The memory this process holds resident now, in MB."""
    return round(_status_kib("VmRSS") / 1024, 1)


def reset_peak_rss() -> None:
    """Start the peak again from the current resident size (writing 5 to clear_refs, Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def _status_kib(key: str) -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{STATUS} has no {key} line (the benchmarks measure memory on Linux)")
