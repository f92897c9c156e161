"""The examples run end to end (each starts its own emulator)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_example_runs_the_vendor_flow() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "created user" in out
    assert "signed in as jane.doe@example.com" in out
    assert "widget finished: success" in out
    assert "Linxo Test Bank: SUCCESS" in out
    # Sherlock Holmes's test-bank file: one GBP checking account with this balance.
    assert "3633.03 GBP" in out
    assert "THE GYM LTD CD 0730" in out
