package e2e

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager"
)

// runCorral runs the binary to completion (bounded) with a clean
// environment plus env, and returns its exit code, stdout and stderr.
func runCorral(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, corralBin, args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("corral %v did not finish within 20s\nstderr:\n%s", args, &stderr)
	case errors.As(err, &exit):
		return exit.ExitCode(), stdout.String(), stderr.String()
	case err != nil:
		t.Fatalf("corral %v: %v", args, err)
	}
	return 0, stdout.String(), stderr.String()
}

// TestServeConfigErrors checks that bad settings stop `corral serve` with
// status 2 and a message naming the setting, and that --help documents
// every setting with its default.
func TestServeConfigErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		env   []string
		args  []string
		names []string // the message must name one of these
	}{
		{"port not a number", []string{"STREAM_MANAGER_PORT=abc"}, nil, []string{"STREAM_MANAGER_PORT"}},
		{"port out of range", []string{"STREAM_MANAGER_PORT=70000"}, nil, []string{"STREAM_MANAGER_PORT"}},
		{"negative queue timeout flag", nil, []string{"--queue-timeout=-1"}, []string{"queue-timeout", "STREAM_MANAGER_QUEUE_TIMEOUT"}},
		{"negative queue timeout variable", []string{"STREAM_MANAGER_QUEUE_TIMEOUT=-1"}, nil, []string{"STREAM_MANAGER_QUEUE_TIMEOUT"}},
		{"unknown flag", nil, []string{"--no-such-flag"}, []string{"no-such-flag"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Port 0 where the case does not set one, so a server that
			// wrongly starts does not collide with anything.
			env := append([]string{"STREAM_MANAGER_HOST=127.0.0.1", "STREAM_MANAGER_PORT=0"}, tc.env...)
			code, _, stderr := runCorral(t, env, append([]string{"serve"}, tc.args...)...)
			if code != 2 {
				t.Errorf("exit status %d, want 2; stderr:\n%s", code, stderr)
			}
			named := false
			for _, n := range tc.names {
				named = named || strings.Contains(stderr, n)
			}
			if !named {
				t.Errorf("stderr names none of %v:\n%s", tc.names, stderr)
			}
		})
	}

	t.Run("help", func(t *testing.T) {
		t.Parallel()
		code, stdout, stderr := runCorral(t, nil, "serve", "--help")
		if code != 0 {
			t.Errorf("corral serve --help: exit status %d, want 0", code)
		}
		help := stdout + stderr
		// The documented variables and their defaults, written down here
		// rather than read from the code under test...
		want := map[string]string{
			"STREAM_MANAGER_HOST":                     "127.0.0.1",
			"STREAM_MANAGER_PORT":                     "7070",
			"STREAM_MANAGER_SOCKET_TIMEOUT":           "5s",
			"STREAM_MANAGER_QUEUE_TIMEOUT":            "10s",
			"STREAM_MANAGER_HEALTH_CHECK_TIMEOUT":     "5s",
			"STREAM_MANAGER_MAX_HEALTH_FAILURES":      "3",
			"STREAM_MANAGER_PROCESS_JOIN_TIMEOUT":     "30s",
			"STREAM_MANAGER_TERMINATION_GRACE_PERIOD": "5s",
			"STREAM_API_PRELOADED_PROCESSES":          "0",
			"STREAM_MANAGER_MAX_RAM_MB":               "0",
			"STREAM_MANAGER_WORKER_RAM_MB":            "32",
			"STREAM_MANAGER_MAX_WORKER_FRAME_BYTES":   "67108864",
			"STREAM_MANAGER_HEALTH_CHECK_INTERVAL":    "2s",
			"STREAM_MANAGER_PROBE_TIMEOUT_FLOOR":      "250ms",
			"STREAM_MANAGER_COMMAND_TIMEOUT_FLOOR":    "1s",
			"STREAM_MANAGER_MAX_FRAME_BYTES":          "16777216",
			"STREAM_MANAGER_MAX_CONNECTIONS":          "1024",
			"STREAM_MANAGER_CHAOS":                    "false",
		}
		// ...plus any setting added since, with the default the code has.
		for _, s := range manager.Settings() {
			if _, ok := want[s.Env]; !ok {
				want[s.Env] = s.Default(manager.DefaultConfig())
			}
		}
		for env, def := range want {
			line := regexp.MustCompile(`(?m)^.*\b` + env + `\b.*$`).FindString(help)
			switch {
			case line == "":
				t.Errorf("--help does not mention %s", env)
			case !regexp.MustCompile(`\bdefault:? ` + regexp.QuoteMeta(def) + `\b`).MatchString(line):
				t.Errorf("--help line of %s does not give its default %q: %q", env, def, line)
			}
		}
		if t.Failed() {
			t.Logf("help:\n%s", help)
		}
	})
}

// TestClientCLI drives one pipeline through its life with `corral client`.
func TestClientCLI(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	addr := []string{"--addr", s.Addr}

	// client runs `corral client args... --addr` and decodes its envelope.
	client := func(t *testing.T, wantCode int, args ...string) envelope {
		t.Helper()
		code, stdout, stderr := runCorral(t, nil, append(append([]string{"client"}, args...), addr...)...)
		if code != wantCode {
			t.Fatalf("corral client %v: exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", args, code, wantCode, stdout, stderr)
		}
		env, err := decodeEnvelope([]byte(stdout))
		if err != nil {
			t.Fatalf("corral client %v: stdout is not an envelope: %v", args, err)
		}
		return env
	}

	var id string
	steps := []struct {
		name string
		args func() []string
		want func(t *testing.T, env envelope)
	}{
		{"init", func() []string { return []string{"init", "--video", "synthetic://160x120"} },
			func(t *testing.T, env envelope) { id = wantSomeID(t, env) }},
		{"list", func() []string { return []string{"list"} }, func(t *testing.T, env envelope) {
			if ids := stringsOf(env.Response["pipelines"]); len(ids) != 1 || ids[0] != id {
				t.Errorf("pipelines = %v, want [%s]", ids, id)
			}
		}},
		{"status", func() []string { return []string{"status", id} }, func(t *testing.T, env envelope) {
			if _, ok := env.Response["report"].(map[string]any); !ok {
				t.Errorf("no report: %v", env.Response)
			}
		}},
		{"consume", func() []string { return []string{"consume", id, "--exclude", "image"} }, checkConsume},
		{"pause", func() []string { return []string{"pause", id} }, func(t *testing.T, env envelope) { wantID(t, env, id) }},
		{"resume", func() []string { return []string{"resume", id} }, func(t *testing.T, env envelope) { wantID(t, env, id) }},
		{"inspect", func() []string { return []string{"inspect"} }, func(t *testing.T, env envelope) { checkInspect(t, env, id) }},
		{"terminate", func() []string { return []string{"terminate", id} }, func(t *testing.T, env envelope) { wantID(t, env, id) }},
		{"list after terminate", func() []string { return []string{"list"} }, func(t *testing.T, env envelope) {
			if ids := stringsOf(env.Response["pipelines"]); len(ids) != 0 {
				t.Errorf("pipelines = %v after terminate, want none", ids)
			}
		}},
	}
	for _, st := range steps {
		if !t.Run(st.name, func(t *testing.T) {
			env := client(t, 0, st.args()...)
			if env.status() != "success" {
				t.Fatalf("response = %v", env.Response)
			}
			st.want(t, env)
		}) {
			t.FailNow()
		}
	}

	t.Run("status of an unknown id", func(t *testing.T) {
		env := client(t, 1, "status", "nope")
		if env.errorType() != "not_found" {
			t.Errorf("error_type = %q, want not_found", env.errorType())
		}
	})
	t.Run("no command", func(t *testing.T) {
		if code, _, stderr := runCorral(t, nil, "client"); code != 2 {
			t.Errorf("corral client: exit status %d, want 2\nstderr:\n%s", code, stderr)
		}
	})
	t.Run("unreachable manager", func(t *testing.T) {
		// A closed port on loopback: the dial is refused at once.
		code, _, stderr := runCorral(t, nil, "client", "list", "--addr", "127.0.0.1:1", "--timeout", "2s")
		if code != 1 {
			t.Errorf("corral client list against a closed port: exit status %d, want 1\nstderr:\n%s", code, stderr)
		}
	})
}
