"""Generate the reference half of ``docs/cli.md`` from the click command tree.

``python -m controller.clidocs --write|--check docs/cli.md``. The page keeps its
hand-written introduction above a marker line; everything below the marker is
generated here from the commands themselves, so a new option or command can never
be missing from the docs (``make lint`` runs ``--check``).
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from .cli import cli

__all__ = ["MARKER", "render_reference"]

#: The line after which ``docs/cli.md`` is generated.
MARKER = "<!-- Generated below by `make docs` from the click commands; do not edit below. -->"


def _walk(
    command: click.Command, ctx: click.Context
) -> Iterator[tuple[click.Command, click.Context]]:
    """Every visible command under ``command``, depth first, in name order."""
    yield command, ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            yield from _walk(sub, click.Context(sub, info_name=name, parent=ctx))


def _cell(text: str) -> str:
    """One table cell: whitespace folded, pipes escaped (GFM splits on them even in code)."""
    return " ".join(text.split()).replace("|", "\\|")


def _section(command: click.Command, ctx: click.Context) -> list[str]:
    path = ctx.command_path
    lines = [f"### `{path}`", ""]
    usage = " ".join([path, *command.collect_usage_pieces(ctx)])
    lines += ["```", usage, "```", ""]
    help_text = inspect.cleandoc(command.help or "").replace("\b\n", "")
    if help_text:
        lines += [click.unstyle(help_text), ""]
    rows = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if isinstance(param, click.Argument):
            name = param.human_readable_name
            rows.append(f"| `{_cell(name)}` | argument{'' if param.required else ' (optional)'} |")
            continue
        if record is None or "--help" in param.opts:
            continue
        names, text = record
        rows.append(f"| `{_cell(names)}` | {_cell(text)} |")
    if rows:
        lines += ["| option | meaning |", "|---|---|", *rows, ""]
    return lines


def render_reference() -> str:
    """The generated half of the page: every command, its usage, help and options."""
    root = click.Context(cli, info_name="enclave")
    out = [MARKER, "", "## Reference", ""]
    for command, ctx in _walk(cli, root):
        out += _section(command, ctx)
    return "\n".join(out).rstrip() + "\n"


def _render_page(current: str) -> str:
    head, sep, _ = current.partition(MARKER)
    if not sep:
        head = current.rstrip() + "\n\n"
    return head + render_reference()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controller.clidocs", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the generated half")
    mode.add_argument("--check", action="store_true", help="exit 1 if it is out of date")
    parser.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    try:
        current = args.file.read_text(encoding="utf-8")
    except OSError as e:
        print(f"clidocs: cannot read {args.file}: {e.strerror}", file=sys.stderr)
        return 2
    wanted = _render_page(current)
    if args.write:
        if wanted != current:
            args.file.write_text(wanted, encoding="utf-8")
        return 0
    if wanted != current:
        diff = difflib.unified_diff(
            current.splitlines(), wanted.splitlines(), str(args.file), "generated", lineterm=""
        )
        print("\n".join(list(diff)[:60]), file=sys.stderr)
        print(f"clidocs: {args.file} is out of date; run `make docs`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
