#!/usr/bin/env bash
# Mutation testing of the manager's core with go-gremlins, driven by the
# manager's unit tests and the quick tier of the property tests
# (tests/property). Prints gremlins' own summary, then one line:
#
#   gremlins: mutation score S% (K killed + T timed out of N covered; L lived; C not covered; V not viable)
#
# where the score counts a timed-out mutant as detected (the tests did not
# pass), unlike gremlins' "test efficacy", which leaves it out.
#
# Why a trimmed copy: gremlins runs `go test` per mutant, either on the
# mutant's own package (which would leave out tests/property) or, with
# --integration, on ./... of the module (which would run the harness's
# minute-long scenario tests for every mutant). A copy holding only
# go.mod, manager/, internal/testkit/ and tests/property/ makes ./... the
# tests we want, ~30 s a mutant.
#
# Scope (GREMLINS_SCOPE, a regexp over paths under manager/): the table,
# health loop, adaptive timeouts, worker channel, stop sequence, lifecycle
# and RAM admission: ~100 mutants, about 30 minutes with 2 workers on 2
# cores. The surviving mutants judged equivalent are listed in
# testdata/mutants/README.md.
#
# Env: GO (default go), GREMLINS_WORKERS (default 2), GREMLINS_SCOPE,
# GREMLINS_OUT (JSON results, default bin/gremlins-results.json).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
go=${GO:-go}
workers=${GREMLINS_WORKERS:-2}
scope=${GREMLINS_SCOPE:-'^(channel|health|timeouts|table|stop|lifecycle|manager|memory)\.go$'}
out=${GREMLINS_OUT:-$root/bin/gremlins-results.json}
bin=$root/bin/gremlins

# Its own module (like tools/jaeger): gremlins' dependencies stay out of
# Corral's go.mod. GOWORK=off: a go.work at the root must not join them.
mkdir -p "$root/bin"
GOWORK=off "$go" -C "$here" build -o "$bin" github.com/go-gremlins/gremlins/cmd/gremlins

work=$(mktemp -d "${TMPDIR:-/tmp}/corral-gremlins.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/internal" "$work/tests"
cp "$root/go.mod" "$root/go.sum" "$work/"
cp -r "$root/manager" "$work/manager"
cp -r "$root/internal/testkit" "$work/internal/testkit"
cp -r "$root/tests/property" "$work/tests/property"

# Every Go file under manager/ outside the scope is excluded (gremlins
# takes exclusions only). Paths are relative to the scanned folder.
excludes=()
while IFS= read -r f; do
	rel=${f#"$work/manager/"}
	if ! [[ $rel =~ $scope ]]; then
		excludes+=(--exclude-files "^$(printf '%s' "$rel" | sed 's/[.]/\\./g')\$")
	fi
done < <(find "$work/manager" -name '*.go' ! -name '*_test.go' | sort)

# The unmutated tests must pass as gremlins runs them (GOTMPDIR in a long
# temporary path, ./... of the copy): a test that fails for its
# environment would count every mutant as killed.
mkdir -p "$work/gotmp-0123456789"
echo "gremlins: checking that the unmutated tests pass as gremlins runs them"
if ! (cd "$work" && GOWORK=off GOTMPDIR="$work/gotmp-0123456789" "$go" test -count=1 -failfast ./... >"$work/baseline.log" 2>&1); then
	grep -E '^(---|FAIL|panic)|_test.go:[0-9]+' "$work/baseline.log" | head -30
	echo "gremlins: the unmutated tests fail in the copy; no mutation score (it would count every mutant as killed)"
	exit 1
fi

log=$work/gremlins.log
echo "gremlins: mutating manager/ files matching $scope, tests: ./manager/... and ./tests/property ($workers workers)"
(
	cd "$work"
	GOWORK=off "$bin" unleash --integration --coverpkg ./manager/... \
		--workers "$workers" --timeout-coefficient 4 \
		--output "$out" ${GREMLINS_EXTRA:-} "${excludes[@]}" ./manager
) 2>&1 | tee "$log"

# Summary lines, as gremlins prints them:
#   Killed: 80, Lived: 10, Not covered: 5
#   Timed out: 3, Not viable: 0, Skipped: 0
num() { grep -oE "$1: [0-9]+" "$log" | tail -1 | grep -oE '[0-9]+$' || echo 0; }
killed=$(num Killed) lived=$(num Lived) notcov=$(num 'Not covered') timedout=$(num 'Timed out') notviable=$(num 'Not viable')
detected=$((killed + timedout))
covered=$((detected + lived))
if ((covered == 0)); then
	echo "gremlins: no covered mutant ran (see the log above)"
	exit 1
fi
score=$(awk -v d="$detected" -v c="$covered" 'BEGIN { printf "%.1f", 100 * d / c }')
echo "gremlins: mutation score ${score}% ($killed killed + $timedout timed out of $covered covered; $lived lived; $notcov not covered; $notviable not viable)"
echo "gremlins: lived mutants:"
grep -E '^ *LIVED' "$log" || echo "  (none)"
