"""`affbench cache list|clear`: what the stage cache and the generated datasets hold, and their removal."""

from __future__ import annotations

import argparse

from affbench.cli_support import print_usage

STAGE_HELP = "frames, finetune, features, windows (the stage cache) or synthaffect (generated datasets)"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    from affbench.cache_inventory import STAGES

    cache = subparsers.add_parser(
        "cache", help="list or clear the stage cache and generated datasets ($AFFBENCH_HOME)",
        description="The stage cache ($AFFBENCH_HOME/cache/<stage>/<key>/) and the generated SynthAffect datasets "
                    "($AFFBENCH_HOME/synthaffect/); AFFBENCH_HOME defaults to ~/.cache/affbench. Runs are not kept "
                    "there: they go to --out.")
    cache.set_defaults(func=lambda args: print_usage(cache))
    commands = cache.add_subparsers(dest="cache_command", metavar="{list,clear}")

    ls = commands.add_parser(
        "list", help="entries, size and last use per stage",
        description="Per stage: entries, size, and when they were last used (written, or reused by a run).")
    _stage_option(ls, STAGES)
    ls.add_argument("--entries", action="store_true", help="also list every entry")
    ls.set_defaults(func=_list)

    clear = commands.add_parser(
        "clear", help="remove cache entries (all, or those unused for DAYS)",
        description="Remove entries: each is renamed out of the way first, so a run never finds half an entry. "
                    "Anything removed is rebuilt by the next run that needs it. Do not clear while a run uses "
                    "the cache.")
    _stage_option(clear, STAGES)
    clear.add_argument("--older-than", type=_days, default=None, metavar="DAYS",
                       help="only entries not used for more than DAYS days (a number, e.g. 7 or 0.5)")
    clear.add_argument("--dry-run", action="store_true", help="print what would be removed, remove nothing")
    clear.set_defaults(func=_clear)


def _stage_option(parser: argparse.ArgumentParser, stages: tuple[str, ...]) -> None:
    parser.add_argument("--stage", action="append", choices=stages, metavar="STAGE",
                        help=f"only this stage: {STAGE_HELP}; repeatable")


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"'{text}': accepted: a number of days >= 0, e.g. 7 or 0.5")
    return value


def _list(args: argparse.Namespace) -> int:
    from affbench.cache_inventory import STAGES, format_age, format_size, list_entries, stage_folder
    from affbench.home import DEFAULT_HOME, HOME_ENV, affbench_home, cache_root
    from affbench.output import format_table

    stages = args.stage or list(STAGES)
    entries = list_entries(stages)
    print(f"home:  {affbench_home()}  (${HOME_ENV}; default {DEFAULT_HOME})")
    print(f"cache: {cache_root()}")
    print()
    rows = []
    for stage in stages:
        kept = [e for e in entries if e.stage == stage and not e.leftover]
        ages = sorted(e.age_days() for e in kept)
        partial = sum(not e.complete for e in kept)
        rows.append((stage, f"{len(kept)}" + (f" ({partial} partial)" if partial else ""),
                     format_size(sum(e.size for e in kept)),
                     f"{format_age(ages[0])} / {format_age(ages[-1])} ago" if ages else "-",
                     str(stage_folder(stage))))
    rows.append(("total", str(sum(not e.leftover for e in entries)),
                 format_size(sum(e.size for e in entries if not e.leftover)), "", ""))
    print(format_table(rows, ("STAGE", "ENTRIES", "SIZE", "LAST USED (newest / oldest)", "FOLDER")))
    leftovers = [e for e in entries if e.leftover]
    if leftovers:
        print(f"\n{len(leftovers)} temporary folder(s) of interrupted writers, "
              f"{format_size(sum(e.size for e in leftovers))}: `affbench cache clear` removes those whose writer "
              "is gone")
    if args.entries and entries:
        print()
        print(format_table([(e.stage, e.path.name, format_size(e.size), f"{format_age(e.age_days())} ago",
                             "leftover" if e.leftover else "complete" if e.complete else "partial")
                            for e in entries], ("STAGE", "ENTRY", "SIZE", "LAST USED", "STATE")))
    return 0


def _clear(args: argparse.Namespace) -> int:
    from affbench.cache_inventory import STAGES, format_size, list_entries, removable, remove_entry

    chosen = removable(list_entries(args.stage or STAGES), older_than_days=args.older_than)
    verb = "would remove" if args.dry_run else "removed"
    for entry in chosen:
        if not args.dry_run:
            remove_entry(entry)
        print(f"{verb} {entry.stage} {entry.path} ({format_size(entry.size)})")
    scope = "" if args.older_than is None else f" unused for more than {args.older_than:g} days"
    print(f"{verb} {len(chosen)} entr{'y' if len(chosen) == 1 else 'ies'}{scope}, "
          f"{format_size(sum(e.size for e in chosen))}")
    return 0
