"""The few Kubernetes quantities the renderer adds up: CPU and bytes.

Only the forms the Enclave schema admits (``2``, ``0.5``, ``500m``; ``8Gi``,
``512Mi``, ``1073741824``) are parsed; results are exact integers (millicores,
bytes), printed back in the largest unit that divides them.
"""

from __future__ import annotations

from decimal import Decimal

__all__ = ["bytes_quantity", "cpu_quantity", "format_bytes", "format_cpu"]

_BINARY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}


def cpu_quantity(value: str) -> int:
    """Millicores in ``value``."""
    if value.endswith("m"):
        return int(value[:-1])
    return int(Decimal(value) * 1000)


def bytes_quantity(value: str) -> int:
    """Bytes in ``value``."""
    for suffix, factor in _BINARY.items():
        if value.endswith(suffix):
            return int(value[: -len(suffix)]) * factor
    return int(value)


def format_cpu(millicores: int) -> str:
    return str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m"


def format_bytes(count: int) -> str:
    for suffix, factor in reversed(_BINARY.items()):
        if count % factor == 0:
            return f"{count // factor}{suffix}"
    return str(count)
