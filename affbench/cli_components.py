"""`affbench list` and `affbench plugins`: what is registered, and by whom."""

from __future__ import annotations

import argparse

from affbench.core.registry import KIND_HOOKS, get_registry
from affbench.output import format_table


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("list", help="list registered components with the plugin providing each")
    p.add_argument("kind", nargs="?", choices=list(KIND_HOOKS), help="only this kind")
    p.add_argument("--filter", default="*", metavar="GLOB", help="only names matching this fnmatch pattern")
    p.set_defaults(func=_list)
    p = subparsers.add_parser("plugins", help="list installed plugins, their versions and hooks")
    p.set_defaults(func=_plugins)


def _list(args: argparse.Namespace) -> int:
    components = get_registry().list(args.kind, args.filter)
    rows = [(c.kind, c.name, f"{c.plugin} {c.version}", c.summary) for c in components]
    print(format_table(rows, ("KIND", "NAME", "PLUGIN", "DESCRIPTION")))
    return 0


def _plugins(args: argparse.Namespace) -> int:
    rows = []
    for info in get_registry().plugins():
        status = f"FAILED: {info.error}" if info.error else ", ".join(info.hooks)
        rows.append((info.name, info.version, "built-in" if info.builtin else "third-party", info.module, status))
    print(format_table(rows, ("PLUGIN", "VERSION", "SOURCE", "MODULE", "HOOKS")))
    return 0
