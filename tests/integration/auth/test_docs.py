"""docs/portal.md stays true: its ``console`` block of operator commands runs as shown."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[3] / "docs" / "portal.md"
ENCLAVE = str(Path(sys.executable).parent / "enclave")


def test_operator_commands_run(tmp_path: Path) -> None:
    blocks = re.findall(r"```console\n(.*?)```", DOC.read_text(), flags=re.S)
    commands = [line[2:] for b in blocks for line in b.splitlines() if line.startswith("$ ")]
    assert len(commands) >= 6
    env = {
        **os.environ,
        "ENCLAVE_PORTAL_STORE": f"sqlite:///{tmp_path / 'identity.db'}",
        "ENCLAVE_PORTAL_KEY_FILE": str(tmp_path / "portal-keys"),
        "ENCLAVE_PORTAL_AUDIT_LOG": f"sqlite:///{tmp_path / 'audit.db'}",
    }
    outputs = []
    for cmd in commands:
        argv = [re.sub(r"\$([A-Z_]+)", lambda m: env[m.group(1)], a) for a in shlex.split(cmd)]
        assert argv[0] == "enclave", cmd
        r = subprocess.run(
            [ENCLAVE, *argv[1:]], env=env, capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 0, f"{cmd}\n{r.stderr}"
        outputs.append(r.stdout)
    assert (
        "schema version 3: applied 0001_initial, 0002_usernames_case_folded, 0003_client_tier"
        in outputs[1]
    )
    assert "invitation_code" in outputs[2]
    assert "client_secret" in outputs[3]
    assert "gut-microbiome-2026" in outputs[4]
    assert "k2, k1" in outputs[6]
    assert '"client_id": "audit-ui"' in outputs[-1]
    assert "client_secret" in outputs[-1]
