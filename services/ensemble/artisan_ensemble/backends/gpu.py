"""GPU memory gauges for the ensemble pod (the torch side lives here: only backends/ imports torch)."""

from __future__ import annotations

import torch
from prometheus_client import CollectorRegistry

from artisan_common.gpu_metrics import GpuMemoryCollector


def register_gpu_metrics(registry: CollectorRegistry) -> None:
    """Export artisan_gpu_memory_{used,total}_bytes{device}; nothing on a machine without CUDA."""
    registry.register(GpuMemoryCollector(torch.cuda))
