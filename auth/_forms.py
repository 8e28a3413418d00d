"""The form fields every portal page shares, and the CSRF token a POST carries.

Used by the routers of ``auth._web`` and by ``auth._app``'s ``Web``, which checks
the token. Nothing here checks anything: validation of sizes is FastAPI's, the
CSRF check is ``Web.posted`` / ``Web.options_ctx`` in the handler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Form, Header, Request

__all__ = [
    "CodeField",
    "CredentialField",
    "CsrfField",
    "CsrfHeader",
    "PasswordField",
    "Post",
    "PostedForm",
    "ScriptPost",
]

#: The form fields and header every page shares, with their size limits.
CsrfField = Annotated[str, Form(max_length=100)]
CsrfHeader = Annotated[str | None, Header(max_length=100)]
CodeField = Annotated[str, Form(max_length=64)]
CredentialField = Annotated[str, Form(max_length=65536)]
PasswordField = Annotated[str, Form(max_length=2048)]


@dataclass(frozen=True)
class Post:
    """A POST's request and the CSRF token it carries, not yet checked.

    The token is checked by :meth:`Web.posted` (or :meth:`Web.options_ctx`), called
    first thing in the handler, so only after FastAPI validated every field: a
    malformed request is still answered 422 (and audited as such), whatever its
    token, exactly as when each handler took ``request`` and the token itself.
    """

    request: Request
    csrf: str | None


def _form_post(request: Request, csrf: CsrfField) -> Post:
    return Post(request=request, csrf=csrf)  # checks nothing: see Post


def _script_post(request: Request, x_csrf_token: CsrfHeader = None) -> Post:
    return Post(request=request, csrf=x_csrf_token)  # checks nothing: see Post


#: A form post (token in the ``csrf`` field); :meth:`Web.posted` makes it a session.
PostedForm = Annotated[Post, Depends(_form_post)]
#: A script's post (token in ``X-CSRF-Token``); :meth:`Web.options_ctx` makes it a session.
ScriptPost = Annotated[Post, Depends(_script_post)]
