"""The sandbox's argv, compared as whole lists so every hardening flag is visible here."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from controller.local import (
    Bind,
    Forward,
    Sandbox,
    SandboxConfigError,
    Staged,
    Symlink,
    bwrap_argv,
    host_tcp_to_unix_argv,
    system_binds,
    unix_to_host_tcp_argv,
)

SYSTEM = (
    Bind(source=Path("/usr"), target=PurePosixPath("/usr")),
    Bind(source=Path("/etc"), target=PurePosixPath("/etc")),
    Symlink(target="usr/bin", path=PurePosixPath("/bin")),
)
VENV = Bind(source=Path("/opt/venv"), target=PurePosixPath("/opt/venv"))
HOME = Bind(
    source=Path("/srv/state/homes/alpha"),
    target=PurePosixPath("/home/researcher"),
    writable=True,
)
DATASET = Bind(source=Path("/srv/data/16s"), target=PurePosixPath("/data/16s"))
SCRIPT = (
    "set -eu\n"
    "/usr/bin/socat TCP-LISTEN:8081,bind=127.0.0.1,fork,reuseaddr"
    " UNIX-CONNECT:/tmp/socks/hub.sock &\n"
    "/usr/bin/socat TCP-LISTEN:8090,bind=127.0.0.1,fork,reuseaddr"
    " UNIX-CONNECT:/tmp/socks/audit.sock &\n"
    'exec "$@"'
)


def make(**overrides: object) -> Sandbox:
    fields: dict[str, object] = {
        "run_as": "nobody",
        "hostname": "enclave-alpha",
        "system": SYSTEM,
        "readonly": (VENV,),
        "sockets_dir": Path("/srv/state/sockets/alpha/alice"),
        "home": HOME,
        "datasets": (DATASET,),
        "forwards": (
            Forward(port=8081, socket="hub.sock"),
            Forward(port=8090, socket="audit.sock"),
        ),
        "command": ("/opt/venv/bin/jupyterhub-singleuser", "--debug"),
    }
    fields.update(overrides)
    return Sandbox(**fields)  # type: ignore[arg-type]


BWRAP = [
    "/usr/bin/bwrap",
    "--unshare-all",
    "--unshare-user",
    "--disable-userns",
    "--die-with-parent",
    "--new-session",
    "--cap-drop",
    "ALL",
    "--uid",
    "65534",
    "--gid",
    "65534",
    "--hostname",
    "enclave-alpha",
    "--ro-bind",
    "/usr",
    "/usr",
    "--ro-bind",
    "/etc",
    "/etc",
    "--symlink",
    "usr/bin",
    "/bin",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--tmpfs",
    "/tmp",
    "--ro-bind",
    "/opt/venv",
    "/opt/venv",
    "--bind",
    "/srv/state/sockets/alpha/alice",
    "/tmp/socks",
    "--bind",
    "/srv/state/homes/alpha",
    "/home/researcher",
    "--ro-bind",
    "/srv/data/16s",
    "/data/16s",
    "--remount-ro",
    "/",
    "--chdir",
    "/home/researcher",
    "--setenv",
    "HOME",
    "/home/researcher",
    "--",
    "/bin/sh",
    "-c",
    SCRIPT,
    "enclave-sandbox",
    "/opt/venv/bin/jupyterhub-singleuser",
    "--debug",
]


def test_sandbox_argv_as_unprivileged_host_user() -> None:
    assert bwrap_argv(sandbox=make()) == ["/usr/sbin/runuser", "-u", "nobody", "--", *BWRAP]


def test_sandbox_argv_when_already_unprivileged() -> None:
    assert bwrap_argv(sandbox=make(run_as=None)) == BWRAP


def test_sandbox_argv_stages_paths_the_host_user_cannot_reach() -> None:
    staged = Staged(source=Path("/root/.pyenv/versions/3.11.7"), stage=Path("/srv/stage/0"))
    argv = bwrap_argv(sandbox=make(staged=(staged,)))
    assert argv[:7] == [
        "/usr/bin/unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
    ]
    assert argv[7:9] == [
        'set -eu\nmount --bind /root/.pyenv/versions/3.11.7 /srv/stage/0\nexec "$@"',
        "enclave-stage",
    ]
    assert argv[9:] == ["/usr/sbin/runuser", "-u", "nobody", "--", *BWRAP]


def test_sandbox_argv_quotes_a_hostile_path_in_the_stage_script() -> None:
    staged = Staged(source=Path("/opt/x; rm -rf ~"), stage=Path("/srv/stage/0"))
    script = bwrap_argv(sandbox=make(staged=(staged,)))[7]
    assert "mount --bind '/opt/x; rm -rf ~' /srv/stage/0" in script


def test_host_bridges_listen_only_on_loopback() -> None:
    assert host_tcp_to_unix_argv(port=40000, socket=Path("/s/jupyter.sock")) == [
        "/usr/bin/socat",
        "TCP-LISTEN:40000,bind=127.0.0.1,fork,reuseaddr",
        "UNIX-CONNECT:/s/jupyter.sock",
    ]
    assert unix_to_host_tcp_argv(socket=Path("/s/hub.sock"), port=8081) == [
        "/usr/bin/socat",
        "UNIX-LISTEN:/s/hub.sock,fork,unlink-early,mode=666",
        "TCP:127.0.0.1:8081",
    ]


def test_system_binds_keeps_usr_merge_links_as_links(tmp_path: Path) -> None:
    for d in ("usr/bin", "etc", "lib64"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "bin").symlink_to("usr/bin")
    assert system_binds(root=tmp_path) == (
        Bind(source=tmp_path / "usr", target=PurePosixPath("/usr")),
        Bind(source=tmp_path / "etc", target=PurePosixPath("/etc")),
        Symlink(target="usr/bin", path=PurePosixPath("/bin")),
        Bind(source=tmp_path / "lib64", target=PurePosixPath("/lib64")),
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"run_as": "root"}, "run_as must name an unprivileged host user"),
        ({"uid": 0}, "must not run as uid or gid 0"),
        ({"hostname": "Bad_Name"}, "hostname must be a DNS label"),
        ({"command": ()}, "needs a command"),
        ({"home": Bind(source=Path("/h"), target=PurePosixPath("/home/r"))}, "writable bind"),
        (
            {"datasets": (Bind(source=Path("/d"), target=PurePosixPath("/d"), writable=True),)},
            "must be bound read-only",
        ),
        (
            {"datasets": (Bind(source=Path("/d"), target=PurePosixPath("/tmp/socks")),)},
            "overlaps /tmp",
        ),
        (
            {"datasets": (Bind(source=Path("/d"), target=PurePosixPath("/home/researcher")),)},
            "overlaps /home/researcher",
        ),
        (
            {"readonly": (Bind(source=Path("/v"), target=PurePosixPath("/tmp/socks/x")),)},
            "overlaps /tmp/socks",
        ),
        ({"readonly": (Bind(source=Path("/v"), target=PurePosixPath("/tmp")),)}, "overlaps /tmp"),
        (
            {"forwards": (Forward(port=1, socket="a.sock"), Forward(port=1, socket="b.sock"))},
            "its own port",
        ),
        (
            {
                "run_as": None,
                "staged": (Staged(source=Path("/root/p"), stage=Path("/s/0")),),
            },
            "staging paths needs root",
        ),
    ],
)
def test_sandbox_refuses_weakening_inputs(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(SandboxConfigError, match=message):
        make(**overrides)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Bind(source=Path("relative"), target=PurePosixPath("/x")), "absolute path"),
        (lambda: Bind(source=Path("/x"), target=PurePosixPath("/a/../etc")), "without '..'"),
        (lambda: Bind(source=Path("/x"), target=PurePosixPath("/")), "root '/'"),
        (lambda: Forward(port=0, socket="hub.sock"), "between 1 and 65535"),
        (lambda: Forward(port=8081, socket="../hub.sock"), "plain name ending in .sock"),
        (lambda: host_tcp_to_unix_argv(port=70000, socket=Path("/s")), "between 1 and 65535"),
    ],
)
def test_sandbox_parts_refuse_bad_input(build: object, message: str) -> None:
    with pytest.raises(SandboxConfigError, match=message):
        build()  # type: ignore[operator]


def test_a_virtualenv_under_the_hosts_tmp_is_bound_over_the_private_tmp() -> None:
    # CI clones the repository under /tmp: its .venv must be bound after the private
    # tmpfs (which would hide it), not refused and not shadowed.
    venv = Bind(source=Path("/tmp/ci1/.venv"), target=PurePosixPath("/tmp/ci1/.venv"))
    argv = bwrap_argv(sandbox=make(readonly=(venv,)))
    tmpfs = argv.index("--tmpfs")
    bound = argv.index("/tmp/ci1/.venv")
    assert argv[tmpfs + 1] == "/tmp"
    assert bound > tmpfs
    assert argv[bound - 1] == "--ro-bind"
