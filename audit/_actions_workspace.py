"""Registry entries of the workspaces (issue #15): the hub (source=hub) and the hardened
single-user server (source=workspace), with the screen channel it measures."""

from __future__ import annotations

from ._actions_schema import HUB, WORKSPACE, RawSpec, field

WORKSPACE_SPECS: list[RawSpec] = [
    # --- workspaces (issue #15): the hub (source=hub) and the hardened single-user
    # server (source=workspace). One self-contained block; allowed sources: hub.* from
    # the hub only, workspace.* from the workspace only.
    {
        "name": "hub.login.allowed",
        "sources": HUB,
        "summary": "An enclave's hub let a member in: the portal's ID token was verified and "
        "its factors satisfy the tier.",
        "cannot_capture": "Who is at the keyboard; what the portal verified beyond the token's "
        "claims (see the portal's auth.factor.verified events).",
        "ocsf": 3002,
        "fields": {
            "tier": field("str", max_len=64),
            "acr": field("str", max_len=64),
            "amr": field("str_list", max_len=16),
            "categories": field("str_list", max_len=16),
        },
    },
    {
        "name": "hub.login.refused",
        "sources": HUB,
        "summary": "An enclave's hub refused entry (bad token, not a member, factors short of "
        "the tier, or the portal's own refusal), with every reason.",
        "cannot_capture": "Requests refused before reaching the hub (the proxy, the network); "
        "the token itself (never logged).",
        "ocsf": 3002,
        "fields": {
            "stage": field(
                "str",
                required=True,
                choices=("portal", "token", "membership", "factors", "audit"),
                doc="which check refused",
            ),
            "reasons": field("str_list", max_len=512),
            "tier": field("str", max_len=64),
        },
    },
    {
        "name": "hub.server.started",
        "sources": HUB,
        "summary": "The hub's spawner started a member's single-user server.",
        "cannot_capture": "Whether the server then answered (a server that never answers is "
        "stopped by the hub and recorded as hub.server.stopped).",
        "ocsf": 6003,
        "fields": {"spawner": field("str", max_len=128)},
    },
    {
        "name": "hub.server.stopped",
        "sources": HUB,
        "summary": "The hub stopped a member's single-user server (the member, the idle culler, "
        "the session limit or a shutdown).",
        "cannot_capture": "Which of those asked for the stop; work done on the screen before it.",
        "ocsf": 6003,
        "fields": {"spawner": field("str", max_len=128)},
    },
    {
        "name": "hub.spawn.failed",
        "sources": HUB,
        "summary": "The hub's spawner failed to start a member's single-user server.",
        "cannot_capture": "Failures after the spawner returned (the server not answering).",
        "ocsf": 6003,
        "fields": {
            "spawner": field("str", max_len=128),
            "reason": field("str", required=True, max_len=512),
        },
    },
    {
        "name": "workspace.file.created",
        "sources": WORKSPACE,
        "summary": "A file or directory was created through the workspace's file API.",
        "cannot_capture": "Files created inside a running kernel that bypass the file API.",
        "ocsf": 6003,
        "fields": {
            "path": field("str", required=True, max_len=4096),
            "type": field("str", max_len=32),
        },
    },
    {
        "name": "workspace.file.renamed",
        "sources": WORKSPACE,
        "summary": "A file was renamed or moved through the workspace's file API.",
        "cannot_capture": "Renames made inside a running kernel that bypass the file API.",
        "ocsf": 6003,
        "fields": {
            "path": field("str", required=True, max_len=4096),
            "new_path": field("str", required=True, max_len=4096),
        },
    },
    {
        "name": "workspace.file.copied",
        "sources": WORKSPACE,
        "summary": "A file was copied through the workspace's file API.",
        "cannot_capture": "Copies made inside a running kernel that bypass the file API.",
        "ocsf": 6003,
        "fields": {
            "path": field("str", required=True, max_len=4096),
            "new_path": field("str", max_len=4096),
        },
    },
    {
        "name": "workspace.file.uploaded",
        "sources": WORKSPACE,
        "summary": "A file was uploaded from the browser into the workspace.",
        "cannot_capture": "What the file contains beyond its size and hash (see the airlock "
        "for scanned imports).",
        "ocsf": 6003,
        "fields": {
            "path": field("str", required=True, max_len=4096),
            "bytes": field("int"),
        },
    },
    {
        "name": "workspace.download.refused",
        "sources": WORKSPACE,
        "summary": "The workspace refused to send file bytes to the browser as a file "
        "(/files, nbconvert, a Content-Disposition attachment, or raw dataset content over "
        "the tier's size).",
        "cannot_capture": "What the browser shows on screen (the kernel's output and the "
        "notebook view are not downloads), screen capture on the researcher's device.",
        "ocsf": 6003,
        "fields": {
            "path": field("str", required=True, max_len=4096),
            "route": field(
                "str",
                required=True,
                choices=("files", "nbconvert", "attachment", "contents"),
            ),
            "reason": field("str", max_len=256),
        },
    },
    {
        "name": "workspace.terminal.refused",
        "sources": WORKSPACE,
        "summary": "A request for a Jupyter terminal was refused: the tier turns terminals off.",
        "cannot_capture": "Shell commands run through a kernel (e.g. subprocess in a cell).",
        "ocsf": 6003,
        "fields": {"path": field("str", required=True, max_len=4096)},
    },
    {
        "name": "workspace.code.executed",
        "sources": WORKSPACE,
        "summary": "A code-execution request was sent to a kernel (tiers that record every "
        "operation); the code is capped, its SHA-256 covers all of it.",
        "cannot_capture": "What the code did or printed; code a kernel runs without a request "
        "(threads or processes it started earlier).",
        "ocsf": 6003,
        "fields": {
            "kernel_id": field("str", max_len=128),
            "code": field(
                "str",
                required=True,
                max_len=8192,
                doc="the first 8192 characters",
                multiline=True,
            ),
            "sha256": field("str", required=True, max_len=64),
            "bytes": field("int"),
        },
    },
    # --- the screen channel, measured (issue #15): bytes the single-user server sent to
    # the browser in one server session, counted where they leave it (kernel and terminal
    # websocket messages, contents API response bodies), against the tier's screen_output
    # budget.
    *(
        {
            "name": name,
            "sources": WORKSPACE,
            "summary": summary,
            "cannot_capture": "What the bytes showed, the pixels on the screen, what a camera "
            "or a person beside the researcher sees, and what the researcher remembers; "
            "bytes of other sessions (each server start begins a new count).",
            "ocsf": 6003,
            "fields": {
                "kernel_bytes": field("int", required=True, doc="kernel websocket messages sent"),
                "contents_bytes": field("int", required=True, doc="contents API bodies sent"),
                "terminal_bytes": field("int", doc="terminal websocket messages sent"),
                "total_bytes": field("int", required=True),
                "refused_bytes": field("int", doc="output not sent: past the budget"),
                "refused_messages": field("int"),
                "warn_bytes": field("int"),
                "budget_bytes": field("int"),
                "past_budget": field("str", choices=("refuse_output", "stop_session")),
                "channel": field(
                    "str", choices=("kernel", "contents", "terminal"), doc="what crossed"
                ),
                "final": field("bool", doc="the record written as the server stops"),
            },
        }
        for name, summary in (
            (
                "workspace.screen_output",
                "Bytes a workspace session sent to the browser so far, by channel "
                "(periodically while they change, and once as the server stops).",
            ),
            (
                "workspace.screen_output.warned",
                "A workspace session reached the warning threshold of its tier's "
                "screen-output budget; the researcher was told.",
            ),
            (
                "workspace.screen_output.exceeded",
                "Output that would take a workspace session past its tier's screen-output "
                "budget was not sent; the researcher was told, and the server stops where "
                "the tier says so.",
            ),
        )
    ),
]
