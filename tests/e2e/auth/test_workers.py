"""``serve --workers 2``: every process publishes every signing key after a rotation
made through any one of them."""

from __future__ import annotations

import pytest

from .conftest import PortalProcess


def test_rotation_is_visible_from_every_worker(tmp_path_factory: pytest.TempPathFactory) -> None:
    p = PortalProcess(state=tmp_path_factory.mktemp("workers"), extra=("--workers", "2")).start()
    try:
        import httpx

        before = {k["kid"] for k in httpx.get(p.base + "/oidc/jwks").json()["keys"]}
        assert len(before) == 1
        r = p.admin("POST", "/api/admin/keys/rotate")
        assert r.status_code == 200
        new = r.json()["kid"]
        # New connections land on either worker; each one must publish both keys.
        for _ in range(20):
            with httpx.Client() as c:
                kids = {k["kid"] for k in c.get(p.base + "/oidc/jwks").json()["keys"]}
            assert kids == before | {new}
    finally:
        p.stop()
