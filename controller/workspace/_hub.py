"""An enclave hub's command: ``jupyterhub``, minus the IRI grammar it never uses.

``python -m controller.workspace._hub ARGS`` runs what ``jupyterhub ARGS`` runs (the
local backend starts its hubs so), as :class:`~controller.workspace._hubapp.EnclaveHub`
(JupyterHub, able to run its idle culler in-process), with ``rfc3987_syntax`` unimportable
as in :mod:`controller.workspace._singleuser`: JupyterHub's event logging imports
jupyter_events, hence jsonschema, hence that grammar, which cost each hub 16 MB of
resident memory and 1.4 to 2 s of start-up here. JupyterHub's own event schemas use
no format at all (``tests/unit/workspace/test_singleuser.py`` reads them).
"""

from __future__ import annotations

import sys

from ._singleuser import run_without_iri_grammar

__all__ = ["main"]


def main() -> int:
    return run_without_iri_grammar(program="controller.workspace._hubapp")


if __name__ == "__main__":
    sys.exit(main())
