"""Bootstrap officer token and sessions (no open access, idle and absolute limits)."""

from __future__ import annotations

from pathlib import Path

from audit.service._officer import Officers


def _file(tmp_path: Path, token: str) -> Path:
    p = tmp_path / "officer"
    p.write_text(token + "\n")
    p.chmod(0o600)
    return p


def test_no_token_file_means_nobody_gets_in(tmp_path: Path) -> None:
    off = Officers(token_file=None)
    assert off.check_token("anything" * 10) is None
    assert off.login("anything" * 10) is None


def test_a_short_or_missing_token_file_refuses_everyone(tmp_path: Path) -> None:
    assert Officers(token_file=_file(tmp_path, "short")).check_token("short") is None
    assert Officers(token_file=tmp_path / "missing").check_token("x" * 40) is None


def test_login_gives_a_session_with_its_own_csrf_token(tmp_path: Path) -> None:
    token = "t" * 40
    off = Officers(token_file=_file(tmp_path, token))
    assert off.login("t" * 39) is None
    cookie, sess = off.login(token) or (None, None)
    assert cookie is not None
    assert sess is not None
    assert cookie != token
    assert sess.csrf not in (cookie, token)
    assert off.session(cookie) is not None
    assert off.csrf_ok(sess, sess.csrf)
    assert not off.csrf_ok(sess, "")
    assert not off.csrf_ok(sess, None)
    assert not off.csrf_ok(sess, cookie)
    off.logout(cookie)
    assert off.session(cookie) is None


def test_sessions_expire_when_idle_and_absolutely(tmp_path: Path) -> None:
    token = "t" * 40
    idle = Officers(token_file=_file(tmp_path, token), idle_seconds=-1)
    cookie, _ = idle.login(token) or ("", None)
    assert idle.session(cookie) is None
    absolute = Officers(token_file=_file(tmp_path, token), max_seconds=-1)
    cookie, _ = absolute.login(token) or ("", None)
    assert absolute.session(cookie) is None


def test_replacing_the_file_rotates_the_token(tmp_path: Path) -> None:
    p = _file(tmp_path, "a" * 40)
    off = Officers(token_file=p)
    assert off.check_token("a" * 40) is not None
    p.write_text("b" * 40)
    assert off.check_token("a" * 40) is None
    assert off.check_token("b" * 40) is not None


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    p = _file(tmp_path, "c" * 40)
    p.chmod(0o644)
    assert Officers(token_file=p).check_token("c" * 40) is None
    assert "chmod 600" in (Officers.check_file(p) or "")
    p.chmod(0o600)
    assert Officers(token_file=p).check_token("c" * 40) is not None
    assert Officers.check_file(p) is None
