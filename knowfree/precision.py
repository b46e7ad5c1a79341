"""Compute precision of training and prediction: ``fp32``, ``bf16`` or ``auto``.

``bf16`` runs the matrix products of the encoder and the span head under
``torch.autocast(dtype=torch.bfloat16)``; master weights, optimizer state, the loss (sigmoid /
BCE, cross-entropy, CRF), label grids, decoding and metrics stay in float32. On a CPU with
``avx512_bf16`` (or AMX) a bf16 matmul runs about 5x faster than an fp32 one
(``benchmarks/bench_train.py`` measures it beside every training row). ``auto`` is bf16 where
the device does bf16 in hardware (such a CPU, or a GPU that supports it), else fp32.

On CPU, reruns stay bit-identical in every precision: oneDNN's bf16 kernels are deterministic
for a fixed thread count, like the fp32 ones.
"""
from __future__ import annotations

import contextlib

import torch

from knowfree.config import PRECISIONS
from knowfree.errors import ConfigError



def device(name: str, where: str) -> torch.device:
    """The torch device ``name`` ("cpu", "cuda", "cuda:1", "auto": a GPU if one is visible);
    ConfigError naming ``where`` (the flag or config key it came from) for a bad or absent one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"{where} {name!r} is not a torch device (cpu, cuda, cuda:1, auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{where} is {name} but no GPU is visible; use cpu or auto")
    return dev


def cpu_has_bf16() -> bool:
    """True when this CPU computes bf16 matmuls in hardware (avx512_bf16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve(precision: str, device: torch.device | str) -> str:
    """``fp32`` or ``bf16``: what ``precision`` means on ``device``."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_bf16() else "fp32"


def slow_bf16(precision: str, device: torch.device | str, where: str) -> str | None:
    """A warning when ``precision`` resolves to bf16 on a CPU that has no bf16 hardware: torch
    then multiplies bf16 matrices on a reference path (an AVX2-only EPYC: 1.2 GFLOP/s against
    46.8 in fp32, one thread), so a bf16 run there takes tens of times as long. The run stays
    correct and bit-identical, so this warns instead of refusing; None when nothing is wrong."""
    device = torch.device(device)
    if device.type != "cpu" or resolve(precision, device) != "bf16" or cpu_has_bf16():
        return None
    return (f"{where} is bf16 but this CPU has no bf16 hardware (no avx512_bf16 or AMX): bf16 "
            "matmuls run on a slow reference path here; use auto (fp32 on this CPU) unless this "
            "run must match a bf16 run exactly")


def autocast(precision: str, device: torch.device | str):
    """The context the model's forward runs in: bf16 autocast, or nothing for fp32."""
    device = torch.device(device)
    if resolve(precision, device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
