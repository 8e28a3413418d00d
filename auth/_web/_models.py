"""The JSON bodies of the admin API and the OIDC endpoints (the OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ClientIn",
    "ClientOut",
    "Discovery",
    "EnclaveIn",
    "EnclaveOut",
    "InviteRequest",
    "InviteResponse",
    "OAuthError",
    "SessionOut",
    "SessionsEnded",
    "TokenResponse",
    "UserOut",
]


class _ErrorBody(BaseModel):
    detail: str


class InviteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=128)
    display_name: str = Field(default="", max_length=200)
    roles: list[str] = Field(default_factory=lambda: ["researcher"], max_length=4)
    locale: str = Field(default="en", max_length=2)


class InviteResponse(BaseModel):
    username: str
    invitation_code: str
    expires_at: int


class UserOut(BaseModel):
    username: str
    display_name: str
    roles: list[str]
    status: str
    credentials: list[dict[str, Any]]


class ClientIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    client_id: str = Field(min_length=3, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")
    redirect_uris: list[str] = Field(min_length=1, max_length=10)
    post_logout_redirect_uris: list[str] = Field(default_factory=list, max_length=10)
    rotate_secret: bool = False
    #: The tier a client that is not an enclave's hub demands (the audit UI: its
    #: minimum tier); an enclave's hub always demands its enclave's tier.
    tier: str | None = Field(default=None, max_length=64)


class Member(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(min_length=1, max_length=128)
    role: str = Field(default="researcher", max_length=20)


class EnclaveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tier: str = Field(max_length=64)
    display_name: str = Field(default="", max_length=200)
    members: list[Member] = Field(default_factory=list, max_length=1000)
    networks: list[str] = Field(default_factory=list, max_length=100)
    hub_url: str = Field(default="", max_length=2000)
    client: ClientIn | None = None


class EnclaveOut(BaseModel):
    name: str
    tier: str
    display_name: str
    networks: list[str]
    members: list[dict[str, str]]
    hub_url: str
    client_id: str | None = None
    client_secret: str | None = None
    redirect_uris: list[str] = Field(default_factory=list)


class ClientOut(BaseModel):
    client_id: str
    client_secret: str


class SessionOut(BaseModel):
    session: str
    user_id: str | None
    client_ip: str | None
    created_at: float
    last_seen: float


class SessionsEnded(BaseModel):
    username: str
    sessions_ended: int


class Discovery(BaseModel):
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str
    end_session_endpoint: str
    response_types_supported: list[str]
    grant_types_supported: list[str]
    subject_types_supported: list[str]
    id_token_signing_alg_values_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    code_challenge_methods_supported: list[str]
    scopes_supported: list[str]
    claims_supported: list[str]
    acr_values_supported: list[str]


class TokenResponse(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    id_token: str
    scope: str


class OAuthError(BaseModel):
    error: str
    error_description: str
