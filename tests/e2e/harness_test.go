package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A short scenario file: two pipelines, a crash, a SIGSTOP hang healed
// before the hang bound, a stale-response fault, a bad client, and a
// graceful SIGTERM at the end.
const shortScenario = `name: short
seed: 5
duration: 8s
warm_up: 2s
heal: 1s
quiesce: 1s
pipelines: 2
clients: 2
rate: 4
schedule:
  - {at: 1s, fault: crash, target: 1}
  - {at: 2s, fault: hang_process, target: 2, for: 2s}
  - {at: 5s, fault: stale_responses, target: 1}
  - {at: 6s, fault: malformed_frame}
manager:
  STREAM_MANAGER_HEALTH_CHECK_INTERVAL: "0.5"
  STREAM_MANAGER_HEALTH_CHECK_TIMEOUT: "1"
  STREAM_MANAGER_QUEUE_TIMEOUT: "2"
  STREAM_MANAGER_TERMINATION_GRACE_PERIOD: "1"
  STREAM_MANAGER_PROCESS_JOIN_TIMEOUT: "3"
`

type runReport struct {
	Valid   bool `json:"valid"`
	Seed    int64
	Results []struct{ Checker, Verdict, Summary string }
}

// corralRun runs `corral run args...` and returns its exit code, output
// and parsed report.json from the run folder.
func corralRun(t *testing.T, dir string, args ...string) (int, string, runReport) {
	t.Helper()
	cmd := exec.Command(corralBin, append([]string{"run"}, append(args, "--out", dir)...)...)
	cmd.Env = append(cleanEnv(), "GORACE=atexit_sleep_ms=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("corral run did not finish in 2 minutes\n%s", out.String())
	}
	var rep runReport
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatalf("report.json: %v\n%s", err, out.String())
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), rep
}

func checkerNames(r runReport) []string {
	var out []string
	for _, c := range r.Results {
		out = append(out, c.Checker)
	}
	return out
}

// The harness drives a separately started `corral serve --chaos` through
// --target and --target-pid and judges it with the same checkers as an
// embedded run; replaying the run folder plans a byte-equal schedule.
func TestHarnessAgainstTargetAndReplay(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "short.yaml")
	if err := os.WriteFile(file, []byte(shortScenario), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"STREAM_MANAGER_HEALTH_CHECK_INTERVAL=0.5", "STREAM_MANAGER_HEALTH_CHECK_TIMEOUT=1",
		"STREAM_MANAGER_QUEUE_TIMEOUT=2", "STREAM_MANAGER_TERMINATION_GRACE_PERIOD=1",
		"STREAM_MANAGER_PROCESS_JOIN_TIMEOUT=3", "GORACE=atexit_sleep_ms=0"}
	srv := startServer(t, env, "--chaos")

	external := filepath.Join(dir, "external")
	code, out, ext := corralRun(t, external, file, "--target", srv.Addr, "--target-pid", strconv.Itoa(srv.Pid))
	if code != 0 || !ext.Valid {
		t.Fatalf("run against --target: exit %d, report %+v\n%s", code, ext.Results, out)
	}
	if exit, ok := srv.waitExit(10 * time.Second); !ok || exit != 0 {
		t.Fatalf("the harness's SIGTERM did not end the server cleanly: exit %d, exited %v", exit, ok)
	}

	embedded := filepath.Join(dir, "embedded")
	code, out, emb := corralRun(t, embedded, file)
	if code != 0 || !emb.Valid {
		t.Fatalf("embedded run: exit %d, report %+v\n%s", code, emb.Results, out)
	}
	if a, b := checkerNames(ext), checkerNames(emb); !slices.Equal(a, b) || len(a) == 0 {
		t.Fatalf("checkers differ: --target %v, embedded %v", a, b)
	}

	// Replay plans the same schedule from the folder alone.
	replayDir := filepath.Join(dir, "replayed")
	cmd := exec.Command(corralBin, "replay", embedded, "--out", replayDir)
	cmd.Env = append(cleanEnv(), "GORACE=atexit_sleep_ms=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("replay: %v\n%s", err, b)
	}
	first, _ := os.ReadFile(filepath.Join(embedded, "schedule.jsonl"))
	again, _ := os.ReadFile(filepath.Join(replayDir, "schedule.jsonl"))
	if len(first) == 0 || !bytes.Equal(first, again) {
		t.Fatalf("replayed schedule differs (%d vs %d bytes)", len(first), len(again))
	}
	if !strings.Contains(out, "corral run") {
		t.Errorf("summary lacks the replay command:\n%s", out)
	}
}
