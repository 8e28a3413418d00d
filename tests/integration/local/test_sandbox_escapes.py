"""Attacks run from inside a real workspace kernel, each named after what it tries.

Every test executes Python in a real kernel of a real single-user server that a real
JupyterHub started through ``SandboxSpawner``, over the proxy and the kernel's
websocket, and checks both what the kernel saw and, where there is one, what the
host-side target saw (nothing).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.harness.local_hub import cmdline, descendants, processes_naming
from tests.integration.local.conftest import Site

# Prints one line: the errno name of a failed connection, or CONNECTED.
_CONNECT = """
import errno, socket
family = socket.AF_INET6 if ":" in {host!r} else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(({host!r}, {port}))
    print("CONNECTED")
except OSError as e:
    print(errno.errorcode.get(e.errno, repr(e)))
"""

# Prints the errno name of a failed UDP exchange, TIMEOUT when nothing answered, or ANSWERED.
_UDP = """
import errno, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
try:
    s.sendto(b"\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00", ({host!r}, {port}))
    s.recvfrom(512)
    print("ANSWERED")
except socket.timeout:
    print("TIMEOUT")
except OSError as e:
    print(errno.errorcode.get(e.errno, repr(e)))
"""

# Prints, per (path, mode), the errno name of a failed write, or WROTE.
_WRITES = """
import errno
for path, mode in {attempts!r}:
    try:
        open(path, mode).write('x')
        print('WROTE')
    except OSError as e:
        print(errno.errorcode[e.errno])
"""

_RUN = """
import subprocess
p = subprocess.run({argv!r}, capture_output=True, text=True)
print(p.returncode, (p.stdout + p.stderr).strip().splitlines()[-1:] )
"""


def connect(site: Site, host: str, port: int) -> str:
    return site.workspace.run(_CONNECT.format(host=host, port=port)).strip()


def run(site: Site, *argv: str) -> tuple[int, str]:
    code, _, tail = site.workspace.run(_RUN.format(argv=list(argv))).strip().partition(" ")
    return int(code), tail


def test_kernel_cannot_reach_outside_address(site: Site) -> None:
    # The host has a default route; the sandbox has none, so the kernel is refused at once.
    for host in ("203.0.113.10", "1.1.1.1", "192.0.2.1", "2001:db8::1", "fd00::1"):
        assert connect(site, host, 443) == "ENETUNREACH"


def test_kernel_cannot_reach_host_loopback_service(site: Site) -> None:
    service = site.loopback_service
    assert connect(site, "127.0.0.1", service.tcp_port) == "ECONNREFUSED"
    # The proxy and the hub listen on the host's 127.0.0.1 too.
    assert connect(site, "127.0.0.1", site.hub.proxy_port) == "ECONNREFUSED"
    assert service.contacts == []


def test_kernel_cannot_reach_host_service_bound_to_all_interfaces(site: Site) -> None:
    service = site.wildcard_service
    assert connect(site, site.host_ip, service.tcp_port) == "ENETUNREACH"
    assert connect(site, "127.0.0.1", service.tcp_port) == "ECONNREFUSED"
    assert service.contacts == []


def test_kernel_cannot_reach_host_unix_sockets(site: Site) -> None:
    out = site.workspace.run(
        "import errno, socket\n"
        f"for address in ({chr(0) + site.abstract_name!r}, {str(site.unix_path)!r}):\n"
        "    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        "    try:\n"
        "        s.connect(address)\n"
        "        print('CONNECTED')\n"
        "    except OSError as e:\n"
        "        print(errno.errorcode[e.errno])\n"
        "import os\n"
        "print(sorted(os.listdir('/tmp/socks')))\n"
    )
    # Abstract sockets belong to the network namespace; the host's /tmp is not there.
    assert out.splitlines() == [
        "ECONNREFUSED",
        "ENOENT",
        "['audit.sock', 'hub.sock', 'jupyter.sock']",
    ]
    assert site.unix_service.contacts == []


def test_kernel_cannot_reach_another_enclaves_hub(site: Site) -> None:
    for host in ("127.0.0.1", site.host_ip):
        for port in (site.other_hub.hub_port, site.other_hub.proxy_port):
            assert connect(site, host, port) in {"ECONNREFUSED", "ENETUNREACH"}


def test_kernel_cannot_resolve_dns_names(site: Site) -> None:
    out = site.workspace.run(
        "import socket\n"
        "for name in ('example.com', 'pypi.org', 'github.com'):\n"
        "    try:\n"
        "        print(name, socket.getaddrinfo(name, 443))\n"
        "    except socket.gaierror as e:\n"
        "        print(name, 'UNRESOLVED', e.errno)\n"
    )
    assert [line.split()[1] for line in out.splitlines()] == ["UNRESOLVED"] * 3, out
    # A DNS query sent straight at a resolver the host can reach gets no answer either.
    nameservers = [
        line.split()[1]
        for line in Path("/etc/resolv.conf").read_text().splitlines()
        if line.startswith("nameserver")
    ]
    for host in nameservers:
        assert site.workspace.run(_UDP.format(host=host, port=53)).strip() == "ENETUNREACH"
    udp = site.wildcard_service.udp_port
    assert site.workspace.run(_UDP.format(host=site.host_ip, port=udp)).strip() == "ENETUNREACH"
    loop = site.loopback_service.udp_port
    assert site.workspace.run(_UDP.format(host="127.0.0.1", port=loop)).strip() in {
        "ECONNREFUSED",
        "TIMEOUT",
    }
    assert site.wildcard_service.contacts == site.loopback_service.contacts == []


def test_workspace_reaches_its_own_hub_api(site: Site) -> None:
    # The server got ready only because it reached its hub; the kernel can check it too.
    out = site.workspace.run(
        "import json, os, urllib.request\n"
        "api = os.environ['JUPYTERHUB_API_URL']\n"
        "print(json.load(urllib.request.urlopen(api + '/'))['version'])\n"
        "req = urllib.request.Request(api + '/user', headers={\n"
        "    'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']})\n"
        "print(json.load(urllib.request.urlopen(req))['name'])\n"
    )
    version, name = out.split()
    assert version == site.hub.api("GET", "/").json()["version"]
    assert name == "alice"
    user = site.hub.api("GET", "/users/alice").json()
    assert user["servers"][""]["ready"] is True


def test_workspace_reaches_the_audit_intake(site: Site) -> None:
    out = site.workspace.run(
        "import os, urllib.request\n"
        "url = os.environ['ENCLAVE_AUDIT_INTAKE_URL']\n"
        "print(url, urllib.request.urlopen(url + '/healthz').status)\n"
    )
    assert out.split() == [site.audit.url, "200"]


def test_kernel_cannot_nsenter_host_network_namespace(site: Site) -> None:
    # The hub's pid on the host, and pid 1 of whatever namespace the kernel sees.
    for pid in (str(site.hub.process.pid), "1"):
        code, tail = run(site, "nsenter", "-t", pid, "-n", "true")
        assert code != 0, tail
    out = site.workspace.run(f"import os; print(os.path.exists('/proc/{site.hub.process.pid}'))")
    assert out.strip() == "False"


def test_kernel_cannot_create_user_namespace_to_regain_capabilities(site: Site) -> None:
    code, tail = run(site, "unshare", "--user", "--map-root-user", "--net", "true")
    assert code != 0, tail


def _refused(site: Site, argv: tuple[str, ...], undo: tuple[str, ...]) -> str:
    """Run an attack in the kernel; if it worked (a broken sandbox), undo it there first."""
    code, tail = run(site, *argv)
    if code == 0:
        run(site, *undo)
    assert code != 0, f"{argv} succeeded inside the sandbox"
    return tail


def test_kernel_cannot_add_route(site: Site) -> None:
    # A documentation prefix: harmless to the host even if a broken sandbox let it through.
    route = ("198.51.100.0/24", "dev", "lo")
    tail = _refused(site, ("ip", "route", "add", *route), ("ip", "route", "del", *route))
    assert "Operation not permitted" in tail


def test_kernel_cannot_bring_up_interface(site: Site) -> None:
    tail = _refused(
        site,
        ("ip", "link", "add", "escape0", "type", "dummy"),
        ("ip", "link", "del", "escape0"),
    )
    assert "Operation not permitted" in tail
    # Setting loopback up again changes nothing even where it is allowed; here it is not.
    tail = _refused(site, ("ip", "link", "set", "lo", "up"), ("true",))
    assert "Operation not permitted" in tail


def test_kernel_has_no_capabilities_and_runs_unprivileged_on_the_host(site: Site) -> None:
    out = site.workspace.run(
        "import os\n"
        "caps = dict(l.split(':') for l in open('/proc/self/status') if l.startswith('Cap'))\n"
        "print(os.getuid(), os.getgid(), sorted({int(v, 16) for v in caps.values()}))\n"
    )
    assert out.strip().split(maxsplit=2) == ["65534", "65534", "[0]"]
    # Seen from the host, every kernel of this hub runs as the unprivileged host user.
    kernels = [p for p in descendants(site.hub.process.pid) if b"ipykernel_launcher" in cmdline(p)]
    assert kernels
    assert {Path(f"/proc/{p}").stat().st_uid for p in kernels} == {65534}


def test_kernel_cannot_write_dataset(site: Site) -> None:
    attempts = (
        ("/data/microbiome-16s/genus_abundance.csv", "a"),
        ("/data/microbiome-16s/copy.csv", "w"),
    )
    out = site.workspace.run(
        _WRITES.format(attempts=attempts)
        + "print(open('/data/microbiome-16s/genus_abundance.csv').read().count('Bacteroides'))\n"
    )
    assert out.split() == ["EROFS", "EROFS", "1"]
    assert sorted(os.listdir(site.dataset)) == ["genus_abundance.csv"]


def test_kernel_cannot_see_another_enclaves_home(site: Site) -> None:
    out = site.workspace.run(
        "import os\n"
        f"print(os.path.exists({str(site.other_home)!r}), os.path.exists({str(site.state)!r}))\n"
        "print(sorted(os.listdir('/home')))\n"
    )
    assert out.splitlines() == ["False False", "['researcher']"]
    found = site.workspace.run(
        "import subprocess\n"
        "print(subprocess.run(['grep', '-rls', 'enclave', '/home', '/tmp'],"
        " capture_output=True, text=True).stdout)\n"
    )
    assert "notes.txt" not in found


def test_home_persists_across_server_restart(site: Site) -> None:
    """Last in the module: it restarts the shared server."""
    site.workspace.run("open('/home/researcher/result.txt', 'w').write('kept')")
    home = site.state / "homes" / "alpha"
    assert (home / "result.txt").stat().st_uid == 65534
    assert home.stat().st_mode & 0o777 == 0o700
    site.hub.stop_server("alice")
    assert processes_naming(str(site.state / "sockets")) == []
    site.spawn_seconds.append(site.hub.spawn("alice"))
    site.workspace.forget_kernel()
    assert site.workspace.run("print(open('/home/researcher/result.txt').read())").strip() == "kept"
    print(json.dumps({"spawn_seconds": site.spawn_seconds}))
