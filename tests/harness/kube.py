"""A real Kubernetes control plane for the tests: etcd, kube-apiserver, kube-controller-manager.

The binaries are built from the Go module proxy by ``make setup``
(``hack/kube/build.sh``) and cached under
``${ENCLAVE_CACHE:-~/.cache/enclave}/kube/<version>/bin``. This module starts them on
loopback with TLS everywhere (a throw-away CA made at start), RBAC, the admission
plugins a production cluster runs (PodSecurity, ValidatingAdmissionPolicy, ...) and
service-account token signing; writes an admin kubeconfig; waits until the API server
is ready and the controllers run; and stops everything again, also when a start fails
half-way. There is no kubelet and no scheduler: pods are admitted and stored, never run.

Callers: ``tests/harness/kube_fixtures.py`` (pytest) and, by hand,
``python -m tests.harness.kube`` (prints the kubeconfig path; Ctrl-C stops it).
It never downloads anything and never falls back to a fake API server: when the
binaries are missing it raises :class:`KubeHarnessError` saying to run ``make setup``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import datetime
import http.client
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "ETCD_VERSION",
    "K8S_VERSION",
    "ControlPlane",
    "KubeBinaries",
    "KubeHarnessError",
    "ServiceAccountKubeconfig",
    "find_binaries",
    "running_control_plane",
    "start_control_plane",
]

_REPO = Path(__file__).resolve().parents[2]
_VERSIONS_FILE = _REPO / "hack" / "kube" / "versions.env"
# The Service network the API server allocates ClusterIPs from; never routed anywhere.
# A /16: benchmarks/controller.py applies 200 Enclaves of 3 Services each (a /24 fills).
_SERVICE_CIDR = "10.0.0.0/16"
_SERVICE_IP = "10.0.0.1"
_ISSUER = "https://kubernetes.default.svc.cluster.local"
_ADMISSION_PLUGINS = (
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "NodeRestriction",
    "PodSecurity",
    "Priority",
    "DefaultTolerationSeconds",
    "StorageObjectInUseProtection",
    "RuntimeClass",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
)


class KubeHarnessError(RuntimeError):
    """The control plane could not be found, started or used; the message says why."""


def _read_versions(path: Path = _VERSIONS_FILE) -> dict[str, str]:
    versions: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


_VERSIONS = _read_versions()
K8S_VERSION: str = _VERSIONS["K8S_VERSION"]
ETCD_VERSION: str = _VERSIONS["ETCD_VERSION"]


# --- binaries -------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class KubeBinaries:
    """Paths of the three cached binaries of one pinned version."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path


def _cache_bin_dir(version: str) -> Path:
    root = os.environ.get("ENCLAVE_CACHE") or str(Path.home() / ".cache" / "enclave")
    return Path(root) / "kube" / version / "bin"


def find_binaries(*, version: str = K8S_VERSION) -> KubeBinaries:
    """Return the cached binaries for ``version``, or raise saying to run ``make setup``."""
    bin_dir = _cache_bin_dir(version)
    found = KubeBinaries(
        etcd=bin_dir / "etcd",
        kube_apiserver=bin_dir / "kube-apiserver",
        kube_controller_manager=bin_dir / "kube-controller-manager",
    )
    missing = [p.name for p in vars(found).values() if not os.access(p, os.X_OK)]
    if missing:
        raise KubeHarnessError(
            f"the Kubernetes v{version} test binaries ({', '.join(missing)}) are not in "
            f"{bin_dir}; run `make setup` to build them (the first build takes tens of "
            "minutes; see docs/testing.md)"
        )
    return found


# --- certificates -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Pem:
    cert: Path
    key: Path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class _CertificateAuthority:
    """A throw-away CA that lives as long as one control plane."""

    def __init__(self, directory: Path, *, stem: str = "ca") -> None:
        self._dir = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"enclave-test-{stem}")])
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem = self._cert.public_bytes(serialization.Encoding.PEM)
        self.cert_path = directory / f"{stem}.crt"
        self.cert_path.write_bytes(self.cert_pem)

    def issue(
        self,
        stem: str,
        *,
        common_name: str,
        organizations: Sequence[str] = (),
        server: bool = False,
        client: bool = False,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
    ) -> _Pem:
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ip_addresses]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        pem = _Pem(cert=self._dir / f"{stem}.crt", key=self._dir / f"{stem}.key")
        pem.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_private(pem.key, _key_pem(key))
        return pem


# --- processes and readiness ------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    """Ports the kernel has just handed out on 127.0.0.1, all distinct."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to send SIGTERM to the child when the test process dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass(kw_only=True)
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def log_tail(self, lines: int = 25) -> str:
        self.log_file.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def check_running(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise KubeHarnessError(
                f"{self.name} exited with status {code} during start; the end of its log "
                f"({self.log_path}):\n{self.log_tail()}"
            )

    def stop(self, *, grace: float = 10.0) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=grace)
        self.log_file.close()


def _spawn(name: str, argv: Sequence[str], log_dir: Path) -> _Process:
    log_path = log_dir / f"{name}.log"
    log_file = log_path.open("wb")
    popen = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(log_dir)},
    )
    return _Process(name=name, popen=popen, log_path=log_path, log_file=log_file)


def _https_get(port: int, path: str, context: ssl.SSLContext) -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=3)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _wait_until(
    what: str,
    ready: Callable[[], bool],
    *,
    deadline: float,
    watch: Sequence[_Process],
    interval: float = 0.1,
) -> None:
    """Poll ``ready`` until it is true; fail when a watched process exits or time runs out."""
    last_error = ""
    while True:
        for process in watch:
            process.check_running()
        try:
            if ready():
                return
        except (OSError, ssl.SSLError, http.client.HTTPException) as e:
            last_error = f" (last error: {e})"
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name} ({p.log_path}):\n{p.log_tail()}" for p in watch)
            raise KubeHarnessError(f"timed out waiting for {what}{last_error}\n{logs}")
        time.sleep(interval)  # the poll interval; the deadline above bounds the wait


# --- kubeconfigs -------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _kubeconfig(*, server: str, ca_pem: bytes, user: str, credentials: dict[str, str]) -> str:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "enclave-test",
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [
            {"name": "enclave-test", "context": {"cluster": "enclave-test", "user": user}}
        ],
        "current-context": "enclave-test",
    }
    return yaml.safe_dump(config, sort_keys=False)


def _cert_credentials(pem: _Pem) -> dict[str, str]:
    return {
        "client-certificate-data": _b64(pem.cert.read_bytes()),
        "client-key-data": _b64(pem.key.read_bytes()),
    }


@dataclass(frozen=True, kw_only=True)
class ServiceAccountKubeconfig:
    """A kubeconfig that authenticates as one ServiceAccount with a bound token."""

    namespace: str
    name: str
    username: str
    path: Path


# --- the control plane ----------------------------------------------------------------------


@dataclass(kw_only=True)
class ControlPlane:
    """A running etcd + kube-apiserver + kube-controller-manager; stop it with :meth:`stop`."""

    workdir: Path
    server: str
    kubeconfig: Path
    ca_cert: Path
    start_seconds: float
    version: str
    #: seconds from the start until each readiness step passed, in order
    phases: dict[str, float] = field(default_factory=dict)
    _processes: list[_Process] = field(default_factory=list, repr=False)
    _keep_workdir: bool = field(default=False, repr=False)

    def new_api_client(self, *, kubeconfig: Path | None = None) -> Any:
        """A ``kubernetes.client.ApiClient`` for the admin kubeconfig (or another one)."""
        from kubernetes import config as kube_config

        path = str(kubeconfig or self.kubeconfig)
        return kube_config.new_client_from_config(config_file=path)  # type: ignore[no-untyped-call]

    def service_account_kubeconfig(
        self, *, namespace: str, name: str, expiration_seconds: int = 3600
    ) -> ServiceAccountKubeconfig:
        """Write a kubeconfig acting as ServiceAccount ``namespace/name``.

        The token comes from the TokenRequest API, signed by the API server's
        service-account key, so requests made with it get exactly the RBAC that
        ServiceAccount has. The ServiceAccount must exist.
        """
        from kubernetes import client

        with contextlib.closing(self.new_api_client()) as api_client:
            request = client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(
                    audiences=[_ISSUER], expiration_seconds=expiration_seconds
                )
            )
            try:
                response = client.CoreV1Api(api_client).create_namespaced_service_account_token(
                    name, namespace, request
                )
            except client.ApiException as e:
                raise KubeHarnessError(
                    f"could not get a token for ServiceAccount {namespace}/{name}: "
                    f"{e.status} {e.reason}"
                ) from e
        token = response.status.token if response.status else None
        if not token:
            raise KubeHarnessError(f"the API server returned no token for {namespace}/{name}")
        path = self.workdir / "kubeconfigs" / f"sa-{namespace}-{name}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.unlink(missing_ok=True)
        username = f"system:serviceaccount:{namespace}:{name}"
        text = _kubeconfig(
            server=self.server,
            ca_pem=self.ca_cert.read_bytes(),
            user=username,
            credentials={"token": token},
        )
        _write_private(path, text.encode("utf-8"))
        return ServiceAccountKubeconfig(
            namespace=namespace, name=name, username=username, path=path
        )

    def processes_running(self) -> dict[str, bool]:
        return {p.name: p.popen.poll() is None for p in self._processes}

    def stop(self) -> None:
        """Stop the controller manager, the API server and etcd; remove the work directory."""
        while self._processes:
            self._processes.pop().stop()
        if not self._keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_control_plane(
    *,
    binaries: KubeBinaries | None = None,
    timeout: float = 90.0,
    keep_workdir: bool = False,
) -> ControlPlane:
    """Start a fresh control plane in a new temporary directory and wait until it works.

    Ready means: etcd reports healthy, the API server's ``/readyz`` passes, the
    controller manager's ``/healthz`` passes, and its ServiceAccount controller has
    made the ``default`` ServiceAccount in namespace ``default``. On any failure
    every process started so far is stopped before the error propagates.
    """
    bins = binaries or find_binaries()
    started = time.monotonic()
    deadline = started + timeout
    for attempt in (1, 2):
        workdir = Path(tempfile.mkdtemp(prefix="enclave-kube-"))
        processes: list[_Process] = []
        try:
            plane = _start(bins, workdir, processes, deadline)
        except BaseException as e:
            for process in reversed(processes):
                process.stop()
            if not keep_workdir:
                shutil.rmtree(workdir, ignore_errors=True)
            # Another process may take a free port between our probe and the bind.
            if (
                attempt == 1
                and isinstance(e, KubeHarnessError)
                and "address already in use" in str(e)
            ):
                continue
            raise
        plane.start_seconds = time.monotonic() - started
        plane._keep_workdir = keep_workdir
        return plane
    raise AssertionError("unreachable: the second attempt returns or raises")


def _start(
    bins: KubeBinaries, workdir: Path, processes: list[_Process], deadline: float
) -> ControlPlane:
    t0 = time.monotonic()
    phases: dict[str, float] = {}
    pki = workdir / "pki"
    logs = workdir / "logs"
    for d in (pki, logs):
        d.mkdir(mode=0o700)
    ca = _CertificateAuthority(pki)
    loopback_names = ["localhost"]
    loopback_ips = ["127.0.0.1"]
    etcd_server = ca.issue(
        "etcd-server",
        common_name="etcd",
        server=True,
        dns_names=loopback_names,
        ip_addresses=loopback_ips,
    )
    etcd_client = ca.issue("apiserver-etcd-client", common_name="kube-apiserver", client=True)
    apiserver = ca.issue(
        "apiserver",
        common_name="kube-apiserver",
        server=True,
        dns_names=[
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ],
        ip_addresses=["127.0.0.1", _SERVICE_IP],
    )
    kcm_serving = ca.issue(
        "controller-manager-serving",
        common_name="kube-controller-manager",
        server=True,
        dns_names=loopback_names,
        ip_addresses=loopback_ips,
    )
    kcm_client = ca.issue(
        "controller-manager", common_name="system:kube-controller-manager", client=True
    )
    admin = ca.issue(
        "admin", common_name="enclave-test-admin", organizations=["system:masters"], client=True
    )
    # The front-proxy (request-header) CA: aggregated API servers and webhooks trust
    # requests the API server proxies to them by this client certificate.
    front_proxy_ca = _CertificateAuthority(pki, stem="front-proxy-ca")
    front_proxy_client = front_proxy_ca.issue(
        "front-proxy-client", common_name="front-proxy-client", client=True
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_private = pki / "sa.key"
    sa_public = pki / "sa.pub"
    _write_private(sa_private, _key_pem(sa_key))
    sa_public.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    phases["certificates"] = time.monotonic() - t0
    etcd_port, etcd_peer_port, api_port, kcm_port = _free_ports(4)

    # 1. etcd, client TLS with client-certificate authentication, data in the workdir.
    etcd_url = f"https://127.0.0.1:{etcd_port}"
    peer_url = f"http://127.0.0.1:{etcd_peer_port}"
    etcd = _spawn(
        "etcd",
        [
            str(bins.etcd),
            "--name=default",
            f"--data-dir={workdir / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            f"--cert-file={etcd_server.cert}",
            f"--key-file={etcd_server.key}",
            f"--trusted-ca-file={ca.cert_path}",
            "--client-cert-auth",
            # Test data lives in a temporary directory: durability buys nothing here.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
        logs,
    )
    processes.append(etcd)
    etcd_tls = ssl.create_default_context(cafile=str(ca.cert_path))
    etcd_tls.load_cert_chain(str(etcd_client.cert), str(etcd_client.key))

    def etcd_healthy() -> bool:
        status, body = _https_get(etcd_port, "/health", etcd_tls)
        return status == 200 and json.loads(body).get("health") == "true"

    _wait_until("etcd to report healthy", etcd_healthy, deadline=deadline, watch=[etcd])
    phases["etcd"] = time.monotonic() - t0

    # 2. kube-apiserver.
    server = f"https://127.0.0.1:{api_port}"
    apiserver_proc = _spawn(
        "kube-apiserver",
        [
            str(bins.kube_apiserver),
            f"--etcd-servers={etcd_url}",
            f"--etcd-cafile={ca.cert_path}",
            f"--etcd-certfile={etcd_client.cert}",
            f"--etcd-keyfile={etcd_client.key}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--tls-cert-file={apiserver.cert}",
            f"--tls-private-key-file={apiserver.key}",
            f"--client-ca-file={ca.cert_path}",
            f"--cert-dir={workdir / 'apiserver-certs'}",
            f"--requestheader-client-ca-file={front_proxy_ca.cert_path}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={front_proxy_client.cert}",
            f"--proxy-client-key-file={front_proxy_client.key}",
            "--authorization-mode=Node,RBAC",
            f"--enable-admission-plugins={','.join(_ADMISSION_PLUGINS)}",
            # Privileged pods pass the API server's own check, so that refusing them
            # is left to Pod Security admission, as on a production cluster.
            "--allow-privileged=true",
            f"--service-account-issuer={_ISSUER}",
            f"--service-account-key-file={sa_public}",
            f"--service-account-signing-key-file={sa_private}",
            f"--service-cluster-ip-range={_SERVICE_CIDR}",
            # The endpoint reconciler refuses a loopback address; nothing runs in pods
            # here, so the "kubernetes" Service needs no endpoints.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            "--logging-format=text",
        ],
        logs,
    )
    processes.append(apiserver_proc)
    admin_tls = ssl.create_default_context(cafile=str(ca.cert_path))
    admin_tls.load_cert_chain(str(admin.cert), str(admin.key))

    def apiserver_ready() -> bool:
        status, _ = _https_get(api_port, "/readyz", admin_tls)
        return status == 200

    _wait_until(
        "kube-apiserver /readyz",
        apiserver_ready,
        deadline=deadline,
        watch=[etcd, apiserver_proc],
    )
    phases["kube-apiserver"] = time.monotonic() - t0

    kubeconfig = workdir / "kubeconfig"
    _write_private(
        kubeconfig,
        _kubeconfig(
            server=server,
            ca_pem=ca.cert_pem,
            user="enclave-test-admin",
            credentials=_cert_credentials(admin),
        ).encode("utf-8"),
    )
    kcm_kubeconfig = workdir / "controller-manager.kubeconfig"
    _write_private(
        kcm_kubeconfig,
        _kubeconfig(
            server=server,
            ca_pem=ca.cert_pem,
            user="system:kube-controller-manager",
            credentials=_cert_credentials(kcm_client),
        ).encode("utf-8"),
    )

    # 3. kube-controller-manager: namespace lifecycle, garbage collector,
    # ServiceAccounts and their tokens, ... (its default controller set).
    kcm = _spawn(
        "kube-controller-manager",
        [
            str(bins.kube_controller_manager),
            f"--kubeconfig={kcm_kubeconfig}",
            f"--authentication-kubeconfig={kcm_kubeconfig}",
            f"--authorization-kubeconfig={kcm_kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={kcm_port}",
            f"--tls-cert-file={kcm_serving.cert}",
            f"--tls-private-key-file={kcm_serving.key}",
            f"--client-ca-file={ca.cert_path}",
            f"--root-ca-file={ca.cert_path}",
            f"--service-account-private-key-file={sa_private}",
            "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={_SERVICE_CIDR}",
            "--leader-elect=false",
            # Its default client rate limit (20 requests/s) makes setting up every
            # controller's own ServiceAccount credentials take seconds.
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--profiling=false",
            "--logging-format=text",
        ],
        logs,
    )
    processes.append(kcm)
    kcm_tls = ssl.create_default_context(cafile=str(ca.cert_path))

    def kcm_healthy() -> bool:
        status, _ = _https_get(kcm_port, "/healthz", kcm_tls)
        return status == 200

    everything = [etcd, apiserver_proc, kcm]
    _wait_until(
        "kube-controller-manager /healthz", kcm_healthy, deadline=deadline, watch=everything
    )
    phases["kube-controller-manager"] = time.monotonic() - t0

    def default_service_account_exists() -> bool:
        path = "/api/v1/namespaces/default/serviceaccounts/default"
        status, _ = _https_get(api_port, path, admin_tls)
        return status == 200

    _wait_until(
        "the ServiceAccount controller to create default/default",
        default_service_account_exists,
        deadline=deadline,
        watch=everything,
    )
    phases["controllers"] = time.monotonic() - t0
    return ControlPlane(
        workdir=workdir,
        server=server,
        kubeconfig=kubeconfig,
        ca_cert=ca.cert_path,
        start_seconds=0.0,
        version=K8S_VERSION,
        phases=phases,
        _processes=processes,
    )


@contextlib.contextmanager
def running_control_plane(**kwargs: Any) -> Iterator[ControlPlane]:
    """``with running_control_plane() as plane:`` starts one and always stops it."""
    plane = start_control_plane(**kwargs)
    try:
        yield plane
    finally:
        plane.stop()


# --- python -m tests.harness.kube -------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness.kube",
        description=(
            "Start the test control plane (etcd, kube-apiserver, kube-controller-manager) "
            "and print its kubeconfig path; Ctrl-C stops it and removes its files."
        ),
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="stop again as soon as it is ready (prints the start time; for a quick check)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (logs, etcd data) on exit"
    )
    args = parser.parse_args(argv)
    try:
        plane = start_control_plane(keep_workdir=args.keep)
    except KubeHarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        print(f"Kubernetes v{plane.version} control plane ready in {plane.start_seconds:.1f}s")
        steps = ", ".join(f"{name} {t:.1f}s" for name, t in plane.phases.items())
        print(f"ready after: {steps}")
        print(f"API server: {plane.server}")
        print(f"logs:       {plane.workdir / 'logs'}")
        print(f"export KUBECONFIG={plane.kubeconfig}", flush=True)
        if not args.once:
            print("Ctrl-C stops it.", flush=True)
            stop_signals = {signal.SIGINT, signal.SIGTERM}
            signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
            while all(plane.processes_running().values()):
                if signal.sigtimedwait(stop_signals, 1.0) is not None:
                    break
            down = [n for n, up in plane.processes_running().items() if not up]
            if down:
                print(f"error: {', '.join(down)} exited; see the logs above", file=sys.stderr)
                return 1
    finally:
        plane.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
