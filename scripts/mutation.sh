#!/usr/bin/env bash
# Mutation testing of one core module against its own tests, with mutmut 3.
#
#   scripts/mutation.sh MODULE             mutate oxlin_async/MODULE.py, run its tests, summarise
#   scripts/mutation.sh MODULE summary     the summary of the last run again
#   scripts/mutation.sh MODULE results     the surviving mutants of the last run
#   scripts/mutation.sh MODULE show NAME   the diff of one mutant
#   scripts/mutation.sh MODULE run NAME... re-test those mutants (after changing a test)
#
# MODULE is a file name under oxlin_async/ without `.py` (`_pagination`, `_params`, ...).
# Each module runs in its own copy of the repository, .mutation/MODULE/ (git-ignored), whose
# pyproject.toml is this one with [tool.mutmut] narrowed to that module and its test files.
# mutmut keeps its results there (for `summary`, `results`, `show` and `run NAME`); a plain
# run starts afresh. MUTATION_JOBS sets how many mutants run at once (default 1: the
# machine is shared). CONTRIBUTING.md ("Mutation testing") says how to read the summary.
set -euo pipefail

# Which test files exercise each module: one line per module, globs under tests/. A module
# listed here need not exist yet; a glob that matches nothing is dropped. Keep each set to
# the files that test the module directly: for every mutant, mutmut runs only the tests
# among these that call the mutated function.
TESTS_FOR='
_pagination  test_pagination*.py test_hostile_server*.py
_params      test_params*.py test_filters*.py test_pagination*.py test_resources*.py
             test_client_errors*.py test_hostile_server*.py test_hostile_parsing*.py
_filters     test_filters*.py test_params*.py test_pagination*.py
_retry       test_retry*.py test_hostile_parsing*.py
_transport   test_retry*.py test_client_errors*.py test_client_auth*.py test_observing*.py
             test_transport*.py test_auth*.py test_bulk*.py test_hostile_server*.py
             test_hostile_parsing*.py test_decoding_failures*.py
_options     test_retry*.py test_client_errors*.py test_resources*.py test_bulk*.py
             test_transport*.py test_hostile_server*.py
_auth        test_retry*.py test_client_auth*.py test_auth*.py test_transport*.py
             test_widget*.py test_resources_widget*.py test_hostile_server*.py
             test_hostile_parsing*.py
_client      test_client_auth*.py test_client_errors*.py test_resources*.py
'

usage() {
    echo "usage: scripts/mutation.sh MODULE [summary | results | show NAME | run NAME...]" >&2
    exit 2
}

# The globs of MODULE's line and of the indented lines that continue it.
globs_for() {
    printf '%s\n' "$TESTS_FOR" | awk -v m="$1" '
        /^[^ ]/ { on = ($1 == m); if (on) { $1 = ""; print }; next }
        on && NF { print }'
}

# pyproject.toml with [tool.mutmut] narrowed to one module and its tests.
narrowed_config() {  # SOURCE TARGET MODULE_PATH TEST...
    "$python" - "$@" <<'PY'
import json, sys

source, target, module, *tests = sys.argv[1:]
lines = open(source, encoding="utf-8").read().splitlines()
overrides = {"only_mutate": [module], "pytest_add_cli_args_test_selection": tests}
# [tool.mutmut] runs to the next table: drop the keys set here from it, then add them.
start = lines.index("[tool.mutmut]") + 1
end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
section = [ln for ln in lines[start:end] if ln.split("=")[0].strip() not in overrides]
while section and not section[-1].strip():
    section.pop()
section += [f"{k} = {json.dumps(v)}" for k, v in overrides.items()] + [""]
with open(target, "w", encoding="utf-8") as out:
    out.write("\n".join(lines[:start] + section + lines[end:]) + "\n")
PY
}

summary() {  # MODULE EQUIVALENTS_FILE
    "$python" - "$@" "$mutmut" <<'PY'
import subprocess, sys

module, equivalents_file, mutmut = sys.argv[1:]
prefix = f"oxlin_async.{module}."
equivalent = set()
for line in open(equivalents_file, encoding="utf-8"):
    name = line.split("#")[0].split()[:1]
    if name and name[0].startswith(prefix):
        equivalent.add(name[0])
out = subprocess.run([mutmut, "results", "--all", "true"], capture_output=True, text=True,
                     check=True).stdout
status = {}
for line in out.splitlines():
    name, _, what = line.strip().partition(": ")
    if name.startswith(prefix):
        status[name] = what
if not status:
    sys.exit(f"no results for oxlin_async/{module}.py: run scripts/mutation.sh {module}")
killed = sorted(n for n, s in status.items() if s in ("killed", "timeout"))
survived = sorted(n for n, s in status.items() if s == "survived")
listed = [n for n in survived if n in equivalent]
left = [n for n in survived if n not in equivalent]
# Code no test can reach (listed with its reason) is equivalent too.
unreached = sorted(n for n, s in status.items() if s == "no tests" and n in equivalent)
listed += unreached
other = sorted(n for n, s in status.items()
               if s not in ("killed", "timeout", "survived") and n not in unreached)
stale = sorted(n for n in equivalent if status.get(n) not in ("survived", "no tests"))
scored = len(status) - len(listed)
print(f"\noxlin_async/{module}.py: tried {len(status)}, killed {len(killed)} (timeouts "
      f"included), survived {len(survived)} ({len(listed) - len(unreached)} equivalent, "
      f"{len(left)} not), unreachable {len(unreached)} (equivalent), other {len(other)}")
print(f"score: {len(killed)}/{scored} = {100 * len(killed) / max(scored, 1):.1f} % of the "
      "non-equivalent mutants")
if left:
    print(f"survived, not listed as equivalent (scripts/mutation.sh {module} show NAME):")
    print("".join(f"  {n}\n" for n in left), end="")
if other:
    print("not run to a verdict (no test reaches them, or the run failed):")
    print("".join(f"  {n}: {status[n]}\n" for n in other), end="")
if stale:
    print(f"listed in {equivalents_file} but not surviving (the function changed and mutmut "
          "renumbered its mutants? check them with show):")
    print("".join(f"  {n}: {status.get(n, 'no such mutant')}\n" for n in stale), end="")
PY
}

main() {
    [ $# -ge 1 ] || usage
    local module
    module=$(basename "${1%.py}")
    shift
    root=$(cd "$(dirname "$0")/.." && pwd)
    python=${PYTHON:-python}
    [ -f "$root/oxlin_async/$module.py" ] || { echo "no such module: oxlin_async/$module.py" >&2; exit 2; }
    local globs tests=() g f
    globs=$(globs_for "$module")
    [ -n "$globs" ] || { echo "no tests mapped to $module: add a line to TESTS_FOR in $0" >&2; exit 2; }
    for g in $globs; do
        for f in "$root"/tests/$g; do [ -e "$f" ] && tests+=("tests/${f##*/}"); done
    done
    [ ${#tests[@]} -gt 0 ] || { echo "no test file mapped to $module exists: $globs" >&2; exit 2; }
    mutmut=$(command -v mutmut) || { echo 'no mutmut: pip install -e ".[test,mutation]"' >&2; exit 2; }

    local work="$root/.mutation/$module"
    mkdir -p "$work"
    cd "$work"
    case "${1:-}" in
        summary) summary "$module" "$root/scripts/mutation-equivalents.txt"; return ;;
        run) shift ;;  # those mutants only, the other results kept
        "") rm -rf "$work/mutants" ;;  # a full run starts afresh: old verdicts would hide new tests
        *) exec "$mutmut" "$@" ;;
    esac

    # A fresh copy of the code and tests (mutmut keeps its results in mutants/, beside them).
    local d
    for d in oxlin_async tests docs examples; do
        rm -rf "${work:?}/$d"
        # -p keeps the times: mutmut regenerates (and forgets every verdict) when a
        # source looks newer than its mutants, which would make `run NAME` start over.
        if [ -d "$root/$d" ]; then cp -rp "$root/$d" "$work/$d"; fi
    done
    find "$work" -path "$work/mutants" -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
    narrowed_config "$root/pyproject.toml" "$work/pyproject.toml" "oxlin_async/$module.py" "${tests[@]}"
    echo "== mutating oxlin_async/$module.py against: ${tests[*]}"
    "$mutmut" run --max-children "${MUTATION_JOBS:-1}" "$@" || true
    echo
    summary "$module" "$root/scripts/mutation-equivalents.txt"
}

# Everything is in functions, so bash has read the whole file before anything runs: editing
# this script while a run is going does not break that run.
main "$@"
