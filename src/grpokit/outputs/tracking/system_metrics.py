"""CPU, RAM and per-GPU samples taken on a background thread every `system_metrics_interval` seconds.

GPU values come from NVML (`nvidia-ml-py`), one key per real device: `system/gpu<i>/utilization_percent`,
`memory_used_gb`, `memory_total_gb`, `power_watts`, `temperature_c`, where `<i>` is the NVML index.
Without a GPU (or without NVML) only CPU and RAM are sampled, and that is said once.

The thread only collects; the trainer callback sends the samples to the trackers from the training
thread, so trackers never see calls from two threads.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass

import psutil

logger = logging.getLogger("grpokit.tracking")

GIB = 1024**3
MAX_BUFFERED_SAMPLES = 1000  # a step longer than 1000 intervals keeps only the newest samples


@dataclass(frozen=True)
class SystemSample:
    timestamp: float  # seconds since the epoch
    values: dict[str, float]


def visible_gpu_indices(device_count: int, cuda_visible_devices: str | None) -> list[int]:
    """The NVML indices this job may use: all, or those CUDA_VISIBLE_DEVICES names by number.

    >>> visible_gpu_indices(8, "2,3")
    [2, 3]
    >>> visible_gpu_indices(2, None)
    [0, 1]
    """
    if not cuda_visible_devices:
        return list(range(device_count))
    parts = [part.strip() for part in cuda_visible_devices.split(",") if part.strip()]
    if not all(
        part.isdigit() for part in parts
    ):  # UUIDs or MIG names: NVML indices cannot be matched, keep all
        return list(range(device_count))
    return [int(part) for part in parts if int(part) < device_count]


class GpuReader:
    """Reads NVML; `available` is False (with `reason`) when there is no GPU or no driver."""

    def __init__(self) -> None:
        self.available = False
        self.reason = ""
        self._handles: list[tuple[int, object]] = []
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            indices = visible_gpu_indices(count, os.environ.get("CUDA_VISIBLE_DEVICES"))
            self._handles = [(index, pynvml.nvmlDeviceGetHandleByIndex(index)) for index in indices]
            self.available = bool(self._handles)
            self.reason = "" if self.available else "NVML reports no devices"
        except Exception as error:  # noqa: BLE001 - ImportError or NVMLError: no GPU to sample
            self.reason = f"{type(error).__name__}: {error}"

    def read(self) -> dict[str, float]:
        import pynvml

        values: dict[str, float] = {}
        for index, handle in self._handles:
            prefix = f"system/gpu{index}/"
            readers = {
                "utilization_percent": lambda h: pynvml.nvmlDeviceGetUtilizationRates(h).gpu,
                "memory_used_gb": lambda h: pynvml.nvmlDeviceGetMemoryInfo(h).used / GIB,
                "memory_total_gb": lambda h: pynvml.nvmlDeviceGetMemoryInfo(h).total / GIB,
                "power_watts": lambda h: pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0,
                "temperature_c": lambda h: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
            }
            for name, reader in readers.items():
                try:
                    values[prefix + name] = float(reader(handle))
                except pynvml.NVMLError:  # e.g. power is not supported on this board: leave the key out
                    continue
        return values


def cpu_and_memory() -> dict[str, float]:
    memory = psutil.virtual_memory()
    return {
        "system/cpu_utilization_percent": psutil.cpu_percent(interval=None),
        "system/memory_used_gb": (memory.total - memory.available) / GIB,
        "system/memory_total_gb": memory.total / GIB,
        "system/memory_percent": memory.percent,
        "system/process_rss_gb": psutil.Process().memory_info().rss / GIB,
    }


class SystemMetricsSampler:
    """Samples every `interval_s` seconds on a daemon thread; `drain()` returns the samples taken since the last call."""

    def __init__(self, interval_s: float, gpu_reader: GpuReader | None = None) -> None:
        self.interval_s = interval_s
        self.gpu = gpu_reader if gpu_reader is not None else GpuReader()
        self._samples: deque[SystemSample] = deque(maxlen=MAX_BUFFERED_SAMPLES)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not self.gpu.available:
            logger.info("system metrics: no GPU found (%s); sampling CPU and RAM only", self.gpu.reason)

    def sample(self) -> SystemSample:
        values = cpu_and_memory()
        if self.gpu.available:
            values.update(self.gpu.read())
        return SystemSample(timestamp=time.time(), values=values)

    def start(self) -> None:
        psutil.cpu_percent(interval=None)  # the first reading is always 0: start the measuring window now
        self._thread = threading.Thread(target=self._run, name="grpokit-system-metrics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            sample = self.sample()
            with self._lock:
                self._samples.append(sample)

    def drain(self) -> list[SystemSample]:
        with self._lock:
            samples = list(self._samples)
            self._samples.clear()
        return samples

    def stop(self) -> list[SystemSample]:
        """Stop the thread, take a last sample, and return everything not yet drained."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return self.drain() + [self.sample()]
