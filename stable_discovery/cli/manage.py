"""Tidying a workspace: ``sdp rm`` (to the trash, ``--purge``, ``--restore``, ``--list``),
``sdp mv`` and ``sdp archive``.

Each change goes through the store, so that its rows, its image folder and its ratings
stay together; an experiment a run is writing to is refused (its lock is held). Nothing
outside the workspace is touched.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from stable_discovery.cli.args import add_workspace_arg, plural
from stable_discovery.errors import UsageError

__all__ = ["add_commands"]


def _store(args: argparse.Namespace) -> Any:
    from stable_discovery.store.database import Store, workspace_path

    return Store(workspace_path(args.workspace), mode="write")  # never creates one


@contextmanager
def _quiet_experiment(store: Any, name: str) -> Iterator[None]:
    """Hold the experiment's lock (no run may write to it meanwhile), when it has a folder."""
    from stable_discovery.run.files import ExperimentLock

    folder = store.workspace / name
    if not folder.is_dir() or folder.is_symlink():
        yield
        return
    with ExperimentLock(folder, name):
        yield


def _confirm(question: str, args: argparse.Namespace, out: TextIO) -> bool:
    """Ask on the terminal; ``--yes`` answers yes. Without a terminal and without --yes,
    nothing is done."""
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(f"{question.rstrip('?')}: pass --yes to confirm (there is no terminal to ask)")
    out.write(f"{question} [y/N] ")
    out.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def cmd_rm(args: argparse.Namespace, out: TextIO) -> int:
    modes = [f"--{mode}" for mode in ("list", "purge", "restore") if getattr(args, mode)]
    if len(modes) > 1:
        raise UsageError(f"{' and '.join(modes)}: give one of them at a time")
    if modes and args.names:
        raise UsageError(f"{modes[0]} takes no other experiment names ({' '.join(args.names)})")
    if args.as_name and not args.restore:
        raise UsageError("--as goes with --restore NAME")
    if args.list:
        return _rm_list(args, out)
    if args.purge:
        return _rm_purge(args, out)
    if args.restore:
        return _rm_restore(args, out)
    if not args.names:
        raise UsageError("which experiment? sdp rm NAME… (or --list, --purge, --restore NAME)")
    return _rm_names(args, out)


def _rm_names(args: argparse.Namespace, out: TextIO) -> int:
    from stable_discovery.store.trash import move_to_trash

    with _store(args) as store:
        exps = [store.require(name) for name in dict.fromkeys(args.names)]
        what = ", ".join(f"{e.name} ({plural(e.done, 'image')}, {_marks(store, e)})" for e in exps)
        if not _confirm(f"move {what} to the trash of {store.workspace}?", args, out):
            out.write("nothing removed\n")
            return 1
        for exp in exps:
            with _quiet_experiment(store, exp.name):
                entry = move_to_trash(store, exp.name)
            out.write(f"moved {exp.name} to {entry.path} (sdp rm --restore {exp.name} brings it back)\n")
    return 0


def _marks(store: Any, exp: Any) -> str:
    from stable_discovery.store import gallery_queries

    for summary in gallery_queries.experiment_summaries(store.db):
        if summary["name"] == exp.name:
            return f"{summary['favourites']:,} favourites, {summary['rated']:,} rated"
    return "no marks"


def _rm_list(args: argparse.Namespace, out: TextIO) -> int:
    from stable_discovery.store.database import workspace_path
    from stable_discovery.store.trash import trash_entries

    entries = trash_entries(workspace_path(args.workspace))
    if not entries:
        out.write("the trash is empty\n")
        return 0
    for e in entries:
        out.write(
            f"{e.label}  {e.name}  {plural(e.samples, 'sample')}, {plural(e.images, 'image')}  "
            f"removed {_when(e.removed_at)}\n"
        )
    return 0


def _rm_purge(args: argparse.Namespace, out: TextIO) -> int:
    from stable_discovery.store.database import workspace_path
    from stable_discovery.store.trash import purge, trash_entries

    workspace = workspace_path(args.workspace)
    entries = trash_entries(workspace)
    if not entries:
        out.write("the trash is empty\n")
        return 0
    images = sum(e.images for e in entries)
    names = ", ".join(e.name for e in entries)
    if not _confirm(
        f"delete {plural(len(entries), 'experiment')} ({names}; {plural(images, 'image')}) "
        "from the trash for good?",
        args,
        out,
    ):
        out.write("nothing deleted\n")
        return 1
    result = purge(workspace, entries)
    out.write(f"deleted {plural(len(result.deleted), 'experiment')} from the trash\n")
    if result.kept:
        shown = "".join(f"  {path}\n" for path in result.kept[:10])
        more = f"  … and {len(result.kept) - 10} more\n" if len(result.kept) > 10 else ""
        out.write(
            f"kept {plural(len(result.kept), 'file')} that sdp did not write (move or delete "
            f"{'it' if len(result.kept) == 1 else 'them'} yourself, then purge again):\n" + shown + more
        )
    return 0


def _rm_restore(args: argparse.Namespace, out: TextIO) -> int:
    from stable_discovery.store.trash import find_entry, restore

    with _store(args) as store:
        entry = find_entry(store.workspace, args.restore)
        exp = restore(store, entry, args.as_name)
    out.write(f"restored {exp.name}: {plural(exp.done, 'image')} of {exp.count}, with their marks\n")
    return 0


def cmd_mv(args: argparse.Namespace, out: TextIO) -> int:
    with _store(args) as store:
        store.require(args.old)
        with _quiet_experiment(store, args.old):
            exp = store.rename(args.old, args.new)
        _move_thumbnails(store.workspace, args.old, args.new)
    out.write(f"renamed {args.old} to {exp.name} (images in {store.workspace / exp.name})\n")
    return 0


def _move_thumbnails(workspace: Any, old: str, new: str) -> None:
    """The cached thumbnails follow the experiment (or are dropped: they are made again)."""
    import os
    import shutil

    source, target = workspace / ".thumbs" / old, workspace / ".thumbs" / new
    if not source.is_dir():
        return
    try:
        os.rename(source, target)
    except OSError:
        shutil.rmtree(source, ignore_errors=True)


def cmd_archive(args: argparse.Namespace, out: TextIO) -> int:
    with _store(args) as store:
        for name in args.names:
            store.set_archived(name, not args.off)
    word = "unarchived" if args.off else "archived"
    out.write(f"{word} {', '.join(args.names)}\n")
    return 0


def add_commands(sub: Any) -> None:
    """Add ``rm``, ``mv`` and ``archive`` to the ``sdp`` parser."""
    p = sub.add_parser(
        "rm",
        help="move experiments to the workspace's trash (--purge empties it, --restore brings one back)",
        description="Move experiments (their images, records and marks) to the trash inside the "
        "workspace, <workspace>/.trash/. Asks first; --yes for scripts. --list shows the trash, "
        "--restore NAME brings an experiment back, --purge deletes the trash for good. An "
        "experiment a run is writing to is refused; nothing outside the workspace is touched.",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="experiments to remove")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--list", action="store_true", help="show what the trash holds")
    p.add_argument(
        "--purge",
        action="store_true",
        help="delete the trash for good (files sdp did not write are kept, and listed)",
    )
    p.add_argument("--restore", metavar="NAME", help="bring an experiment back from the trash")
    p.add_argument("--as", dest="as_name", metavar="NEW_NAME", help="with --restore: under this name")
    add_workspace_arg(p)
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser(
        "mv",
        help="rename an experiment (its records, marks and image folder)",
        description="Rename an experiment: its row in the store and its image folder change together. "
        "The images keep the name they were made under in their metadata.",
    )
    p.add_argument("old", metavar="OLD", help="the experiment's name")
    p.add_argument("new", metavar="NEW", help="its new name")
    add_workspace_arg(p)
    p.set_defaults(func=cmd_mv)

    p = sub.add_parser(
        "archive",
        help="archive experiments: hidden from the gallery's list unless asked (--off to unarchive)",
    )
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--off", action="store_true", help="bring the experiments back to the list")
    add_workspace_arg(p)
    p.set_defaults(func=cmd_archive)
