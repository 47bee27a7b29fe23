package property

import (
	"flag"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/corral-dev/corral/internal/testkit"
)

func TestMain(m *testing.M) {
	// The real-process tier starts this test binary as its worker.
	testkit.WorkerTestMain(m)
}

// Default check counts of the quick tier (make test): small enough that the
// package stays well under a minute with -race on 2 cores.
const (
	defaultMemoryChecks  = 40
	defaultProcessChecks = 10
)

// setChecks sets -rapid.checks for the next rapid.Check unless the command
// line or RAPID_CHECKS chose it: from envVar when set, else def. Tests of
// this package run one at a time, so setting the flag per test is safe.
func setChecks(t *testing.T, envVar string, def int) int {
	t.Helper()
	if explicitFlag("rapid.checks") {
		return flagInt(t, "rapid.checks")
	}
	if _, ok := os.LookupEnv("RAPID_CHECKS"); ok {
		return flagInt(t, "rapid.checks")
	}
	n := def
	if v, ok := os.LookupEnv(envVar); ok {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive integer", envVar, v)
		}
	}
	if err := flag.Set("rapid.checks", strconv.Itoa(n)); err != nil {
		t.Fatal(err)
	}
	return n
}

// processChecks is the real-process tier's default: a tenth of the
// in-memory tier's when CORRAL_PROPERTY_CHECKS is set (stress), at least
// the quick default.
func processChecks() int {
	if v, err := strconv.Atoi(os.Getenv("CORRAL_PROPERTY_CHECKS")); err == nil {
		return max(defaultProcessChecks, v/10)
	}
	return defaultProcessChecks
}

// explicitFlag reports whether name was given on the command line. (flag.Visit
// would also report flags set by setChecks.)
func explicitFlag(name string) bool {
	return slices.ContainsFunc(os.Args[1:], func(a string) bool {
		a = strings.TrimLeft(a, "-")
		return a == name || strings.HasPrefix(a, name+"=")
	})
}

func flagInt(t *testing.T, name string) int {
	n, err := strconv.Atoi(flag.Lookup(name).Value.String())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// envOr returns the environment variable name, or def when it is unset.
func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}
