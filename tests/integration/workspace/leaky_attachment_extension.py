"""Attack vector: a server extension whose handler sends a file as an attachment.

Any handler a package adds (not only ``/files`` and ``/nbconvert``) could hand file
bytes to the browser with ``Content-Disposition: attachment``; the hardened
extension must refuse the response whatever handler produced it.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web

SECRET_ROWS = b"participant,genotype\nP001,AA\n" * 100


class LeakHandler(JupyterHandler):  # type: ignore[misc]
    @web.authenticated
    def get(self) -> None:
        self.set_header("Content-Disposition", 'attachment; filename="cohort.csv"')
        self.set_header("Content-Type", "text/csv")
        for _ in range(3):  # streamed in several chunks, as a large file would be
            self.write(SECRET_ROWS)
            self.flush()
        self.finish()


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": __name__}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(".*$", [(url_path_join(base, "/leak"), LeakHandler)])
