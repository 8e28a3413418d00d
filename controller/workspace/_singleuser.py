"""The sandboxed single-user server's command: ``jupyterhub-singleuser``, minus one
grammar compile that nothing uses.

``python -m controller.workspace._singleuser ARGS`` runs exactly what
``jupyterhub-singleuser ARGS`` runs (the local backend's hub config names it as
``SandboxSpawner.cmd``), except that the package ``rfc3987_syntax`` cannot be
imported. jsonschema imports it, when present, only to check the ``iri`` and
``iri-reference`` formats, and importing it compiles an Earley grammar: 1 to 2 s of
every server start on the development machine. No schema the server loads uses
those formats (jupyter_events' use ``uri`` and ``date-time``; JupyterLab's settings
schemas none; ``tests/unit/workspace/test_singleuser.py`` checks both), and
jsonschema skips a format it has no checker for, as it does for every format it
was not given a checker for.
"""

from __future__ import annotations

import sys

__all__ = ["main", "without_iri_grammar"]

#: jsonschema's optional checker of the iri formats (``jsonschema[format-nongpl]``).
IRI_GRAMMAR = "rfc3987_syntax"


def without_iri_grammar() -> None:
    """Make ``import rfc3987_syntax`` fail (ImportError), as if it were not installed."""
    sys.modules[IRI_GRAMMAR] = None  # type: ignore[assignment]


def main() -> int:
    without_iri_grammar()
    from jupyterhub.singleuser import main as singleuser

    code: int | None = singleuser()
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
