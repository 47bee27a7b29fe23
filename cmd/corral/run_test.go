package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "no-such-scenario"}, `unknown scenario "no-such-scenario"`},
		{[]string{"run", "smoke", "--seed", "x"}, `--seed "x" is invalid`},
		{[]string{"run", "smoke", "--duration", "-1s"}, "--duration -1s is invalid"},
		{[]string{"run", "smoke", "--target-pid", "5"}, "--target-pid needs --target"},
		{[]string{"run", "smoke", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"run", "smoke", "--profile", "upstream"}, "--profile needs --target"},
		{[]string{"run", "smoke", "--target", "127.0.0.1:1", "--profile", "python"}, `--profile "python" is invalid: want one of corral, upstream, generic`},
		{[]string{"run", "smoke", "--bounds", "grace=soon"}, `--bounds grace="soon": not a duration`},
		{[]string{"run", "smoke", "--bounds", "nope=1s"}, `--bounds: unknown key "nope"`},
		{[]string{"run", "smoke", "swarm"}, "one scenario at a time"},
		{[]string{"run", "/nonexistent/file.yaml"}, "no such file"},
		{[]string{"replay"}, "want exactly one run folder"},
		{[]string{"replay", t.TempDir()}, "scenario.yaml"},
		{[]string{"scenarios", "extra"}, `unexpected argument "extra"`},
		{[]string{"client"}, "Usage: corral client"},
		{[]string{"client", "--addr", "127.0.0.1:1"}, "no command given"},
		{[]string{"client", "--addr", "127.0.0.1:1", "bogus"}, `unknown command "bogus"`},
		{[]string{"client", "--addr"}, "flag needs an argument: -addr"},
		{[]string{"client", "--addr", "nohost", "list"}, `--addr "nohost" is invalid`},
		{[]string{"client", "status"}, "status: takes 1 argument(s), got 0"},
		{[]string{"client", "init", "--payload", "[1,2]"}, "is neither a JSON object nor a readable file"},
		{[]string{"client", "init", "--payload", filepath.Join(t.TempDir(), "missing.json")}, "is neither a JSON object nor a readable file"},
		{[]string{"client", "init", "--payload", "{broken"}, "--payload: the value is not a JSON object"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr); code != 2 {
				t.Errorf("exit %d, want 2 (stderr %q)", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q does not name %q", stderr.String(), tc.want)
			}
		})
	}
}

func TestScenariosList(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"scenarios"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, name := range []string{"smoke", "hung-queue", "crash-loop", "slow-probes", "shutdown-under-load", "bad-clients", "swarm", "soak", "foreign-smoke", "limits", "churn"} {
		if !strings.Contains(stdout.String(), name+" ") {
			t.Errorf("corral scenarios does not list %s:\n%s", name, stdout.String())
		}
	}
}
