"""Device selection and mixed precision, in one place so methods never touch them."""

from __future__ import annotations

import contextlib

import torch


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    return torch.device(name)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host tensor -> ``device``. To CUDA through pinned memory with ``non_blocking``: a copy
    from pageable memory makes the host wait for all GPU work already queued (a hidden sync)."""
    if device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a wall clock read after it includes that work)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def place(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``module`` on ``device``; channels_last on CUDA, where cuDNN's convolutions (and bf16
    tensor cores) run fastest in NHWC. Inputs are channels_last already (the augmenter writes
    them so), so the layout never flips between layers."""
    module = module.to(device)
    return module.to(memory_format=torch.channels_last) if device.type == "cuda" else module


def compile_backbone(encoder: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile`` the encoder's backbone in place (``nn.Module.compile``: parameter names
    and the state dict stay as they are, so cache keys and state hashes do not change). Only
    the backbone: heads and losses are small, and the augmentation draws its parameters on
    the host."""
    encoder.backbone.compile()
    return encoder


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` has bf16 kernels. Without them bf16 still runs but is emulated from
    fp32: on a 2-core AMD EPYC without AVX-512 (Zen 3) a SimCLR convnet-s step took 9x as long
    in bf16 as in fp32 (``python -m bench.estimate``: 57 vs 508 images/s, 2026-12-02). On CPU
    oneDNN's bf16 path needs AVX-512 (AVX512-BF16 or AMX natively); on CUDA, Ampere or later."""
    if device.type == "cuda":
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # torch < 2.5 has no including_emulation and counts no emulation
            return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a build without oneDNN: ask the CPU itself
            return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return True


def autocast(device: torch.device, precision: str):
    """bf16 autocast where asked for (CPU and CUDA both support it); a no-op for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class PeakMemory:
    """Peak memory of a block: the CUDA allocator's peak on GPU; on CPU the peak resident set
    size above the block's starting RSS, sampled every 5 ms by a thread (torch's CPU
    allocator keeps no statistics)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_mb = 0.0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        import threading

        self._base = _rss()
        self._max = self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._max = max(self._max, _rss())

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak_mb = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
            return
        self._stop.set()
        self._thread.join()
        self._max = max(self._max, _rss())
        self.peak_mb = (self._max - self._base) / 2**20


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096
    except OSError:  # not Linux: fall back to the process peak
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
