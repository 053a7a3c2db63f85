"""Finding the external tools the project drives (helm, git, kubectl, promtool)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

BIN_DIR_ENV = "RV_BIN_DIR"


class ToolMissing(RuntimeError):
    """An external tool is not installed; the message says how to get it."""


def find_tool(name: str) -> str:
    """The path of `name`: first in $RV_BIN_DIR (the local cluster's build cache), then on PATH."""
    bin_dir = os.environ.get(BIN_DIR_ENV)
    if bin_dir:
        candidate = Path(bin_dir) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise ToolMissing(
        f"'{name}' was not found in ${BIN_DIR_ENV} or on PATH; `make tools` builds it "
        f"(or install it and put it on PATH)"
    )
