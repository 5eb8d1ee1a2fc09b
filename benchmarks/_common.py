"""Shared benchmark helpers: timing, peak memory, seeds summary, the one-JSON-line output."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """Real-data folder: ``$SCOMICS_DATA`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("SCOMICS_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Context manager sampling the process RSS; ``peak_mb`` is the peak above the value at entry."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        self._base = _rss_bytes()
        self._peak = self._base
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss_bytes())
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, _rss_bytes())
        self.peak_mb = (self._peak - self._base) / 2**20


def measure(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float, float]:
    """Run ``fn`` and return ``(result, wall_seconds, peak_extra_memory_mb)``."""
    with PeakMemory() as mem:
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds = time.perf_counter() - start
    return result, seconds, mem.peak_mb


def mean_sd(values: Iterable[float]) -> dict[str, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) of a list of numbers."""
    arr = np.asarray(list(values), dtype=float)
    sd = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return {"mean": round(float(arr.mean()), 4), "sd": round(sd, 4), "n": int(arr.size)}


def emit(record: dict[str, Any]) -> None:
    """Print the benchmark's single JSON line on stdout (everything else goes to stderr)."""
    sys.stdout.write(json.dumps(record, default=float) + "\n")
    sys.stdout.flush()


def save(record: dict[str, Any], path: str | Path | None) -> None:
    """Write the benchmark's JSON record to ``path`` (one line; parent folders created; nothing if ``None``)."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(record, default=float) + "\n")


def log(msg: str) -> None:
    """Progress messages go to stderr so stdout stays one JSON line."""
    print(msg, file=sys.stderr, flush=True)
