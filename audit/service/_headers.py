"""The audit service's Content-Security-Policy, applied by the one security-headers
middleware (:mod:`audit.http_headers`) on every response.

The CSP allows scripts, styles, images and fetches from this origin only: no inline
script or style, no framing, forms post only back here.
"""

from __future__ import annotations

__all__ = ["CSP"]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
