"""The layers of README "Architecture" hold: `make lint` checks them, and so does `make test`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_module_keeps_to_the_import_contract() -> None:
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(linter), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_operator_stays_a_source_folder_so_import_operator_is_the_standard_library() -> None:
    import operator

    assert not (ROOT / "operator" / "__init__.py").exists()
    assert hasattr(operator, "itemgetter")
