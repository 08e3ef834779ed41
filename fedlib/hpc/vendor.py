"""The sites' torch add-ons that register themselves on import: IPEX makes `torch.xpu` see Intel
GPUs on older builds, oneCCL's bindings register the `ccl` backend. Both the device (which GPUs
torch sees) and the collective (which backend exists) need them imported first, so they live
here, below both."""

from __future__ import annotations

import importlib
import importlib.util

_IMPORTED: dict[str, bool] = {}


def import_optional(name: str) -> bool:
    """Import `name` once if it is installed: a site's torch add-on that registers itself on
    import (IPEX makes `torch.xpu` see Intel GPUs on older builds; oneCCL registers `ccl`)."""
    if name not in _IMPORTED:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if found:
            importlib.import_module(name)
        _IMPORTED[name] = found
    return _IMPORTED[name]


def prepare_backend(name: str) -> None:
    """Make torch.distributed backend `name` available before it is chosen or initialised:
    `ccl` exists only once `oneccl_bindings_for_pytorch` is imported (after IPEX, as ALCF's
    Aurora examples do); `xccl` is native in torch >= 2.8 but needs the XPU runtime loaded."""
    if name in ("ccl", "xccl"):
        import_optional("intel_extension_for_pytorch")
        if not import_optional("oneccl_bindings_for_pytorch") and name == "ccl":
            raise RuntimeError("torch.distributed backend ccl needs oneccl_bindings_for_pytorch "
                               "(ALCF: module load frameworks); none is installed in this venv")
