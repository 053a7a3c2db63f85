"""`rollback-verifier crds`: prints (or writes) the CRD generated from the models."""

from __future__ import annotations

import argparse
from pathlib import Path

from rollback_verifier.api.crd import CRD_FILE_NAME, render_crd
from rollback_verifier.errors import UsageError


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("crds", help="print the RollbackVerification CRD generated from the API models")
    parser.add_argument(
        "--write",
        metavar="DIR",
        type=Path,
        action="append",
        help=f"write {CRD_FILE_NAME} into the folder DIR instead of printing it, replacing the copy there "
        "(a missing folder is created; repeatable); says what it wrote",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    text = render_crd()
    if not args.write:
        print(text, end="")
        return 0
    for folder in args.write:  # refuse them all before writing any
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"--write {folder}: not a folder; give the folder to write {CRD_FILE_NAME} into")
    for folder in args.write:
        target = folder / CRD_FILE_NAME
        try:
            created = not folder.exists()
            folder.mkdir(parents=True, exist_ok=True)
            before = target.read_text() if target.is_file() else None
            if before != text:
                target.write_text(text)
        except OSError as exc:
            raise UsageError(f"--write {folder}: {exc.strerror or exc}") from None
        if created:
            what = "created the folder and wrote"
        elif before is None:
            what = "wrote"
        else:
            what = "unchanged" if before == text else "replaced"
        print(f"{target}: {what}")
    return 0
