package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/worker"
	"github.com/corral-dev/corral/tests/foreign"
)

// Issue 10: one conformance check per way a user of upstream's client
// tripped over Corral, run by testdata/upstream_conformance.py, which parses
// as that client does (strict timestamps, floats, exception classes).

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// runConformance runs one check of upstream_conformance.py against addr.
func runConformance(t *testing.T, python, addr, check string, args ...string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, append([]string{"testdata/upstream_conformance.py", host, port, check}, args...)...)
	cmd.WaitDelay = time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var line struct {
		OK    bool     `json:"ok"`
		Error string   `json:"error"`
		Notes []string `json:"notes"`
	}
	if jerr := json.Unmarshal(bytes.TrimSpace(out), &line); jerr != nil {
		t.Fatalf("check %s: %v (exit %v)\nstdout:\n%s\nstderr:\n%s", check, jerr, err, out, &stderr)
	}
	for _, n := range line.Notes {
		t.Logf("%s: %s", check, n)
	}
	if !line.OK || err != nil {
		t.Fatalf("check %s failed: %s (exit %v)\nstderr:\n%s", check, line.Error, err, &stderr)
	}
}

func TestUpstreamFidelity(t *testing.T) {
	t.Parallel()
	python := foreign.Python(t) // skips without python3, fails under CI
	// A short health interval removes ended pipelines quickly; the frame
	// limit is small so the oversized check stays cheap.
	s := startServer(t, []string{"STREAM_MANAGER_HEALTH_CHECK_INTERVAL=100ms", "STREAM_MANAGER_MAX_FRAME_BYTES=4096"})
	clip := filepath.Join(t.TempDir(), "clip.y4m")
	f, err := os.Create(clip)
	if err != nil {
		t.Fatal(err)
	}
	if err := worker.WriteY4M(f, 32, 24, 12, 50); err != nil {
		t.Fatal(err)
	}
	f.Close()

	// Why, bullet 1: URLs, device ids, other containers and lists.
	t.Run("sources", func(t *testing.T) {
		runConformance(t, python, s.Addr, "sources", strconv.Itoa(closedPort(t)))
	})
	// Bullet 2: mute and resume refused outside their states.
	t.Run("state_rules", func(t *testing.T) { runConformance(t, python, s.Addr, "state_rules") })
	// Bullet 3: an ended pipeline leaves list_pipelines.
	t.Run("lifecycle", func(t *testing.T) { runConformance(t, python, s.Addr, "lifecycle", clip) })
	// Bullet 4: keys, floats, nulls and naive timestamps.
	t.Run("report_shapes", func(t *testing.T) { runConformance(t, python, s.Addr, "report_shapes") })
	// Bullet 5: the results sink keeps the newest results.
	t.Run("buffer_semantics", func(t *testing.T) { runConformance(t, python, s.Addr, "buffer_semantics") })
	// Bullet 6: an oversized request gets an answer, not a reset.
	t.Run("oversized", func(t *testing.T) { runConformance(t, python, s.Addr, "oversized", "4096") })
}
