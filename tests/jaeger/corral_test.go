package jaeger_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildCorral builds the corral binary into a temporary directory.
func buildCorral(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "corral")
	ctx, cancel := context.WithTimeout(t.Context(), corralBuildTimeout)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/corral-dev/corral/cmd/corral")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build corral: %v\n%s", err, out)
	}
	return bin
}

// serve is one `corral serve` process.
type serve struct {
	*process
	addr string
}

var listenRE = regexp.MustCompile(`corral serve: listening on (127\.0\.0\.1:\d+) \(pid (\d+)\)`)

// startServe starts `corral serve` on a free loopback port with extraEnv
// and waits for its "listening on" line.
func startServe(t *testing.T, bin string, extraEnv []string) *serve {
	t.Helper()
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	tag := hex.EncodeToString(nonce[:])
	env := append(cleanEnv(), "STREAM_MANAGER_HOST=127.0.0.1", "STREAM_MANAGER_PORT=0", tagEnv+"="+tag)
	env = append(env, extraEnv...)
	// Registered first, so it runs after serve's own cleanup: a live serve
	// could replace the workers this kills.
	t.Cleanup(func() { killTagged(t, tag) })
	p := startProcess(t, "corral serve", filepath.Join(t.TempDir(), "serve.log"), tail, env, bin, "serve")
	deadline := time.Now().Add(serveStartTimeout)
	for {
		out, _ := os.ReadFile(p.stdoutPath)
		if m := listenRE.FindSubmatch(out); m != nil {
			if pid, _ := strconv.Atoi(string(m[2])); pid != p.pid {
				t.Fatalf("corral serve says pid %d, started pid %d", pid, p.pid)
			}
			return &serve{process: p, addr: string(m[1])}
		}
		select {
		case <-p.done:
			t.Fatalf("corral serve exited before listening: %v\n%s", p.waitErr, tail(p.logPath))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("corral serve did not print its address within %v\n%s", serveStartTimeout, tail(p.logPath))
		}
	}
}

// stop sends SIGTERM and waits, bounded, for a clean exit.
func (s *serve) stop(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(s.pid, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM corral serve: %v", err)
	}
	select {
	case <-s.done:
		if s.waitErr != nil {
			t.Errorf("corral serve after SIGTERM: %v\n%s", s.waitErr, tail(s.logPath))
		}
	case <-time.After(serveStopTimeout):
		t.Fatalf("corral serve did not exit within %v of SIGTERM\n%s", serveStopTimeout, tail(s.logPath))
	}
}

// envelope is the part of a response envelope the test reads.
type envelope struct {
	PipelineID string `json:"pipeline_id"`
	Response   struct {
		Status string `json:"status"`
	} `json:"response"`
}

// runClient runs `corral client args... --addr addr` with extraEnv. With
// mustSucceed, a failure response fails the test; a transport error or a
// usage error always does.
func runClient(t *testing.T, bin, addr string, extraEnv []string, mustSucceed bool, args ...string) envelope {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), clientTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, append(append([]string{"client"}, args...), "--addr", addr)...)
	cmd.Env = append(cleanEnv(), extraEnv...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = stopTimeout
	err := cmd.Run()
	var env envelope
	if jerr := json.Unmarshal(stdout.Bytes(), &env); jerr != nil {
		t.Fatalf("corral client %s: %v; no response envelope (%v)\nstdout:\n%s\nstderr:\n%s",
			strings.Join(args, " "), err, jerr, &stdout, &stderr)
	}
	if err != nil && mustSucceed {
		t.Fatalf("corral client %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, &stdout, &stderr)
	}
	return env
}
