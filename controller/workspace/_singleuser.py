"""The sandboxed single-user server's command: ``jupyterhub-singleuser``, minus one
grammar compile that nothing uses.

``python -m controller.workspace._singleuser ARGS`` runs exactly what
``jupyterhub-singleuser ARGS`` runs (the local backend's hub config names it as
``SandboxSpawner.cmd``), except that the package ``rfc3987_syntax`` cannot be
imported. jsonschema imports it, when present, only to check the ``iri`` and
``iri-reference`` formats, and importing it compiles an Earley grammar: 0.9 to 2.2 s
of every server start on the development machine. No schema the server loads uses
those formats (jupyter_events' name ``uri`` and ``datetime``; jupyter_server's,
JupyterHub's and JupyterLab's settings schemas none;
``tests/unit/workspace/test_singleuser.py`` reads them all), and jsonschema leaves
unchecked a format it has no checker for.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["main", "run_without_iri_grammar", "without_iri_grammar"]

#: jsonschema's optional checker of the iri formats (``jsonschema[format-nongpl]``).
IRI_GRAMMAR = "rfc3987_syntax"


def without_iri_grammar() -> None:
    """Make ``import rfc3987_syntax`` fail (ImportError), as if it were not installed."""
    sys.modules[IRI_GRAMMAR] = None  # type: ignore[assignment]


def run_without_iri_grammar(*, program: str) -> int:
    """Run the module ``program``'s ``main()`` with the grammar unimportable; its exit code."""
    without_iri_grammar()
    code: int | None = importlib.import_module(program).main()
    return code or 0


def main() -> int:
    return run_without_iri_grammar(program="jupyterhub.singleuser")


if __name__ == "__main__":
    sys.exit(main())
