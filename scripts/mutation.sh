#!/usr/bin/env bash
# Mutation testing of one core module against its own tests, with mutmut 3.
#
#   scripts/mutation.sh MODULE             mutate oxlin_async/MODULE.py, run its tests, summarise
#   scripts/mutation.sh MODULE results     list the surviving mutants of the last run
#   scripts/mutation.sh MODULE show NAME   the diff of one mutant
#   scripts/mutation.sh MODULE run NAME    re-run one mutant (after changing a test)
#
# MODULE is a file name under oxlin_async/ without `.py` (`_pagination`, `_params`, ...).
# Each module runs in its own copy of the repository, .mutation/MODULE/ (git-ignored), whose
# pyproject.toml is this one with [tool.mutmut] narrowed to that module and its test files;
# mutmut keeps its results there (for `results`, `show` and `run NAME`); a plain run starts
# afresh.
# MUTATION_JOBS sets how many mutants run at once (default 1: the machine is shared).
# See CONTRIBUTING.md ("Mutation testing") for how to read the summary.
set -euo pipefail

# Which test files exercise each module: one line per module, globs under tests/. A module
# listed here need not exist yet; a glob that matches nothing is dropped. Keep each set to the
# files that test the module directly: mutmut runs, for every mutant, only the tests among
# these that call the mutated function.
TESTS_FOR='
_pagination   test_pagination*.py
_params       test_params*.py test_pagination*.py test_resources*.py test_client_errors*.py
_session      test_retry*.py test_client_errors*.py test_client_auth*.py test_session*.py
_auth         test_retry*.py test_client_auth*.py test_auth*.py
_retry        test_retry*.py test_client_errors*.py
_transport    test_retry*.py test_client_errors*.py test_client_auth*.py test_session*.py
_options      test_retry*.py test_client_errors*.py test_resources*.py
_client       test_client_auth*.py test_client_errors*.py test_resources*.py
'

usage() { echo "usage: scripts/mutation.sh MODULE [results | show NAME | run NAME...]" >&2; exit 2; }
[ $# -ge 1 ] || usage
module=$(basename "${1%.py}")
shift
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python}
[ -f "$root/oxlin_async/$module.py" ] || { echo "no such module: oxlin_async/$module.py" >&2; exit 2; }
globs=$(printf '%s\n' "$TESTS_FOR" | awk -v m="$module" '$1 == m { $1 = ""; print }')
[ -n "$globs" ] || { echo "no tests mapped to $module: add a line to TESTS_FOR in $0" >&2; exit 2; }
tests=()
for g in $globs; do
    for f in "$root"/tests/$g; do [ -e "$f" ] && tests+=("tests/${f##*/}"); done
done
[ ${#tests[@]} -gt 0 ] || { echo "none of the test files mapped to $module exist: $globs" >&2; exit 2; }
mutmut=$(command -v mutmut) || { echo 'mutmut not found: pip install -e ".[test,mutation]"' >&2; exit 2; }

work="$root/.mutation/$module"
mkdir -p "$work"
cd "$work"

if [ $# -gt 0 ] && [ "$1" != run ]; then exec "$mutmut" "$@"; fi
if [ $# -gt 0 ]; then
    shift  # "run NAME...": re-test those mutants, keep the other results
else
    rm -rf "$work/mutants"  # a full run starts afresh: old verdicts would hide new tests
fi

# A fresh copy of the code and tests (mutmut keeps its results in mutants/, beside them).
for d in oxlin_async tests docs examples; do
    rm -rf "$work/$d"
    [ -d "$root/$d" ] && cp -r "$root/$d" "$work/$d"
done
find "$work" -path "$work/mutants" -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
"$python" - "$root/pyproject.toml" "$work/pyproject.toml" "oxlin_async/$module.py" "${tests[@]}" <<'PY'
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
echo "== mutating oxlin_async/$module.py against: ${tests[*]}"
"$mutmut" run --max-children "${MUTATION_JOBS:-1}" "$@" || true
"$mutmut" export-cicd-stats >/dev/null
"$python" - "$module" "$root/scripts/mutation-equivalents.txt" <<'PY'
import json, subprocess, sys

module, equivalents_file = sys.argv[1:]
stats = json.load(open("mutants/mutmut-cicd-stats.json", encoding="utf-8"))
prefix = f"oxlin_async.{module}."
equivalent = {}
for line in open(equivalents_file, encoding="utf-8"):
    name, _, reason = line.strip().partition(" ")
    if name.startswith(prefix):
        equivalent[name] = reason.strip()
out = subprocess.run(["mutmut", "results", "--all", "true"], capture_output=True, text=True,
                     check=True).stdout
status = {}
for line in out.splitlines():
    name, _, what = line.strip().partition(": ")
    if name.startswith(prefix):
        status[name] = what
survived = sorted(n for n, s in status.items() if s == "survived")
left = [n for n in survived if n not in equivalent]
stale = sorted(n for n in equivalent if status.get(n) != "survived")
tried = len(status)
killed = sum(s in ("killed", "timeout") for s in status.values())
other = tried - killed - len(survived)
scored = tried - (len(survived) - len(left)) - other
score = 100.0 if not scored else 100.0 * killed / scored
print(f"\noxlin_async/{module}.py: tried {tried}, killed {killed} (timeouts included), "
      f"survived {len(survived)} of which {len(survived) - len(left)} listed as equivalent, "
      f"other {other} (no tests, skipped, suspicious)")
print(f"score: {killed}/{scored} = {score:.1f} % of non-equivalent mutants")
if left:
    print(f"survived, not listed as equivalent (see each with: scripts/mutation.sh {module} "
          "show NAME):")
for name in left:
    print(f"  {name}")
for name in stale:
    print(f"  listed as equivalent but {status.get(name, 'not generated')}: {name} "
          "(the function changed? update scripts/mutation-equivalents.txt)")
if other:
    print("  " + ", ".join(f"{n}: {s}" for n, s in sorted(status.items())
                             if s not in ("killed", "timeout", "survived")))
print(f"raw counts: {json.dumps(stats)}")
PY
