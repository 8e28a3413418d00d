"""The hub-configuration generator, tested as whole objects so the secure defaults show."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from traitlets.config import Config

from controller.workspace import (
    EnclaveSpec,
    HubSite,
    Member,
    SecretFile,
    SpecError,
    make_hub_config,
)
from controller.workspace._hubconfig import LAB_SETTINGS_DIR
from policies import load_catalog

STATE = Path("/srv/enclave/hubs/gut-2026")
CATALOG = load_catalog()


def load_config(text: str) -> dict[str, dict[str, object]]:
    """Run a rendered jupyterhub_config.py as JupyterHub does; return what it set."""
    c = Config()
    exec(compile(text, "jupyterhub_config.py", "exec"), {"get_config": lambda: c})  # noqa: S102
    return {k: dict(v) for k, v in c.items()}


def site(**over: object) -> HubSite:
    base: dict[str, object] = {
        "portal_url": "https://portal.example",
        "public_url": "http://127.0.0.1:8101",
        "hub_api_port": 8102,
        "proxy_api_port": 8103,
        "state_dir": STATE,
        "audit_url": "http://127.0.0.1:8700",
        "proxy_command": ("/opt/enclave/node_modules/.bin/configurable-http-proxy",),
        "python": "/opt/enclave/.venv/bin/python",
    }
    return HubSite(**{**base, **over})  # type: ignore[arg-type]


def spec(tier: str = "nbdc-standard") -> EnclaveSpec:
    return EnclaveSpec(
        name="gut-2026",
        tier=tier,
        members=(Member(user="r.tanaka"), Member(user="k.sato", role="pi")),
    )


def expected(tier: str, *, terminals: bool) -> dict[str, dict[str, object]]:
    return {
        "JupyterHub": {
            "bind_url": "http://127.0.0.1:8101",
            "hub_bind_url": "http://127.0.0.1:8102",
            "db_url": f"sqlite:///{STATE}/jupyterhub.sqlite",
            "cookie_secret_file": f"{STATE}/cookie_secret",
            "cookie_max_age_days": 0.5,
            "admin_access": False,
            "allow_named_servers": False,
            "authenticator_class": "controller.workspace.hub.EnclaveAuthenticator",
            "spawner_class": "controller.workspace.hub.AuditedLocalProcessSpawner",
            "services": [
                {
                    "name": "idle-culler",
                    "command": [
                        "/opt/enclave/.venv/bin/python",
                        "-m",
                        "jupyterhub_idle_culler",
                        "--timeout=900",
                        "--max-age=43200",
                        "--cull-every=60",
                        # on loopback: the hub's own host (or pod) reaches it there
                        "--url=http://127.0.0.1:8102/hub/api",
                    ],
                }
            ],
            "load_roles": [
                {
                    "name": "idle-culler",
                    "scopes": [
                        "list:users",
                        "read:users:activity",
                        "read:servers",
                        "delete:servers",
                    ],
                    "services": ["idle-culler"],
                }
            ],
            "default_url": "/hub/home",
        },
        "ConfigurableHTTPProxy": {
            "api_url": "http://127.0.0.1:8103",
            "command": ["/opt/enclave/node_modules/.bin/configurable-http-proxy"],
        },
        "CryptKeeper": {"keys": [SecretFile(STATE / "crypt_key")]},
        "Authenticator": {"admin_users": set()},
        "EnclaveAuthenticator": {
            "issuer": "https://portal.example",
            "jwks_url": "https://portal.example/oidc/jwks",
            "authorize_url": "https://portal.example/oidc/authorize",
            "token_url": "https://portal.example/oidc/token",
            "userdata_url": "https://portal.example/oidc/userinfo",
            "client_id": "hub-gut-2026",
            "client_secret": SecretFile(STATE / "client_secret"),
            "oauth_callback_url": "http://127.0.0.1:8101/hub/oauth_callback",
            "scope": ["openid", "profile", "enclaves"],
            "username_claim": "preferred_username",
            "enable_pkce": True,
            "enable_auth_state": True,
            "allow_all": False,
            "allow_existing_users": False,
            "manage_groups": False,
            "enclave": "gut-2026",
            "members": ["k.sato", "r.tanaka"],
            "tier": tier,
            "audit_url": "http://127.0.0.1:8700",
            "audit_token_file": f"{STATE}/audit_token",
            "audit_spool": f"{STATE}/audit-spool.db",
        },
        "Spawner": {
            "default_url": "/lab",
            "disable_user_config": True,
            "args": [
                "--ServerApp.jpserver_extensions=controller.workspace.serverext=True",
                # installed beside JupyterLab, unused by a workspace: one path less in
                "--ServerApp.jpserver_extensions=jupyter_lsp=False",
                "--ServerApp.jpserver_extensions=notebook_shim=False",
                "--ServerApp.reraise_server_extension_failures=True",
                f"--ServerApp.terminals_enabled={terminals}",
                "--EnclaveWorkspace.enclave=gut-2026",
                f"--EnclaveWorkspace.tier={tier}",
                "--EnclaveWorkspace.audit_url=http://127.0.0.1:8700",
                f"--LabApp.app_settings_dir={LAB_SETTINGS_DIR}",
            ],
        },
    }


def test_nbdc_standard_hub_has_every_secure_default() -> None:
    cfg = make_hub_config(spec=spec(), tier=CATALOG.get("nbdc-standard"), site=site())
    assert cfg.traitlets() == expected("nbdc-standard", terminals=True)


def test_tommo_strong_hub_turns_terminals_off() -> None:
    cfg = make_hub_config(spec=spec("tommo-strong"), tier=CATALOG.get("tommo-strong"), site=site())
    assert cfg.traitlets() == expected("tommo-strong", terminals=False)


def test_a_sites_tier_overlay_reaches_every_workspace_the_hub_spawns_and_its_entry() -> None:
    """Without it a site's tightened tier (a smaller screen budget) stops at the hub:
    the workspaces would enforce the built-in, looser catalog; and the hub's own
    entry decision (its authenticator) would judge sign-ins by the built-in tier."""
    overlay = Path("/srv/enclave/catalog/tier-overlay.yaml")
    cfg = make_hub_config(
        spec=spec("tommo-strong"), tier=CATALOG.get("tommo-strong"), site=site(tier_overlay=overlay)
    )
    want = expected("tommo-strong", terminals=False)
    want["Spawner"]["args"] = [  # type: ignore[index]
        *want["Spawner"]["args"],  # type: ignore[misc]
        f"--EnclaveWorkspace.tier_overlay={overlay}",
    ]
    want["EnclaveAuthenticator"] = {  # type: ignore[assignment]
        **want["EnclaveAuthenticator"],  # type: ignore[dict-item]
        "tier_overlay": str(overlay),
    }
    assert cfg.traitlets() == want


def test_idle_and_session_limits_follow_the_tier() -> None:
    tier = CATALOG.get("nbdc-high")
    tighter = tier.model_copy(
        update={"session": tier.session.model_copy(update={"idle_timeout_s": 300})}
    )
    cfg = make_hub_config(spec=spec("nbdc-high"), tier=tighter, site=site())
    assert cfg.culler.timeout_s == 300
    assert cfg.culler.max_age_s == tier.session.max_session_s
    assert cfg.cookie_max_age_days == tier.session.max_session_s / 86_400


def test_wrong_tier_for_the_spec_is_refused() -> None:
    with pytest.raises(SpecError, match="not the enclave's tier") as e:
        make_hub_config(spec=spec("tommo-strong"), tier=CATALOG.get("nbdc-standard"), site=site())
    assert e.value.field == "spec.tier"


def test_rendered_config_never_contains_a_secret_and_loads(tmp_path: Path) -> None:
    state = tmp_path / "hub"
    state.mkdir()
    for name, value in (("client_secret", "s3cr3t-client"), ("crypt_key", "ab" * 32)):
        (state / name).write_text(value)
        (state / name).chmod(0o600)
    cfg = make_hub_config(
        spec=spec(), tier=CATALOG.get("nbdc-standard"), site=site(state_dir=state)
    )
    text = cfg.render()
    assert "s3cr3t-client" not in text
    assert "ab" * 32 not in text

    loaded = load_config(text)
    want = cfg.traitlets()
    want["CryptKeeper"]["keys"] = ["ab" * 32]
    want["EnclaveAuthenticator"]["client_secret"] = "s3cr3t-client"
    assert loaded == want


def test_group_readable_secret_stops_the_hub(tmp_path: Path) -> None:
    (tmp_path / "crypt_key").write_text("ab" * 32)
    (tmp_path / "crypt_key").chmod(0o640)
    (tmp_path / "client_secret").write_text("x")
    (tmp_path / "client_secret").chmod(0o600)
    cfg = make_hub_config(
        spec=spec(), tier=CATALOG.get("nbdc-standard"), site=site(state_dir=tmp_path)
    )
    with pytest.raises(SystemExit, match="readable by others"):
        load_config(cfg.render())


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "Gut_2026"}, "metadata.name"),
        ({"tier": "nbdc-lax"}, "spec.tier"),
        ({"members": ()}, "spec.members"),
        ({"members": (Member(user="a"), Member(user="a"))}, "spec.members"),
    ],
)
def test_unusable_spec_is_refused_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    base = dataclasses.asdict(spec())
    base["members"] = spec().members
    with pytest.raises(SpecError) as e:
        EnclaveSpec(**{**base, **kwargs})
    assert e.value.field == field


def test_site_with_a_trailing_slash_url_is_refused() -> None:
    with pytest.raises(SpecError) as e:
        site(portal_url="https://portal.example/")
    assert e.value.field == "portal_url"


def test_an_addition_that_would_switch_admin_access_back_on_is_refused() -> None:
    """A backend's additions (``extra``) add traits; replacing a secure default fails."""
    cfg = make_hub_config(spec=spec(), tier=CATALOG.get("nbdc-standard"), site=site())
    loosened = dataclasses.replace(cfg, extra={"JupyterHub": {"admin_access": True}})
    with pytest.raises(SpecError, match="cannot replace it") as e:
        loosened.traitlets()
    assert e.value.field == "JupyterHub.admin_access"
    subclass = dataclasses.replace(cfg, extra={"KubeSpawner": {"disable_user_config": False}})
    with pytest.raises(SpecError, match="cannot replace it"):
        subclass.traitlets()
    added = dataclasses.replace(cfg, extra={"JupyterHub": {"public_url": "https://h/"}})
    assert added.traitlets()["JupyterHub"]["admin_access"] is False
    assert added.traitlets()["JupyterHub"]["public_url"] == "https://h/"


def test_a_hub_in_a_pod_reads_secrets_and_the_portal_where_the_pod_has_them() -> None:
    run = Path("/run/enclave")
    cfg = make_hub_config(
        spec=spec(),
        tier=CATALOG.get("nbdc-standard"),
        site=site(
            secret_dir=run,
            portal_backchannel_url="http://portal.enclave-system.svc:8000",
            lab_settings_dir=None,
            workspace_args=("--EnclaveWorkspace.audit_token_file=/run/enclave/audit_token",),
        ),
    )
    want = expected("nbdc-standard", terminals=True)
    want["JupyterHub"]["cookie_secret_file"] = f"{run}/cookie_secret"
    want["CryptKeeper"] = {"keys": [SecretFile(run / "crypt_key")]}
    auth = want["EnclaveAuthenticator"]
    auth["client_secret"] = SecretFile(run / "client_secret")
    auth["audit_token_file"] = f"{run}/audit_token"
    for name, path in (("jwks_url", "jwks"), ("token_url", "token"), ("userdata_url", "userinfo")):
        auth[name] = f"http://portal.enclave-system.svc:8000/oidc/{path}"
    # the issuer and the browser's authorize URL stay the portal's public URL
    assert auth["issuer"] == "https://portal.example"
    want["Spawner"]["args"] = [  # type: ignore[index]
        *want["Spawner"]["args"][:-1],  # type: ignore[index]
        "--EnclaveWorkspace.audit_token_file=/run/enclave/audit_token",
    ]
    assert cfg.traitlets() == want


def test_every_role_the_enclave_resource_admits_reaches_the_hub() -> None:
    """An Enclave with an officer among its members must not stop its hub's generation."""
    from controller.kube._schema import _ROLES as CRD_ROLES
    from controller.workspace._spec import _ROLES

    assert _ROLES == CRD_ROLES
    officer = EnclaveSpec(
        name="gut-2026", tier="nbdc-standard", members=(Member(user="o.abe", role="officer"),)
    )
    cfg = make_hub_config(spec=officer, tier=CATALOG.get("nbdc-standard"), site=site())
    assert cfg.traitlets()["EnclaveAuthenticator"]["members"] == ["o.abe"]


def test_an_in_process_site_has_the_hub_proxy_and_cull_in_its_own_process() -> None:
    cfg = make_hub_config(
        spec=spec("tommo-strong"),
        tier=CATALOG.get("tommo-strong"),
        site=site(in_process=True, proxy_command=(), proxy_api_port=0),
    )
    traits = cfg.traitlets()
    assert traits["JupyterHub"]["proxy_class"] == "controller.workspace.proxy.InProcessProxy"
    assert "ConfigurableHTTPProxy" not in traits
    tier = CATALOG.get("tommo-strong").session
    assert traits["EnclaveHub"] == {
        "idle_culler": {
            "url": "http://127.0.0.1:8102/hub/api",
            "timeout": tier.idle_timeout_s,
            "max_age": tier.max_session_s,
            "every": 60,
        }
    }
    # the culler's service has no command (and no token: the hub makes one at start)
    assert traits["JupyterHub"]["services"] == [{"name": "idle-culler"}]
    # everything else as with configurable-http-proxy and the culler's own process
    other = make_hub_config(
        spec=spec("tommo-strong"), tier=CATALOG.get("tommo-strong"), site=site()
    ).traitlets()
    other.pop("ConfigurableHTTPProxy")
    other["JupyterHub"]["services"] = [{"name": "idle-culler"}]
    other["JupyterHub"]["proxy_class"] = traits["JupyterHub"]["proxy_class"]
    other["EnclaveHub"] = traits["EnclaveHub"]
    assert traits == other


def test_an_in_process_configuration_refuses_to_run_in_plain_jupyterhub() -> None:
    from jupyterhub.app import JupyterHub

    text = make_hub_config(
        spec=spec(),
        tier=CATALOG.get("nbdc-standard"),
        site=site(in_process=True, proxy_command=(), proxy_api_port=0),
    ).render()
    assert "require_enclave_hub()" in text
    JupyterHub.instance()  # what the jupyterhub command runs
    try:
        with pytest.raises(SystemExit, match=r"python -m controller\.workspace\._hub"):
            load_config(text)
    finally:
        JupyterHub.clear_instance()


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"in_process": True}, "proxy"),  # and a proxy command
        ({"in_process": True, "proxy_command": (), "proxy_api_port": 8103}, "proxy"),
        ({"proxy_command": ()}, "proxy"),
        ({"proxy_api_port": 0}, "proxy_api_port"),
    ],
)
def test_a_proxy_setting_that_contradicts_where_the_proxy_runs_is_refused(
    over: dict[str, object], field: str
) -> None:
    with pytest.raises(SpecError) as e:
        site(**over)
    assert e.value.field == field
