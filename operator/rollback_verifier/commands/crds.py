"""`rollback-verifier crds`: prints (or writes) the CRD generated from the models."""

from __future__ import annotations

import argparse
from pathlib import Path

from rollback_verifier.crd import CRD_FILE_NAME, render_crd


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("crds", help="print the RollbackVerification CRD generated from the API models")
    parser.add_argument(
        "--write",
        metavar="DIR",
        type=Path,
        action="append",
        help=f"write {CRD_FILE_NAME} into DIR instead of printing it (repeatable)",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    text = render_crd()
    if not args.write:
        print(text, end="")
        return 0
    for folder in args.write:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CRD_FILE_NAME).write_text(text)
    return 0
