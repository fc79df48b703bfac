"""GPU memory gauges: one series per visible device, none without CUDA."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from artisan_common.gpu_metrics import GpuMemoryCollector, cuda_device_memory

GIB = 1 << 30


class FakeCuda:
    def __init__(self, devices: list[tuple[int, int]]) -> None:
        self.devices = devices  # (free, total) per device

    def is_available(self) -> bool:
        return bool(self.devices)

    def device_count(self) -> int:
        return len(self.devices)

    def mem_get_info(self, device: int) -> tuple[int, int]:
        return self.devices[device]


def test_used_memory_is_total_minus_free_per_device() -> None:
    devices = cuda_device_memory(FakeCuda([(30 * GIB, 80 * GIB), (79 * GIB, 80 * GIB)]))
    assert [(d.device, d.used_bytes, d.total_bytes) for d in devices] == [
        ("cuda:0", 50 * GIB, 80 * GIB),
        ("cuda:1", 1 * GIB, 80 * GIB),
    ]


def test_collector_exports_gauges_read_at_scrape_time() -> None:
    cuda = FakeCuda([(30 * GIB, 80 * GIB)])
    registry = CollectorRegistry()
    registry.register(GpuMemoryCollector(cuda))
    assert registry.get_sample_value("artisan_gpu_memory_used_bytes", {"device": "cuda:0"}) == 50 * GIB
    cuda.devices = [(10 * GIB, 80 * GIB)]
    assert registry.get_sample_value("artisan_gpu_memory_used_bytes", {"device": "cuda:0"}) == 70 * GIB
    assert registry.get_sample_value("artisan_gpu_memory_total_bytes", {"device": "cuda:0"}) == 80 * GIB


def test_no_cuda_no_series() -> None:
    registry = CollectorRegistry()
    registry.register(GpuMemoryCollector(FakeCuda([])))
    assert b"artisan_gpu_memory_used_bytes{" not in generate_latest(registry)
