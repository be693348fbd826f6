#!/usr/bin/env bash
# The whole test suite, offline (scripts/offline.sh), in two passes:
#   1. every test not marked `serial`, in TEST_WORKERS pytest processes side by side, a test
#      file to each (pytest-xdist's loadfile: a module's fixtures, such as the private Tor
#      network, are made once);
#   2. the `serial` tests alone: they measure what an honest visitor waits for while the server
#      is under attack (tests/test_availability.py, tests/test_slow_clients.py), which another
#      test's load on the same cores would change.
# Both passes run even when the first fails; the exit status is the first failure's.  A pass
# that selects no test (pytest's status 5, e.g. a file given in PYTEST_ARGS with no serial test)
# is not a failure.
# Usage: scripts/test.sh PYTHON WORKERS [pytest arguments...]
set -uo pipefail
py=$1
workers=$2
shift 2
here=$(dirname "$0")
status=0
pass() {
  "$here/offline.sh" "$py" -m pytest "$@"
  local code=$?
  if [ "$code" -ne 0 ] && [ "$code" -ne 5 ] && [ "$status" -eq 0 ]; then
    status=$code
  fi
}
pass -n "$workers" --dist loadfile -m "not serial" "$@"
pass -m serial "$@"
exit "$status"
