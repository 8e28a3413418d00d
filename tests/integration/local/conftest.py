"""The local backend's tests use the workspace tests' real audit service and portal."""

from tests.integration.workspace.conftest import audit_service, portal

__all__ = ["audit_service", "portal"]
