"""One hub's configuration as a pure function: Enclave spec + tier + site -> ``HubConfig``.

Used by the local backend (rendered into a ``jupyterhub_config.py``) and later by the
Kubernetes backend (the same traitlets, in the hub's ConfigMap). Nothing here reads
or writes files: secrets are named by path (:class:`SecretFile`) and read by the
rendered configuration when the hub loads it, so they never appear in the
configuration text, a process's argv, or a log.

The secure defaults are fixed, not settings: admin access to user servers off,
named servers off, auth state encrypted, no admin users, allow-all off, user
configuration inside the single-user server ignored. The tier sets the idle limit
and the absolute session limit (``session`` control) and whether terminals exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policies import Tier

from ._spec import EnclaveSpec
from .errors import SpecError

__all__ = [
    "AUTHENTICATOR_CLASS",
    "LAB_SETTINGS_DIR",
    "SANDBOX_SPAWNER_CLASS",
    "SERVER_EXTENSION",
    "SINGLEUSER_MODULE",
    "SPAWNER_CLASS",
    "UNUSED_SERVER_EXTENSIONS",
    "HubConfig",
    "HubSite",
    "IdleCuller",
    "LocalSandbox",
    "ResolvedURL",
    "SecretFile",
    "make_hub_config",
]

#: The authenticator every enclave hub runs (see ``controller.workspace.hub``).
AUTHENTICATOR_CLASS = "controller.workspace.hub.EnclaveAuthenticator"
#: The spawner of a site without a sandbox: servers run as the member's OS account.
SPAWNER_CLASS = "controller.workspace.hub.AuditedLocalProcessSpawner"
#: The local backend's spawner: each server in its no-egress sandbox, audited.
SANDBOX_SPAWNER_CLASS = "controller.local.spawner.AuditedSandboxSpawner"
#: The hardened single-user server extension (``controller.workspace.serverext``).
SERVER_EXTENSION = "controller.workspace.serverext"
#: The proxy a hub runs in its own process when its site names no proxy command.
IN_PROCESS_PROXY_CLASS = "controller.workspace.proxy.InProcessProxy"

#: JupyterLab's application settings shipped here: page_config.json disables the
#: download and export menu items (best effort; the server extension enforces).
LAB_SETTINGS_DIR = Path(__file__).resolve().parent / "labsettings"

#: Server extensions installed beside JupyterLab that a workspace does not use, off:
#: jupyter_lsp bridges websockets to language servers (none is installed; it scans
#: for a dozen at every start), notebook_shim loads the classic notebook server's
#: extensions (a workspace runs none). Each is one path less into the server.
UNUSED_SERVER_EXTENSIONS = ("jupyter_lsp", "notebook_shim")
#: The sandboxed server's command (see ``controller.workspace._singleuser``).
SINGLEUSER_MODULE = "controller.workspace._singleuser"

#: The scopes the idle culler needs, and no more (jupyterhub-idle-culler's README).
_CULLER_SCOPES = ("list:users", "read:users:activity", "read:servers", "delete:servers")


@dataclass(frozen=True)
class SecretFile:
    """A secret the hub reads from ``path`` when it loads its configuration."""

    path: Path


@dataclass(frozen=True)
class ResolvedURL:
    """``prefix`` + ``url`` with its host replaced by the address the hub resolves it
    to when it loads its configuration: for peers that cannot resolve names."""

    prefix: str
    url: str


#: The rendered definition of ``_resolved_url`` (a configuration that uses it only).
_RESOLVED_URL_HELPER = (
    "def _resolved_url(prefix, url):",
    "    import socket",
    "    import urllib.parse",
    "    parts = urllib.parse.urlsplit(url)",
    "    try:",
    "        found = socket.getaddrinfo(parts.hostname, parts.port, type=socket.SOCK_STREAM)",
    "    except OSError as e:",
    "        raise SystemExit(f'{parts.hostname} does not resolve to an address: {e}') from None",
    "    address = min(found, key=lambda a: (a[0] != socket.AF_INET, a[4][0]))[4][0]",
    "    host = f'[{address}]' if ':' in address else address",
    "    netloc = host if parts.port is None else f'{host}:{parts.port}'",
    "    return prefix + parts._replace(netloc=netloc).geturl()",
    "",
    "",
)


@dataclass(frozen=True, kw_only=True)
class LocalSandbox:
    """The local backend's sandbox settings (``SandboxSpawner``'s traits).

    ``state_dir`` holds the enclave's home, each server's sockets and spool; every
    ancestor must be searchable by the sandbox's unprivileged host user.
    ``datasets`` maps each mount path inside to the dataset's host directory
    (always bound read-only). ``workspace_token_file`` is the enclave's workspace
    intake token (0600), handed to each server inside its own sandbox only.
    ``readonly_paths`` are host paths the server needs (the Python environment, the
    project's packages), bound read-only at the same place.
    """

    state_dir: Path
    datasets: tuple[tuple[str, Path], ...]
    workspace_token_file: Path
    readonly_paths: tuple[Path, ...]


@dataclass(frozen=True, kw_only=True)
class HubSite:
    """Where one hub runs on this site: addresses, its state directory, the peers.

    ``state_dir`` holds the hub's database and these files, each readable by its
    owner only: ``cookie_secret``, ``crypt_key`` (64 hex characters: the auth-state
    key), ``client_secret`` (the hub's OIDC client secret at the portal) and
    ``audit_token`` (the hub's intake token, ``source=hub``, bound to the enclave).
    ``tier_overlay`` is the operator's tier overlay as each single-user server can read
    it (inside its sandbox, for the local backend), and the hub at the same path: every
    workspace loads the catalog with it, so a site's tightened tier (a smaller screen
    budget) reaches the server, and the hub's authenticator decides entry with it.

    Three settings let a site whose hub runs elsewhere (the Kubernetes backend, in a
    pod) say where things are there: ``secret_dir`` holds ``cookie_secret``,
    ``crypt_key``, ``client_secret`` and ``audit_token`` instead of ``state_dir``;
    ``portal_backchannel_url`` is where the hub itself fetches tokens, user info and
    the JWKS (the issuer and the authorize URL stay ``portal_url``, what browsers and
    tokens name); ``lab_settings_dir`` is the lab settings directory as the
    single-user server sees it (None: the server's default, where an image installs
    them). ``workspace_args`` are arguments the backend adds for every single-user
    server it runs (where its intake token and spool are, inside a pod).
    """

    portal_url: str
    public_url: str
    hub_api_port: int
    state_dir: Path
    audit_url: str
    python: str
    #: True (the local backend): the hub serves its proxy (``controller.workspace.proxy``)
    #: and runs its idle culler (``controller.workspace._hubapp``) in its own process,
    #: started as ``python -m controller.workspace._hub``. False: configurable-http-proxy
    #: (``proxy_command``, its API at ``proxy_api_port``) and the culler as a hub-managed
    #: service, each a process of its own.
    in_process: bool = False
    proxy_command: tuple[str, ...] = ()
    proxy_api_port: int = 0
    cull_every_s: int = 60
    spawner_class: str = SPAWNER_CLASS
    sandbox: LocalSandbox | None = None
    tier_overlay: Path | None = None
    secret_dir: Path | None = None
    portal_backchannel_url: str | None = None
    lab_settings_dir: Path | None = LAB_SETTINGS_DIR
    workspace_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("portal_url", "public_url", "audit_url", "portal_backchannel_url"):
            value = getattr(self, name)
            if value is None and name == "portal_backchannel_url":
                continue
            if not value.startswith(("http://", "https://")) or value.endswith("/"):
                raise SpecError(
                    f"{name} must be an http(s) URL without a trailing slash, not {value!r}",
                    field=name,
                )
        for name in ("hub_api_port", "proxy_api_port"):
            if name == "proxy_api_port" and self.in_process:
                continue
            if not 1 <= getattr(self, name) <= 65535:
                raise SpecError(f"{name} must be a TCP port (1-65535)", field=name)
        if self.in_process and (self.proxy_command or self.proxy_api_port):
            raise SpecError(
                "a hub that proxies in its own process has no proxy_command or proxy_api_port",
                field="proxy",
            )
        if not self.in_process and not self.proxy_command:
            raise SpecError("proxy_command must name configurable-http-proxy", field="proxy")
        if not 10 <= self.cull_every_s <= 3600:
            raise SpecError("cull_every_s must be 10-3600 seconds", field="cull_every_s")
        if self.sandbox is not None and self.spawner_class != SANDBOX_SPAWNER_CLASS:
            raise SpecError(
                f"a site with a sandbox runs {SANDBOX_SPAWNER_CLASS}, not {self.spawner_class}",
                field="spawner_class",
            )


@dataclass(frozen=True, kw_only=True)
class IdleCuller:
    """jupyterhub-idle-culler as a hub-managed service, at the tier's limits."""

    timeout_s: int
    max_age_s: int
    every_s: int
    python: str
    #: The hub's API as the culler reaches it: on loopback, in the hub's own host or pod.
    api_url: str
    #: Run inside the hub (``EnclaveHub.idle_culler``), not as a process of its own.
    in_process: bool = False

    def settings(self) -> dict[str, Any]:
        """``EnclaveHub.idle_culler``: the same settings as the command's flags."""
        return {
            "url": self.api_url,
            "timeout": self.timeout_s,
            "max_age": self.max_age_s,
            "every": self.every_s,
        }

    def service(self) -> dict[str, Any]:
        if self.in_process:
            return {"name": "idle-culler"}  # its token is made by the hub at each start
        return {
            "name": "idle-culler",
            "command": [
                self.python,
                "-m",
                "jupyterhub_idle_culler",
                f"--timeout={self.timeout_s}",
                f"--max-age={self.max_age_s}",
                f"--cull-every={self.every_s}",
                f"--url={self.api_url}",
            ],
        }

    def role(self) -> dict[str, Any]:
        return {"name": "idle-culler", "scopes": list(_CULLER_SCOPES), "services": ["idle-culler"]}


@dataclass(frozen=True, kw_only=True)
class HubConfig:
    """Everything one enclave's JupyterHub is configured with; see :func:`make_hub_config`."""

    enclave: str
    tier: str
    members: tuple[str, ...]
    bind_url: str
    hub_bind_url: str
    proxy_api_url: str
    proxy_command: tuple[str, ...]
    db_url: str
    cookie_secret_file: Path
    cookie_max_age_days: float
    crypt_key: SecretFile
    admin_access: bool
    allow_named_servers: bool
    admin_users: frozenset[str]
    authenticator_class: str
    authenticator: Mapping[str, Any]
    spawner_class: str
    spawner: Mapping[str, Any]
    culler: IdleCuller
    extra: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def in_process(self) -> bool:
        """The proxy and the idle culler run in the hub's process (:attr:`HubSite.in_process`)."""
        return self.culler.in_process

    def traitlets(self) -> dict[str, dict[str, Any]]:
        """The configuration as ``{Class: {trait: value}}``; secrets stay :class:`SecretFile`."""
        out: dict[str, dict[str, Any]] = {
            "JupyterHub": {
                "bind_url": self.bind_url,
                "hub_bind_url": self.hub_bind_url,
                "db_url": self.db_url,
                "cookie_secret_file": str(self.cookie_secret_file),
                "cookie_max_age_days": self.cookie_max_age_days,
                "admin_access": self.admin_access,
                "allow_named_servers": self.allow_named_servers,
                "authenticator_class": self.authenticator_class,
                "spawner_class": self.spawner_class,
                "services": [self.culler.service()],
                "load_roles": [self.culler.role()],
                "default_url": "/hub/home",
            },
            "CryptKeeper": {"keys": [self.crypt_key]},
            "Authenticator": {"admin_users": set(self.admin_users)},
            "EnclaveAuthenticator": dict(self.authenticator),
            "Spawner": dict(self.spawner),
        }
        if self.in_process:
            out["JupyterHub"]["proxy_class"] = IN_PROCESS_PROXY_CLASS
            out["EnclaveHub"] = {"idle_culler": self.culler.settings()}
        else:
            out["ConfigurableHTTPProxy"] = {
                "api_url": self.proxy_api_url,
                "command": list(self.proxy_command),
            }
        # ``extra`` adds classes and traits; it never replaces one set above, so a
        # backend's additions cannot undo a secure default.
        for cls, traits in self.extra.items():
            into = out.setdefault(cls, {})
            # a subclass's trait would override its base's: KubeSpawner.args would
            # replace Spawner.args (by the convention that the names end alike)
            bases = [b for b in ("Spawner", "Authenticator") if cls.endswith(b) and cls != b]
            for name, value in traits.items():
                if name in into or any(name in out.get(b, {}) for b in bases):
                    raise SpecError(
                        f"{cls}.{name} is set by the generator; an addition cannot replace it",
                        field=f"{cls}.{name}",
                    )
                into[name] = value
        return out

    def render(self) -> str:
        """The text of a ``jupyterhub_config.py`` applying :meth:`traitlets`.

        Values are written as Python literals; a :class:`SecretFile` becomes a call
        that reads the file when the hub loads the configuration and refuses a file
        that its group or others can read."""
        lines = [
            "# Generated by controller.workspace.make_hub_config; do not edit by hand.",
            f"# Enclave {self.enclave!r}, tier {self.tier!r}.",
            "import os",
            "import stat",
            "",
            "",
            "def _secret(path):",
            "    st = os.stat(path)",
            "    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):",
            "        raise SystemExit(f'{path} is readable by others than its owner')",
            "    with open(path) as f:",
            "        return f.read().strip()",
            "",
            "",
        ]
        body = ["c = get_config()  # noqa: F821"]
        for cls, traits in self.traitlets().items():
            for name, value in traits.items():
                body.append(f"c.{cls}.{name} = {_literal(value)}")
        if any("_resolved_url(" in line for line in body):
            lines += _RESOLVED_URL_HELPER
        if self.in_process:
            lines += [
                "from controller.workspace._hubapp import require_enclave_hub",
                "",
                "require_enclave_hub()  # nobody would cull idle sessions in plain jupyterhub",
                "",
            ]
        return "\n".join(lines + body) + "\n"


def _literal(value: Any) -> str:
    if isinstance(value, SecretFile):
        return f"_secret({str(value.path)!r})"
    if isinstance(value, ResolvedURL):
        return f"_resolved_url({value.prefix!r}, {value.url!r})"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, set | frozenset):
        return "set(" + _literal(sorted(value)) + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool | int | float | str) or value is None:
        return repr(value)
    raise TypeError(f"cannot render {type(value).__name__} into a configuration")


def make_hub_config(*, spec: EnclaveSpec, tier: Tier, site: HubSite) -> HubConfig:
    """The JupyterHub configuration of ``spec``'s hub at ``site``, under ``tier``.

    ``tier`` MUST be the catalog's (operator overlays applied) entry for
    ``spec.tier``; a mismatch is refused rather than configuring the wrong limits.
    """
    if tier.id != spec.tier:
        raise SpecError(
            f"the tier given ({tier.id}) is not the enclave's tier ({spec.tier})", field="spec.tier"
        )
    state = site.state_dir
    secret = site.secret_dir or state
    portal = site.portal_url
    backchannel = site.portal_backchannel_url or portal
    callback = f"{site.public_url}/hub/oauth_callback"
    authenticator: dict[str, Any] = {
        # the portal is the only identity provider trusted (DESIGN.md "Identity")
        "issuer": portal,
        "jwks_url": f"{backchannel}/oidc/jwks",
        "authorize_url": f"{portal}/oidc/authorize",
        "token_url": f"{backchannel}/oidc/token",
        "userdata_url": f"{backchannel}/oidc/userinfo",
        "client_id": f"hub-{spec.name}",
        "client_secret": SecretFile(secret / "client_secret"),
        "oauth_callback_url": callback,
        "scope": ["openid", "profile", "enclaves"],
        "username_claim": "preferred_username",
        "enable_pkce": True,
        "enable_auth_state": True,
        "allow_all": False,
        "allow_existing_users": False,
        "manage_groups": False,
        "enclave": spec.name,
        "members": sorted(m.user for m in spec.members),
        "tier": tier.id,
        "audit_url": site.audit_url,
        "audit_token_file": str(secret / "audit_token"),
        "audit_spool": str(state / "audit-spool.db"),
    }
    if site.tier_overlay is not None:
        # the hub decides entry with the tier as the site tightened it
        authenticator["tier_overlay"] = str(site.tier_overlay)
    spawner: dict[str, Any] = {
        "default_url": "/lab",
        # ~/.jupyter inside the workspace cannot switch the hardened extension off
        "disable_user_config": True,
        # the hardened extension; a server that cannot load it does not start. Its
        # intake token and spool (EnclaveWorkspace.audit_token_file, audit_spool) are
        # per workspace: the backend that runs the server adds them.
        "args": [
            f"--ServerApp.jpserver_extensions={SERVER_EXTENSION}=True",
            *(f"--ServerApp.jpserver_extensions={e}=False" for e in UNUSED_SERVER_EXTENSIONS),
            "--ServerApp.reraise_server_extension_failures=True",
            f"--ServerApp.terminals_enabled={tier.terminals.enabled}",
            f"--EnclaveWorkspace.enclave={spec.name}",
            f"--EnclaveWorkspace.tier={tier.id}",
            f"--EnclaveWorkspace.audit_url={site.audit_url}",
        ],
    }
    if site.lab_settings_dir is not None:
        spawner["args"].append(f"--LabApp.app_settings_dir={site.lab_settings_dir}")
    if site.tier_overlay is not None:
        spawner["args"].append(f"--EnclaveWorkspace.tier_overlay={site.tier_overlay}")
    spawner["args"] += site.workspace_args
    extra: dict[str, dict[str, Any]] = {}
    if site.sandbox is not None:
        box = site.sandbox
        extra["SandboxSpawner"] = {
            "cmd": [site.python, "-m", SINGLEUSER_MODULE],
            "enclave": spec.name,
            "state_dir": str(box.state_dir),
            "datasets": [{"source": str(src), "target": dst} for dst, src in box.datasets],
            "audit_intake_url": site.audit_url,
            "audit_token_file": str(box.workspace_token_file),
            "readonly_paths": [str(p) for p in box.readonly_paths],
        }
    return HubConfig(
        enclave=spec.name,
        tier=tier.id,
        members=tuple(m.user for m in spec.members),
        bind_url=site.public_url,
        hub_bind_url=f"http://127.0.0.1:{site.hub_api_port}",
        proxy_api_url="" if site.in_process else f"http://127.0.0.1:{site.proxy_api_port}",
        proxy_command=site.proxy_command,
        db_url=f"sqlite:///{state / 'jupyterhub.sqlite'}",
        cookie_secret_file=secret / "cookie_secret",
        cookie_max_age_days=tier.session.max_session_s / 86_400,
        crypt_key=SecretFile(secret / "crypt_key"),
        admin_access=False,
        allow_named_servers=False,
        admin_users=frozenset(),
        authenticator_class=AUTHENTICATOR_CLASS,
        authenticator=authenticator,
        spawner_class=site.spawner_class,
        spawner=spawner,
        culler=IdleCuller(
            timeout_s=tier.session.idle_timeout_s,
            max_age_s=tier.session.max_session_s,
            every_s=site.cull_every_s,
            python=site.python,
            api_url=f"http://127.0.0.1:{site.hub_api_port}/hub/api",
            in_process=site.in_process,
        ),
        extra=extra,
    )
