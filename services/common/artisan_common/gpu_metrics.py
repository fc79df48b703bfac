"""GPU memory as Prometheus gauges, read at scrape time (for the ArtisanHighWorkerVRAM alert).

This module is torch-free: each service hands in ``torch.cuda`` (anything shaped like
:class:`CudaApi`). On a machine without CUDA nothing is exported, so the alert stays silent rather
than reporting a made-up zero.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


@dataclass(frozen=True)
class DeviceMemory:
    device: str
    used_bytes: int
    total_bytes: int


DeviceReader = Callable[[], Sequence[DeviceMemory]]


class CudaApi(Protocol):
    """The part of ``torch.cuda`` the gauges use."""

    def is_available(self) -> bool: ...
    def device_count(self) -> int: ...
    def mem_get_info(self, device: int) -> tuple[int, int]: ...


def cuda_device_memory(cuda: CudaApi) -> list[DeviceMemory]:
    """Used and total memory of every visible CUDA device (used includes other processes)."""
    if not cuda.is_available():
        return []
    devices = []
    for index in range(cuda.device_count()):
        free, total = cuda.mem_get_info(index)
        devices.append(DeviceMemory(device=f"cuda:{index}", used_bytes=total - free, total_bytes=total))
    return devices


class GpuMemoryCollector(Collector):
    """``artisan_gpu_memory_used_bytes{device}`` and ``artisan_gpu_memory_total_bytes{device}``."""

    def __init__(self, cuda: CudaApi) -> None:
        self._read_devices: DeviceReader = lambda: cuda_device_memory(cuda)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        used = GaugeMetricFamily(
            "artisan_gpu_memory_used_bytes", "GPU memory in use on the device", labels=["device"]
        )
        total = GaugeMetricFamily(
            "artisan_gpu_memory_total_bytes", "GPU memory of the device", labels=["device"]
        )
        for memory in self._read_devices():
            used.add_metric([memory.device], memory.used_bytes)
            total.add_metric([memory.device], memory.total_bytes)
        yield used
        yield total
