"""``enclave demo`` stops every process it started, even when told twice.

Each process the demo starts runs in a session of its own, so a terminal's Ctrl-C
reaches only the demo; the demo must stop the rest itself. A second Ctrl-C (or a
supervisor's SIGTERM) during that stop used to interrupt it: the audit service and
the portal were left running, holding the demo's ports and its audit store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Started by the demo's own _stop_on_signals/_stop, like run_demo does. Each child
# answers SIGTERM by writing a marker, then exits only once the test releases it.
_DRIVER = textwrap.dedent(
    """
    import subprocess, sys, time
    from pathlib import Path
    from controller import _demo

    work = Path(sys.argv[1])
    child = (
        "import signal, sys, time\\n"
        "from pathlib import Path\\n"
        "work = Path(sys.argv[1])\\n"
        "def term(*_):\\n"
        "    (work / ('terminated-' + sys.argv[2])).touch()\\n"
        "    while not (work / 'release').exists():\\n"
        "        time.sleep(0.05)\\n"
        "    sys.exit(0)\\n"
        "signal.signal(signal.SIGTERM, term)\\n"
        "(work / ('started-' + sys.argv[2])).touch()\\n"
        "while True:\\n"
        "    time.sleep(1)\\n"
    )
    _demo._stop_on_signals()
    procs = [
        subprocess.Popen([sys.executable, "-c", child, str(work), name], start_new_session=True)
        for name in ("audit", "portal")
    ]
    (work / "pids").write_text(" ".join(str(p.pid) for p in procs))
    try:
        while True:
            time.sleep(0.1)
    except KeyboardInterrupt:
        (work / "interrupted").touch()
        while len(sys.argv) > 2 and not (work / "go").exists():  # hold the window open
            time.sleep(0.05)
        print("stopping", flush=True)
    finally:
        _demo._stop(procs)
    """
)


def _wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie has exited; its parent (the driver, gone too) no longer reaps it here
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@contextmanager
def _driver(work: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """The driver above, with its two children started; whatever is left of them is
    killed afterwards, even when the test fails."""
    repo = Path(__file__).resolve().parents[3]
    driver = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, str(work), *args],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: (work / "started-audit").exists(), "the first child")
        _wait_for(lambda: (work / "started-portal").exists(), "the second child")
        _wait_for(lambda: (work / "pids").exists(), "the children's pids")
        yield driver
    finally:
        if driver.poll() is None:
            driver.kill()
        pids = (work / "pids").read_text().split() if (work / "pids").exists() else []
        for pid in map(int, pids):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _children_gone(work: Path) -> None:
    pids = [int(p) for p in (work / "pids").read_text().split()]
    _wait_for(lambda: not any(_alive(p) for p in pids), "every child to exit")


def test_a_second_ctrl_c_while_stopping_leaves_no_demo_process_running(tmp_path: Path) -> None:
    with _driver(tmp_path) as driver:
        driver.send_signal(signal.SIGINT)  # Ctrl-C: the demo starts stopping
        # the last started is stopped first and is now waiting to be released
        _wait_for(lambda: (tmp_path / "terminated-portal").exists(), "SIGTERM to the portal")
        driver.send_signal(signal.SIGTERM)  # told again while it stops
        driver.send_signal(signal.SIGINT)
        (tmp_path / "release").touch()
        _out, err = driver.communicate(timeout=120)
        assert driver.returncode == 0, err
        assert "still stopping" in err
        _children_gone(tmp_path)
        assert (tmp_path / "terminated-audit").exists(), "the audit service was never stopped"


def test_a_second_signal_right_after_the_first_does_not_abort_the_stop(tmp_path: Path) -> None:
    """timeout(1) and some supervisors deliver a group's SIGINT twice; the second one
    arrived before the demo had begun stopping and escaped as click's 'Aborted!'."""
    with _driver(tmp_path, "pause") as driver:
        driver.send_signal(signal.SIGINT)
        _wait_for(lambda: (tmp_path / "interrupted").exists(), "the first signal's handling")
        driver.send_signal(signal.SIGINT)  # before the stop has begun
        (tmp_path / "release").touch()  # the children may exit once told to
        (tmp_path / "go").touch()
        out, err = driver.communicate(timeout=120)
        assert driver.returncode == 0, err
        assert out.strip() == "stopping"
        assert "KeyboardInterrupt" not in err
        assert "still stopping" in err
        _children_gone(tmp_path)
