package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/corral-dev/corral/tests/foreign"
)

// TestUpstreamClient runs testdata/upstream_client.py, an emulation of the
// upstream Python client's socket code, through a whole pipeline life.
func TestUpstreamClient(t *testing.T) {
	t.Parallel()
	python := foreign.Python(t) // skips without python3, fails under CI
	s := startServer(t, nil)
	host, port, _ := net.SplitHostPort(s.Addr)

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "testdata/upstream_client.py", host, port)
	cmd.WaitDelay = time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Errorf("upstream_client.py: %v\nstdout:\n%s\nstderr:\n%s", err, out, &stderr)
	}

	var seen []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var line struct {
			Step    string  `json:"step"`
			OK      bool    `json:"ok"`
			Error   string  `json:"error"`
			Seconds float64 `json:"seconds"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Errorf("not a JSON step line: %q", sc.Text())
			continue
		}
		seen = append(seen, line.Step)
		if !line.OK {
			t.Errorf("step %s failed: %s", line.Step, line.Error)
		} else {
			t.Logf("step %-9s ok in %.4fs", line.Step, line.Seconds)
		}
	}
	want := []string{"list", "init", "status", "consume", "pause", "resume", "terminate"}
	if !slices.Equal(seen, want) {
		t.Errorf("steps run = %v, want %v", seen, want)
	}
}
