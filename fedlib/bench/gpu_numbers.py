"""What a GPU check needs to know about the device before it measures: its topology (the
vendor's own tool), its peak arithmetic rate per precision (datasheet values, dense: without
structured sparsity), and how many FLOPs a transformer's training step spends per token, so
that tokens/s becomes model FLOPs utilization (MFU, as PaLM defines it: 6N + 12·L·H·S FLOPs
per token for the forward and backward pass; N the trainable parameters, L layers, H hidden
width, S sequence length; the optimizer step and padding are not counted).
"""

from __future__ import annotations

import shutil
import subprocess

# (name fragment, {precision: dense FLOP/s}); the first fragment found in the device name wins.
# NVIDIA H100/H200 SXM and A100 datasheets; AMD MI250X per GCD (torch sees each GCD as a
# device: half the card's figures). Values for a device not listed are unknown (MFU: None).
PEAKS: list[tuple[str, dict[str, float]]] = [
    ("H100 PCIe", {"fp32": 51.2e12, "tf32": 378e12, "bf16": 756e12, "fp16": 756e12}),
    ("H200", {"fp32": 67e12, "tf32": 494.7e12, "bf16": 989.4e12, "fp16": 989.4e12}),
    ("H100", {"fp32": 67e12, "tf32": 494.7e12, "bf16": 989.4e12, "fp16": 989.4e12}),
    ("A100", {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12, "fp16": 312e12}),
    ("MI250X", {"fp32": 47.9e12, "bf16": 191.5e12, "fp16": 191.5e12}),  # fp32 matrix; no TF32
]
TOPOLOGY = [("nvidia-smi", ["topo", "-m"]), ("rocm-smi", ["--showtopo"]), ("xpu-smi", ["topology", "-m"])]


def peak_flops(device_name: str, precision: str) -> float | None:
    """The device's dense peak FLOP/s in `precision` (fp32, tf32, bf16, fp16), None if unknown."""
    for fragment, peaks in PEAKS:
        if fragment.lower() in device_name.lower():
            return peaks.get(precision)
    return None


def flops_per_token(trainable: int, layers: int, hidden: int, seq: int) -> float:
    """Training FLOPs per token: 6N (weights, forward and backward) + 12·L·H·S (attention)."""
    return 6.0 * trainable + 12.0 * layers * hidden * seq


def mfu(tokens_per_s: float, per_token: float, peak: float | None) -> float | None:
    """Model FLOPs utilization: achieved model FLOP/s over the device's peak."""
    return None if not peak else tokens_per_s * per_token / peak


def topology(timeout_s: float = 20.0) -> tuple[str, str]:
    """(the tool's command, its output) for the first vendor tool found, else ("", why not)."""
    for tool, args in TOPOLOGY:
        if shutil.which(tool):
            try:
                out = subprocess.run([tool, *args], capture_output=True, text=True, timeout=timeout_s)
            except subprocess.TimeoutExpired:
                return f"{tool} {' '.join(args)}", f"timed out after {timeout_s:g} s"
            return f"{tool} {' '.join(args)}", (out.stdout or out.stderr).strip()
    return "", "no nvidia-smi, rocm-smi or xpu-smi on PATH"
