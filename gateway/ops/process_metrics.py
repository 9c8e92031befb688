"""The standard `process_*` metrics of the gateway's own process, from /proc, as
prometheus_client's `ProcessCollector` gives them (names, help, order and values): virtual and
resident memory, start time, CPU seconds, open and maximum file descriptors.

Linux only, as there: where /proc cannot be read (no `btime` in /proc/stat) there are none;
where the process's `stat` or `limits` cannot be read, the families it gives are left out.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from gateway.ops.exposition import CounterMetricFamily, Family, GaugeMetricFamily


class ProcessCollector:
    """`proc`: the /proc file system (a test gives a copy); `pid`: the process, `self` by
    default. The boot time is read once, here; the rest at every `collect`."""

    def __init__(self, proc: Path = Path("/proc"), pid: str = "self") -> None:
        self._dir = proc / pid
        self._ticks = float(os.sysconf("SC_CLK_TCK"))
        self._pagesize = os.sysconf("SC_PAGESIZE")
        self._btime = 0.0
        try:
            with (proc / "stat").open("rb") as stat:
                for line in stat:
                    if line.startswith(b"btime "):
                        self._btime = float(line.split()[1])
                        break
        except OSError:
            pass

    def collect(self) -> Iterator[Family]:
        if not self._btime:
            return
        try:
            fields = (self._dir / "stat").read_bytes().rsplit(b")", 1)[-1].split()
        except OSError:
            pass
        else:
            # fields of proc_pid_stat(5) after the command, from its 3rd (state) on
            yield GaugeMetricFamily("process_virtual_memory_bytes",
                                    "Virtual memory size in bytes.", value=float(fields[20]))
            yield GaugeMetricFamily("process_resident_memory_bytes",
                                    "Resident memory size in bytes.",
                                    value=float(fields[21]) * self._pagesize)
            yield GaugeMetricFamily("process_start_time_seconds",
                                    "Start time of the process since unix epoch in seconds.",
                                    value=float(fields[19]) / self._ticks + self._btime)
            yield CounterMetricFamily("process_cpu_seconds_total",
                                      "Total user and system CPU time spent in seconds.",
                                      value=float(fields[11]) / self._ticks
                                      + float(fields[12]) / self._ticks)
        try:
            max_fds = self._max_fds()
            open_fds = len(os.listdir(self._dir / "fd"))
        except OSError:
            return
        yield GaugeMetricFamily("process_open_fds", "Number of open file descriptors.",
                                value=open_fds)
        if max_fds is not None:
            yield GaugeMetricFamily("process_max_fds",
                                    "Maximum number of open file descriptors.", value=max_fds)

    def _max_fds(self) -> float | None:
        with (self._dir / "limits").open("rb") as limits:
            for line in limits:
                if line.startswith(b"Max open file"):
                    return float(line.split()[3])
        return None
