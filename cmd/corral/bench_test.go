package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestBenchQuickJSON runs `corral bench --json --quick` (children and
// workers are this test binary) and checks the object: every key present
// and every value sane (positive, ratios finite). It judges no target:
// timing goals are for the full bench, not for a loaded test machine.
func TestBenchQuickJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every bench measurement once (about a minute under -race)")
	}
	t.Setenv("GORACE", "atexit_sleep_ms=0") // race-enabled children exit at once
	var stdout, stderr bytes.Buffer
	code := benchWith([]string{"--json", "--quick", "--cell", "200ms"}, &stdout, &stderr, func(args ...string) *exec.Cmd {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), envArgs+"="+strings.Join(args, "\n"))
		return cmd
	})
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
	var got map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, stdout.String())
	}
	positive := []string{"otel_overhead_ratio", "otel_noop_overhead_ratio", "crash_detect_ms_p50",
		"hang_detect_s", "hang_bound_s", "init_cold_ms_p50", "init_warm_ms_p50", "manager_rss_mb",
		"worker_rss_mb", "status_64_over_1_ratio", "cell_s"}
	for _, k := range positive {
		v, ok := got[k].(float64)
		if !ok || !(v > 0) || math.IsInf(v, 0) {
			t.Errorf("%s = %v, want a finite positive number", k, got[k])
		}
	}
	if v, ok := got["probe_cpu_pct"].(float64); !ok || v < 0 || v > 200 {
		t.Errorf("probe_cpu_pct = %v, want 0..200 (percent of one core, 2 cores at most)", got["probe_cpu_pct"])
	}
	shutdown, _ := got["shutdown_s"].(map[string]any)
	for _, n := range []string{"1", "16", "64"} {
		// Workers ignore SIGTERM: the grace period (1 s) always runs out.
		if v, ok := shutdown[n].(float64); !ok || v < 0.9 || v > 30 {
			t.Errorf("shutdown_s[%s] = %v, want 0.9..30 s", n, shutdown[n])
		}
	}
	m, _ := got["machine"].(map[string]any)
	if c, _ := m["cores"].(float64); c < 1 || m["go"] == "" {
		t.Errorf("machine = %v, want cores and Go version", m)
	}
	if s, _ := got["commit"].(string); s == "" {
		t.Error("commit is empty")
	}
	floor, _ := got["floor"].(map[string]any)
	if v, _ := floor["pipe_rtt_us"].(float64); !(v > 0) {
		t.Errorf("floor.pipe_rtt_us = %v", floor["pipe_rtt_us"])
	}
	checkCells(t, "floor.cells", floor["cells"], 6, false)
	checkCells(t, "list", got["list"], 6, true)
	checkCells(t, "status", got["status"], 6, true)
	if ts, _ := got["targets"].([]any); len(ts) < 10 {
		t.Errorf("targets = %v, want each goal of issue 13", got["targets"])
	}
}

// checkCells checks n load cells: each answered with no error, positive
// rates and latencies, and (ratios) finite positive ratios to the floor.
func checkCells(t *testing.T, name string, v any, n int, ratios bool) {
	t.Helper()
	cells, _ := v.([]any)
	if len(cells) != n {
		t.Errorf("%s: %d cells, want %d", name, len(cells), n)
		return
	}
	for i, c := range cells {
		cell, _ := c.(map[string]any)
		keys := []string{"ops_per_s", "p50_us", "p99_us", "ops"}
		if ratios {
			keys = append(keys, "p50_ratio", "ops_ratio")
		}
		for _, k := range keys {
			if x, ok := cell[k].(float64); !ok || !(x > 0) || math.IsInf(x, 0) {
				t.Errorf("%s[%d].%s = %v, want a finite positive number (cell %v)", name, i, k, cell[k], cell)
			}
		}
		if e, _ := cell["errors"].(float64); e != 0 {
			t.Errorf("%s[%d]: %v errors, first: %v", name, i, e, cell["first_error"])
		}
	}
}

func TestBenchUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--cell", "-1s"}, "--cell -1s is invalid"},
		{[]string{"bench", "--mode", "bogus"}, `--mode "bogus" is invalid`},
		{[]string{"bench", "extra"}, `unexpected argument "extra"`},
		{[]string{"bench", "--bogus"}, "flag provided but not defined: -bogus"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr); code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tc.want)
			}
		})
	}
}
