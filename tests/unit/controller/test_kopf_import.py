"""The controller's process does not load kubernetes_asyncio's generated client.

kopf imports it whenever it is installed (KubeSpawner brings it, for the hubs), which
cost the controller about 30 MB of resident memory for nothing it uses
(``controller/kube/_kopf.py``). Checked in a fresh interpreter: a test process has
imported half the world already.
"""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import sys
import controller.kube.operator
loaded = 'kubernetes_asyncio' in sys.modules
import kubernetes_asyncio.client  # still importable for anything else (the hub's spawner)
print(loaded, len(sys.modules) > 0)
"""


def test_the_operator_does_not_load_kubernetes_asyncio_yet_leaves_it_importable() -> None:
    r = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=False
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "True"], r.stdout
