"""One real enclave hub with a running sandboxed server, shared by the escape tests.

Beside it: a second enclave's hub (whose port the first must not reach), another
enclave's home on the same state directory, a writable-on-the-host dataset, and host
services on 127.0.0.1 and on every interface that count what reaches them.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.harness.audit_service import ServiceProcess, make_audit_env
from tests.harness.local_hub import LocalHub, Workspace, shared_state_dir
from tests.integration.workspace.conftest import audit_service, portal

__all__ = ["audit_service", "portal"]  # the local backend tests use the workspace tests' ones

OTHER_SECRET = "enclave beta: notes\n"


@dataclass
class HostService:
    """Host listeners that count every contact (the attack's target); ports when on IP."""

    tcp_port: int = 0
    udp_port: int = 0
    contacts: list[str] = field(default_factory=list)

    @classmethod
    def on_ip(cls, address: str) -> HostService:
        """A TCP listener and a UDP responder on ``address``, on free ports."""
        tcp = socket.create_server((address, 0))
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((address, 0))
        service = cls(tcp_port=tcp.getsockname()[1], udp_port=udp.getsockname()[1])
        service.serve_stream(tcp)
        threading.Thread(target=service._answer, args=(udp,), daemon=True).start()
        return service

    def serve_stream(self, listener: socket.socket) -> None:
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            conn, peer = listener.accept()
            self.contacts.append(f"{listener.family.name} {peer!r}")
            conn.close()

    def _answer(self, udp: socket.socket) -> None:
        while True:
            data, peer = udp.recvfrom(4096)
            self.contacts.append(f"udp {peer}")
            udp.sendto(data, peer)  # a DNS-shaped echo: any reply would be an answer


def host_address() -> str:
    """This machine's address on its outward interface (where 0.0.0.0 services answer)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        return str(probe.getsockname()[0])
    finally:
        probe.close()


@dataclass(frozen=True)
class Site:
    state: Path
    hub: LocalHub
    other_hub: LocalHub
    audit: ServiceProcess
    workspace: Workspace
    dataset: Path
    other_home: Path
    loopback_service: HostService
    wildcard_service: HostService
    unix_service: HostService
    abstract_name: str
    unix_path: Path
    host_ip: str
    spawn_seconds: list[float]


@pytest.fixture(scope="package")
def site() -> Iterator[Site]:
    with shared_state_dir() as state:
        dataset = state / "datasets" / "microbiome-16s"
        dataset.mkdir(parents=True)
        (dataset / "genus_abundance.csv").write_text("sample,genus,count\nS1,Bacteroides,120\n")
        # Writable on the host by anyone: only the read-only bind can stop a write.
        dataset.chmod(0o777)
        (dataset / "genus_abundance.csv").chmod(0o666)
        other_home = state / "homes" / "beta"
        other_home.mkdir(parents=True)
        (other_home / "notes.txt").write_text(OTHER_SECRET)
        loopback, wildcard = HostService.on_ip("127.0.0.1"), HostService.on_ip("0.0.0.0")
        # Host Unix sockets a kernel might try: one abstract, one in a world-open directory.
        unix = HostService()
        abstract_name = f"enclave-test-{state.name}"
        abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        abstract.bind("\0" + abstract_name)
        unix_path = state / "host.sock"
        pathname = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        pathname.bind(str(unix_path))
        unix_path.chmod(0o777)
        for listener in (abstract, pathname):
            listener.listen()
            unix.serve_stream(listener)
        datasets = [{"source": str(dataset), "target": "/data/microbiome-16s"}]
        audit = ServiceProcess(make_audit_env(state / "audit")).start()
        hub = LocalHub.start(
            enclave="alpha", state_dir=state, datasets=datasets, audit_intake_url=audit.url
        )
        other = LocalHub.start(enclave="beta", state_dir=state, datasets=[])
        try:
            seconds = hub.spawn("alice")
            print(f"\nspawn request -> usable sandboxed server: {seconds:.2f} s")
            yield Site(
                state=state,
                hub=hub,
                other_hub=other,
                audit=audit,
                workspace=Workspace(hub=hub, user="alice"),
                dataset=dataset,
                other_home=other_home,
                loopback_service=loopback,
                wildcard_service=wildcard,
                unix_service=unix,
                abstract_name=abstract_name,
                unix_path=unix_path,
                host_ip=host_address(),
                spawn_seconds=[seconds],
            )
        finally:
            hub.stop()
            other.stop()
            audit.stop()
