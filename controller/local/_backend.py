"""The local backend's reconciler: Enclave files in, one supervised JupyterHub per enclave out.

Level-triggered: every pass (:meth:`LocalBackend.reconcile`) compares what the files
say with what runs, and acts on the difference, so a change made while the backend
was down (a file edited or removed, an approval's ``notAfter`` passed) is acted on
at the next start. One pass, for each enclave:

1. A refused file (schema, rules, unreadable, a duplicate name) is reported once per
   version of the file, naming file, field and reason, and recorded in the audit log.
   An enclave whose file became invalid or was removed is stopped and removed at the
   portal (fail closed: it is served only from a valid file).
2. ``notAfter`` passed (or ``notBefore`` not reached): the hub is stopped and the
   enclave removed at the portal, which revokes its members' tokens for it.
3. A new or changed file: the enclave is registered at the portal (members, tier,
   networks, the hub's OIDC client), its intake tokens issued once, its
   ``jupyterhub_config.py`` written from the shared generator, and its hub (re)started.
4. Unchanged: a hub that died is restarted, with backoff.

Secrets (the portal admin token, the hub's client secret, intake tokens) live in files
of mode 0600 and never reach argv, URLs or a log line.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from audit import Event
from audit.client import AuditClient, ClientError
from controller.kube import Enclave
from controller.portal_admin import PortalAdmin, PortalAdminError
from controller.workspace import (
    EnclaveSpec,
    HubSite,
    LocalSandbox,
    Member,
    SpecError,
    make_hub_config,
)
from controller.workspace._audit import read_secret_file
from controller.workspace._hubconfig import SANDBOX_SPAWNER_CLASS
from policies import Catalog, load_catalog

from . import _proctree
from ._hostfiles import (
    enclave_script,
    free_port,
    load_overlay,
    prepare_sandboxes,
    server_readonly_paths,
    write_atomic,
    write_secret,
)
from ._registry import Refused, Served, scan
from ._supervisor import Child
from .errors import PortalError, SetupError

__all__ = ["LocalBackend", "LocalSettings", "run_local"]

ACTOR = "controller-local"


@dataclass(frozen=True, kw_only=True)
class LocalSettings:
    """Where the local backend reads, writes and connects.

    ``state_dir`` holds, per enclave, ``enclaves/NAME/`` (the hub's configuration,
    database, secrets, logs and ``status.json``; mode 0700), the backend's own intake
    token and spool (0600), and ``sandboxes/`` (each enclave's home and each server's
    sockets and spool, see ``SandboxSpawner``). The state directory itself is mode
    0711 so that the sandbox's unprivileged host user can reach ``sandboxes/``; every
    ancestor must be searchable by that user too. ``audit_tokens_file`` and
    ``audit_store`` are the audit service's token file and store, used (through
    ``enclave audit token issue``) to issue each enclave's tokens, which the running
    service picks up by itself. ``tier_overlay`` is the operator's overlay that
    tightens tiers (``--overlay``): the backend copies it once, at start, to
    ``catalog/tier-overlay.yaml`` (0644, in a 0755 directory), and both its hubs and
    every workspace load the catalog from that copy, so the two cannot disagree.
    """

    enclaves_dir: Path
    state_dir: Path
    portal_url: str
    portal_admin_token_file: Path
    audit_url: str
    audit_tokens_file: Path
    audit_store: str
    #: configurable-http-proxy's command beside each hub, with the idle culler as a
    #: process of its own too; empty (the default): each hub proxies and culls in its
    #: own process (``HubSite.in_process``), 84 MB less per idle enclave.
    proxy_command: tuple[str, ...] = ()
    public_host: str = "localhost"
    datasets_dir: Path | None = None
    spawner_class: str = SANDBOX_SPAWNER_CLASS
    python: str = sys.executable
    interval_s: float = 1.0
    tier_overlay: Path | None = None


@dataclass(frozen=True, kw_only=True)
class HubPorts:
    public: int
    hub_api: int
    proxy_api: int


@dataclass(kw_only=True)
class _Running:
    served: Served
    child: Child
    url: str
    pid: int = 0


@dataclass(kw_only=True)
class LocalBackend:
    """See the module docstring; ``say`` prints one progress or error line."""

    settings: LocalSettings
    say: Callable[[str], None]
    catalog: Catalog = field(default_factory=load_catalog)
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    running: dict[str, _Running] = field(default_factory=dict)
    suspended: set[str] = field(default_factory=set)
    reported: dict[Path, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    #: This process is a child subreaper (``run_local`` makes it one): whatever a hub
    #: orphans becomes its child, and every child that is not a hub is stopped.
    reaps_orphans: bool = False
    _audit: AuditClient | None = None

    # -- wiring -----------------------------------------------------------------------------
    def open(self) -> None:
        """Check the settings, then open the backend's own audit client (source=controller)."""
        s = self.settings
        if not s.enclaves_dir.is_dir():
            raise SetupError(f"the Enclave directory {s.enclaves_dir} does not exist")
        if s.datasets_dir is not None and not s.datasets_dir.is_dir():
            raise SetupError(f"the datasets directory {s.datasets_dir} does not exist")
        for part in s.proxy_command:
            if part.startswith("/") and not Path(part).exists():
                raise SetupError(
                    f"{part} is missing: run 'make setup' (node, npm install "
                    "configurable-http-proxy)"
                )
        try:
            read_secret_file(s.portal_admin_token_file, what="the portal admin token file")
        except SpecError as e:
            raise SetupError(str(e)) from None
        if s.tier_overlay is not None:
            self.catalog = load_overlay(s.tier_overlay, copy=self._overlay_copy)
        (s.state_dir / "enclaves").mkdir(parents=True, exist_ok=True)
        (s.state_dir / "enclaves").chmod(0o700)
        # 0711: the sandbox's host user reaches sandboxes/ and nothing else by name
        # (every other entry is 0700 or 0600, the spool made private before first use)
        os.chmod(s.state_dir, 0o711 if self._sandboxed else 0o700)
        if self._sandboxed:
            prepare_sandboxes(s.state_dir / "sandboxes")
        token_file = s.state_dir / "controller-audit-token"
        if not token_file.exists():
            write_secret(token_file, self._issue_token(source="controller", enclave=None))
        spool = s.state_dir / "controller-audit-spool.db"
        os.close(os.open(spool, os.O_WRONLY | os.O_CREAT, 0o600))
        spool.chmod(0o600)
        self._audit = AuditClient.http(
            url=s.audit_url,
            token=read_secret_file(token_file, what="the controller's audit token file"),
            spool_path=spool,
            source="controller",
        )

    @property
    def _overlay_copy(self) -> Path | None:
        """The copy of the tier overlay every workspace reads; None without an overlay."""
        if self.settings.tier_overlay is None:
            return None
        return self.settings.state_dir / "catalog" / "tier-overlay.yaml"

    @property
    def _sandboxed(self) -> bool:
        return self.settings.spawner_class == SANDBOX_SPAWNER_CLASS

    def close(self) -> None:
        """Stop every hub (SIGTERM, then SIGKILL after a grace period) and anything they
        left behind, then flush the audit spool."""
        for name in sorted(self.running):
            self._stop(name, reason="the backend is stopping", deregister=False, phase="Paused")
        self._stop_orphans()
        if self._audit is not None:
            self._audit.close(flush_timeout=10.0)
            self._audit = None

    def _issue_token(self, *, source: str, enclave: str | None) -> str:
        s = self.settings
        argv = [
            enclave_script(s.python),
            *("audit", "token", "issue", "--tokens", str(s.audit_tokens_file)),
            *("--store", s.audit_store, "--source", source),
            *("--label", f"local backend {source} {enclave or ''}".strip()),
        ]
        if enclave is not None:
            argv += ["--enclave", enclave]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise SetupError(f"issuing a {source} intake token failed: {r.stderr.strip()[-300:]}")
        return r.stdout.strip().splitlines()[-1].strip()

    def _record(self, *, action: str, outcome: str, enclave: str | None, **details: Any) -> None:
        assert self._audit is not None
        try:
            self._audit.record(
                Event.new(
                    source="controller",
                    actor=ACTOR,
                    action=action,
                    outcome=outcome,
                    enclave=enclave,
                    details=details,
                )
            )
        except ClientError as e:
            self.say(f"error: the audit event {action} could not be made durable: {e}")

    # -- the portal's admin API --------------------------------------------------------------
    def _portal(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        s = self.settings
        token = read_secret_file(s.portal_admin_token_file, what="the portal admin token file")
        admin = PortalAdmin(url=s.portal_url, token=token)
        try:
            return admin.request(method, path, body=body, missing_ok=method == "DELETE")
        except PortalAdminError as e:
            raise PortalError(str(e), temporary=e.temporary) from None

    # -- one enclave ----------------------------------------------------------------------------
    def _hub_dir(self, name: str) -> Path:
        return self.settings.state_dir / "enclaves" / name

    def _ports(self, name: str) -> HubPorts:
        """The enclave's ports, chosen once and kept: its URLs (and the redirect URI
        registered at the portal) survive a restart."""
        path = self._hub_dir(name) / "ports.json"
        if path.exists():
            return HubPorts(**json.loads(path.read_text()))
        ports = HubPorts(public=free_port(), hub_api=free_port(), proxy_api=free_port())
        write_atomic(path, json.dumps(ports.__dict__))
        return ports

    def _status(self, name: str, **status: Any) -> None:
        d = self._hub_dir(name)
        if d.is_dir():
            write_atomic(d / "status.json", json.dumps({"enclave": name, **status}) + "\n")

    def _provision(self, served: Served) -> None:
        e = served.enclave
        s = self.settings
        d = self._hub_dir(e.name)
        d.mkdir(mode=0o700, exist_ok=True)
        ports = self._ports(e.name)
        public = f"http://{s.public_host}:{ports.public}"
        callback = f"{public}/hub/oauth_callback"
        # 1. the portal: tier, members, networks, the hub's client (a secret only once)
        secret_file = d / "client_secret"
        reg = self._portal(
            "PUT",
            f"/api/admin/enclaves/{e.name}",
            {
                "tier": e.tier,
                "display_name": e.display_name,
                "members": [{"user": m.user, "role": m.role} for m in e.members],
                "networks": list(e.access_networks),
                "hub_url": public,
                "client": {
                    "client_id": f"hub-{e.name}",
                    "redirect_uris": [callback],
                    "rotate_secret": not secret_file.exists(),
                },
            },
        )
        if reg.get("client_secret"):
            write_secret(secret_file, reg["client_secret"])
        # 2. intake tokens bound to the enclave: the hub's and the workspaces'
        for file, source in (("audit_token", "hub"), ("workspace_token", "workspace")):
            if not (d / file).exists():
                write_secret(d / file, self._issue_token(source=source, enclave=e.name))
        if not (d / "crypt_key").exists():
            write_secret(d / "crypt_key", secrets.token_hex(32))
        # 3. the hub's configuration, from the shared generator
        config = make_hub_config(
            spec=EnclaveSpec(
                name=e.name,
                tier=e.tier,
                members=tuple(Member(user=m.user, role=m.role) for m in e.members),
            ),
            tier=self.catalog.get(e.tier),
            site=HubSite(
                portal_url=s.portal_url,
                public_url=public,
                hub_api_port=ports.hub_api,
                proxy_api_port=ports.proxy_api if s.proxy_command else 0,
                in_process=not s.proxy_command,
                state_dir=d,
                audit_url=s.audit_url,
                proxy_command=s.proxy_command,
                python=s.python,
                spawner_class=s.spawner_class,
                sandbox=self._sandbox(e, d) if self._sandboxed else None,
                tier_overlay=self._overlay_copy,
            ),
        )
        text = config.render()
        if not self._sandboxed:
            text += self._workspace_lines(d)
        write_atomic(d / "jupyterhub_config.py", text)
        # 4. (re)start the hub
        if e.name in self.running:
            self.running[e.name].child.stop()
        child = Child(
            name=f"{e.name}: hub",
            # jupyterhub without the IRI grammar it never uses (controller.workspace._hub)
            argv=[s.python, "-m", "controller.workspace._hub", "-f", "jupyterhub_config.py"],
            cwd=d,
            log=d / "hub.log",
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            say=self.say,
        )
        child.tend()
        run = _Running(served=served, child=child, url=public)
        self.running[e.name] = run
        self.suspended.discard(e.name)
        self._note_pid(e.name, run)
        self._record(
            action="enclave.provisioned",
            outcome="success",
            enclave=e.name,
            tier=e.tier,
            objects=1,
        )
        self.say(f"{e.name}: hub starting at {public} ({e.tier}, from {served.path.name})")

    def _sandbox(self, e: Enclave, d: Path) -> LocalSandbox:
        """The sandbox of the enclave's servers: its datasets (each must exist here), its
        workspace intake token, and the host paths a server runs from."""
        datasets = []
        for ds in e.datasets:
            source = self._dataset_source(ds.persistent_volume)
            if not source or not Path(source).is_dir():
                where = source or "(no --datasets directory given)"
                raise SetupError(
                    f"dataset {ds.name}'s persistentVolume {ds.persistent_volume} is not a "
                    f"directory here: {where}"
                )
            datasets.append((ds.mount_path, Path(source)))
        return LocalSandbox(
            state_dir=self.settings.state_dir / "sandboxes",
            datasets=tuple(datasets),
            workspace_token_file=d / "workspace_token",
            readonly_paths=(
                *server_readonly_paths(self.settings.python),
                *((self._overlay_copy.parent,) if self._overlay_copy else ()),
            ),
        )

    def _workspace_lines(self, d: Path) -> str:
        """For a spawner other than the sandbox's (tests use one): each single-user
        server's workspace intake token (the enclave's) and a durable spool of its own
        (one per member: two servers never share one), as host paths. The sandbox
        spawner hands both over inside each sandbox itself."""
        token = f"--EnclaveWorkspace.audit_token_file={d / 'workspace_token'}"
        spools = d / "workspace-spools"
        spools.mkdir(mode=0o700, exist_ok=True)
        lines = [
            "",
            "",
            "# Added by the local backend: per-workspace audit settings.",
            "def _enclave_workspace(spawner):",
            f"    spool = {str(spools)!r} + '/' + spawner.user.name + '.db'",
            f"    spawner.args = [*spawner.args, {token!r},",
            "                    '--EnclaveWorkspace.audit_spool=' + spool]",
            "",
            "",
            "c.Spawner.pre_spawn_hook = _enclave_workspace",
        ]
        return "\n".join(lines) + "\n"

    def _dataset_source(self, volume: str) -> str:
        root = self.settings.datasets_dir
        return str(root / volume) if root is not None else ""

    def _stop(self, name: str, *, reason: str, deregister: bool, phase: str = "Stopped") -> None:
        run = self.running.pop(name, None)
        if run is not None:
            run.child.stop()
            self.say(f"{name}: hub stopped ({reason})")
        if deregister:
            self._portal("DELETE", f"/api/admin/enclaves/{name}")
            self._record(
                action="enclave.deprovisioned", outcome="success", enclave=name, reason=reason
            )
        self._status(name, phase=phase, reason=reason)

    def _report_refused(self, refused: Refused) -> None:
        if self.reported.get(refused.path) == refused.digest:
            return
        self.reported[refused.path] = refused.digest
        self.say(f"refused: {refused.error}")
        self._record(
            action="enclave.refused",
            outcome="failure",
            enclave=None,
            file=refused.path.name[:256],
            field=refused.field[:128],
            reason=refused.reason[:256],
        )

    # -- one pass ----------------------------------------------------------------------------
    def reconcile(self) -> None:
        """Bring what runs in line with the files; see the module docstring."""
        result = scan(self.settings.enclaves_dir)
        for refused in result.refused:
            self._report_refused(refused)
        for path in [p for p in self.reported if p not in {r.path for r in result.refused}]:
            del self.reported[path]
        now = self.now()
        for name in sorted((set(self.running) | self._left_serving()) - set(result.served)):
            reason = "its Enclave file was removed or is invalid"
            self._guard(name, partial(self._stop, name, reason=reason, deregister=True))
        for name, served in sorted(result.served.items()):
            approval = served.enclave.approval
            if not approval.not_before <= now < approval.not_after:
                if name not in self.suspended:
                    why = (
                        f"notAfter {approval.not_after.isoformat()} has passed"
                        if now >= approval.not_after
                        else f"notBefore {approval.not_before.isoformat()} is not reached"
                    )
                    self._guard(name, partial(self._suspend, name, why))
                continue
            run = self.running.get(name)
            if self.failed.get(name) == served.digest:
                continue  # refused for good: wait for the file to change
            if run is None or run.served.digest != served.digest:
                self._guard(name, partial(self._provision, served), digest=served.digest)
            else:
                run.child.tend()
                self._note_pid(name, run)
        self._stop_orphans()

    def _stop_orphans(self) -> None:
        """As a subreaper: collect exited orphans, stop live ones (a dead hub's proxy or
        culler started after its supervisor last looked at its tree)."""
        if not self.reaps_orphans:
            return
        hubs = {r.child.proc.pid for r in self.running.values() if r.child.proc is not None}
        orphans = {p: t for p, t in _proctree.children(os.getpid()).items() if p not in hubs}
        live = {p: t for p, t in orphans.items() if _proctree.alive(p, t)}
        if live:
            self.say(f"stopping {len(live)} processes a hub left behind")
            _proctree.terminate(live, grace_s=5.0)
        _proctree.reap(orphans)

    def _left_serving(self) -> set[str]:
        """Enclaves a previous run left registered and serving (``status.json`` says so):
        a file removed while the backend was down is still deregistered."""
        names = set()
        for d in (self.settings.state_dir / "enclaves").iterdir():
            try:
                phase = json.loads((d / "status.json").read_text()).get("phase")
            except (OSError, ValueError):
                continue
            if phase in ("Ready", "Restarting", "Paused"):
                names.add(d.name)
        return names

    def _note_pid(self, name: str, run: _Running) -> None:
        """Keep ``status.json`` naming the hub's current process (it changes on restart)."""
        pid = run.child.proc.pid if run.child.proc is not None else 0
        if pid != run.pid:
            run.pid = pid
            self._status(
                name,
                phase="Ready" if pid else "Restarting",
                hub_url=run.url,
                hub_pid=pid,
                file=str(run.served.path),
            )

    def _suspend(self, name: str, why: str) -> None:
        self._hub_dir(name).mkdir(mode=0o700, exist_ok=True)
        self._stop(name, reason=f"suspended: {why}", deregister=True, phase="Suspended")
        self.suspended.add(name)
        self.say(f"{name}: suspended ({why}); its portal registration and tokens are revoked")

    def _guard(self, name: str, step: Callable[[], None], *, digest: str = "") -> None:
        """Run one enclave's step; a failure is one line. A temporary one is retried on the
        next pass; a permanent one waits until the file changes (``digest``)."""
        try:
            step()
        except PortalError as e:
            if e.temporary:
                self.say(f"{name}: error: {e}; retrying")
                return
            self._give_up(name, str(e), digest)
        except (SetupError, SpecError) as e:
            self._give_up(name, str(e), digest)

    def _give_up(self, name: str, message: str, digest: str) -> None:
        self.say(f"{name}: error: {message}; not served until its file changes")
        if digest:
            self.failed[name] = digest
        self._record(
            action="enclave.provisioned",
            outcome="failure",
            enclave=name,
        )


def run_local(
    *, settings: LocalSettings, say: Callable[[str], None], stop: Callable[[], bool]
) -> None:
    """Open the backend, reconcile every ``interval_s`` until ``stop()`` is true, then close."""
    # one line per request would drown the progress lines
    logging.getLogger("httpx").setLevel(logging.WARNING)
    _proctree.become_subreaper()
    backend = LocalBackend(settings=settings, say=say, reaps_orphans=True)
    backend.open()
    say(
        f"watching {settings.enclaves_dir} "
        f"(portal {settings.portal_url}, audit {settings.audit_url})"
    )
    try:
        while not stop():
            backend.reconcile()
            deadline = time.monotonic() + settings.interval_s
            while not stop() and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        say("stopping every hub ...")
        backend.close()
        say("stopped")
