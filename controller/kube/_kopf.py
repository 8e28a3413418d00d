"""kopf, imported without the generated client of ``kubernetes_asyncio``.

kopf imports ``kubernetes_asyncio.client`` whenever that package is installed, only to
recognise its object types (``kopf._cogs.helpers.thirdparty``). It is installed here
because KubeSpawner, which every enclave hub runs, needs it; the controller never hands
kopf such an object. Importing it cost the controller about 870 modules and 30 MB of
resident memory (``benchmarks/controller.py``, peak RSS 215 MB instead of 182 MB).

So kopf is imported while ``kubernetes_asyncio`` reads as not installed, then the
package is importable again for anything else in the process (the hub's spawner in
tests). If kopf was imported before this module, nothing changes.
"""

from __future__ import annotations

import sys
from types import ModuleType

__all__ = ["kopf"]

_HIDDEN = "kubernetes_asyncio"


def _import_kopf() -> ModuleType:
    hide = _HIDDEN not in sys.modules and "kopf" not in sys.modules
    if hide:
        sys.modules[_HIDDEN] = None  # type: ignore[assignment]  # import fails: not installed
    try:
        import kopf as module
    finally:
        if hide:
            del sys.modules[_HIDDEN]
    return module


kopf = _import_kopf()
