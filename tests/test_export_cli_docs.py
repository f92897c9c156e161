"""The command line's help and messages, the emulator's printout, and the README's
runnable bulk example: what a new user reads first."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from _helpers import clean_env, grants, new_client, run

import oxlin_async as ox
from oxlin_async import cli
from oxlin_async.testing import OxlinSandbox
from oxlin_async.testing._cli import describe

ROOT = Path(__file__).resolve().parent.parent


def export_parser() -> argparse.ArgumentParser:
    parser = cli.build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return commands.choices["export"]


def test_every_export_option_says_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    undocumented = [a.option_strings for a in export_parser()._actions
                    if a.option_strings and not a.help]
    assert undocumented == []
    assert run(["export", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines anywhere
    assert "seeded users (default 20)" in text  # what the export really uses
    assert "inclusive" in text and "debits < 0" in text
    assert "Oxlin's hosted test platform" in text and "not the same as --sandbox" in text.lower()
    for value in ("CHECKINGS", "SAVINGS", "CREDIT_CARD"):
        assert value in text
    assert "--per-user-concurrency N" in text


def test_top_level_help_and_a_bare_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    assert "``" not in out and "export" in out and "sandbox" in out
    assert run([]) == 2
    captured = capsys.readouterr()
    assert "usage: oxlin-async" in captured.err
    assert re.search(r"export\s+export many users' transactions", captured.err)
    assert re.search(r"sandbox\s+serve the local emulator", captured.err)
    assert "Traceback" not in captured.err


def test_the_interrupt_message_names_what_each_format_keeps() -> None:
    args = export_parser().parse_args(["--out", "tx.sqlite"])
    message = cli._interrupted(args)
    assert ".part" not in message and "tx.sqlite" in message and "--checkpoint" in message
    args = export_parser().parse_args(["--out", "tx.csv", "--checkpoint", "CP"])
    message = cli._interrupted(args)
    assert "tx.csv.part" in message and "--resume" in message


async def test_the_emulator_prints_lines_a_shell_can_paste() -> None:
    async with OxlinSandbox(users=2, seed=61) as box:
        text = describe(box)
    lines = text.splitlines()
    assert all(line.startswith(("# ", "export ")) for line in lines), lines
    exported = dict(shlex.split(line)[1].split("=", 1) for line in lines
                    if line.startswith("export "))
    assert exported == {"OXLIN_CLIENT_ID": box.client_id,
                        "OXLIN_CLIENT_SECRET": box.client_secret,
                        "OXLIN_AUTH_URL": box.auth_url, "OXLIN_API_URL": box.api_url,
                        "OXLIN_EMBED_URL": box.embed_url}
    assert "Ctrl-C to stop" in lines[0] and "Ctrl-C to stop" in lines[-1]
    for user in box.users:
        assert f"# {user.email},{user.password}" in lines


def test_the_pasted_lines_are_what_export_needs(tmp_path: Path) -> None:
    """``eval`` the emulator's printout in a shell, then run the export it suggests."""
    script = (f"{shlex.quote(sys.executable)} -m oxlin_async sandbox --port 0 --users 2 "
              "> served.txt & SERVER=$!\n"
              "for i in $(seq 300); do grep -q '^# Ctrl-C' served.txt && break; sleep 0.1; "
              "done\n"
              'eval "$(cat served.txt)"\n'
              "grep '^# .*@' served.txt | sed 's/^# //' > users.csv\n"
              f"{shlex.quote(sys.executable)} -m oxlin_async export --users users.csv "
              "--out tx.jsonl --quiet; STATUS=$?\n"
              "kill $SERVER; wait $SERVER; exit $STATUS\n")
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=clean_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len((tmp_path / "tx.jsonl").read_text().splitlines()) == 2 * 3 * 100


def test_the_readme_bulk_example_runs_as_shown(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    marker = readme.index("<!-- runnable: tests/test_export_cli_docs.py runs this block -->")
    start = readme.index("```python\n", marker) + len("```python\n")
    block = readme[start:readme.index("```", start)]
    code = "\n".join(line[2:] if line.startswith("  ") else line.strip()
                     for line in block.splitlines())
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=clean_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "900 transactions; 0 failed"


async def test_bulk_users_as_tuples_or_refused_before_any_request() -> None:
    async with OxlinSandbox(users=2, seed=62, transactions_per_account=4) as box, \
            new_client(box) as client:
        pairs = [(u.email, u.password) for u in box.users]
        run_ = client.bulk_transactions(pairs)
        got = [b async for b in run_]
        assert run_.result is not None and run_.result.ok
        assert {b.user for b in got} == {u.email for u in box.users}
        before = grants(box)
        for wrong in ([box.users[0].email], [("a@example.com",)], [{"email": "x"}],
                      [(1, 2)], "jane@example.com,pw"):
            with pytest.raises(ox.ArgumentError) as raised:
                client.bulk_transactions(wrong)  # type: ignore[arg-type]
            assert "users" in str(raised.value)
        assert grants(box) == before

        async def later() -> object:
            yield ox.BulkUser.with_password(box.users[0].email, box.users[0].password)
            yield ["not", "a", "user"]
        with pytest.raises(ox.ArgumentError):
            async with client.bulk_transactions(later()) as lazy:
                async for _ in lazy:
                    pass
