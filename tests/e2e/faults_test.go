package e2e

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
)

// TestHungWorker stops one worker with SIGSTOP: a status on it must end in
// operation_error within the queue timeout, and a status on a healthy
// pipeline must not wait behind it.
func TestHungWorker(t *testing.T) {
	t.Parallel()
	s := startServer(t, []string{"STREAM_MANAGER_QUEUE_TIMEOUT=1", "STREAM_MANAGER_HEALTH_CHECK_INTERVAL=60"})
	stoppedID := s.initPipeline(t, "synthetic://160x120")
	healthyID := s.initPipeline(t, "synthetic://160x120")
	stopped := s.workers(t)[stoppedID]
	stopProcess(t, stopped.Pid)

	// The stopped pipeline's request is written first and read last, so
	// it is pending for the whole of the healthy one's.
	conn := dial(t, s.Addr, requestTimeout)
	defer conn.Close()
	stoppedStart := time.Now()
	if _, err := conn.Write(frame([]byte(`{"type":"status","pipeline_id":"` + stoppedID + `"}`))); err != nil {
		t.Fatalf("write: %v", err)
	}

	healthyStart := time.Now()
	healthy := rawJSON(t, s.Addr, map[string]any{"type": "status", "pipeline_id": healthyID})
	healthyTook := time.Since(healthyStart)

	env, err := readEnvelope(conn)
	stoppedTook := time.Since(stoppedStart)
	if err != nil {
		t.Fatalf("status on the stopped worker: %v", err)
	}
	t.Logf("status on the healthy pipeline: %v (spec 250ms); on the stopped one: %v (queue timeout 1s)", healthyTook, stoppedTook)

	if healthy.status() != "success" {
		t.Errorf("status on the healthy pipeline = %v, want success", healthy.Response)
	}
	if healthyTook >= time.Second {
		t.Errorf("status on the healthy pipeline took %v while another worker hung, want < 1s", healthyTook)
	}
	if env.status() != "failure" || env.errorType() != "operation_error" {
		t.Errorf("status on the stopped worker = %v, want operation_error", env.Response)
	}
	if stoppedTook > 2500*time.Millisecond {
		t.Errorf("status on the stopped worker took %v, want <= 2.5s", stoppedTook)
	}

	// Resumed, the worker answers the status that timed out. That answer
	// is stale: the next caller, a consume, must get its own answer.
	if err := syscall.Kill(stopped.Pid, syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT worker %d: %v", stopped.Pid, err)
	}
	consume := rawJSON(t, s.Addr, map[string]any{"type": "consume_result", "pipeline_id": stoppedID, "excluded_fields": []string{}})
	if consume.status() != "success" {
		t.Fatalf("consume after SIGCONT = %v, want success", consume.Response)
	}
	if _, ok := consume.Response["report"]; ok {
		t.Errorf("consume after SIGCONT received the stale status answer: %v", consume.Response)
	}
	checkConsume(t, consume)
}

// TestCommandDuringTerminate checks the upstream error row for a command
// to a pipeline that is being terminated.
func TestCommandDuringTerminate(t *testing.T) {
	t.Parallel()
	s := startServer(t, []string{"STREAM_MANAGER_CHAOS=true", "STREAM_MANAGER_TERMINATION_GRACE_PERIOD=2"})
	id := s.initPipeline(t, "synthetic://160x120")
	// A worker that ignores SIGTERM keeps the pipeline terminating for
	// the whole grace period.
	if err := s.client().Chaos(t.Context(), id, "ignore_sigterm", nil); err != nil {
		t.Fatalf("chaos ignore_sigterm: %v", err)
	}
	conn := dial(t, s.Addr, requestTimeout)
	defer conn.Close()
	start := time.Now()
	if _, err := conn.Write(frame([]byte(`{"type":"terminate","pipeline_id":"` + id + `"}`))); err != nil {
		t.Fatalf("write terminate: %v", err)
	}
	// Inspect is the signal that terminate has begun.
	terminating, _ := pollUntil(2*time.Second, func() bool { return s.workers(t)[id].State == "terminating" })
	if !terminating {
		t.Fatalf("pipeline never reported state terminating: %v", s.workers(t)[id])
	}
	want := "Pipeline " + id + " is being terminated."
	for _, typ := range []string{"status", "mute", "resume", "consume_result"} {
		env := rawJSON(t, s.Addr, map[string]any{"type": typ, "pipeline_id": id})
		if env.errorType() != "operation_error" || env.Response["public_error_message"] != want {
			t.Errorf("%s during terminate = %v, want operation_error %q", typ, env.Response, want)
		}
	}
	env, err := readEnvelope(conn)
	took := time.Since(start)
	t.Logf("terminate of a worker ignoring SIGTERM took %v (grace 2s)", took)
	if err != nil || env.status() != "success" {
		t.Errorf("terminate = %v, %v; want success", env.Response, err)
	}
	if env := rawJSON(t, s.Addr, map[string]any{"type": "status", "pipeline_id": id}); env.errorType() != "not_found" {
		t.Errorf("status after terminate = %v, want not_found", env.Response)
	}
}

// TestShutdown checks that SIGTERM stops the server within its bounds and
// that nothing of its workers survives.
func TestShutdown(t *testing.T) {
	t.Parallel()
	chaosEnv := []string{"STREAM_MANAGER_CHAOS=true", "STREAM_MANAGER_TERMINATION_GRACE_PERIOD=1", "STREAM_MANAGER_PROCESS_JOIN_TIMEOUT=2"}

	t.Run("bounded with stubborn workers", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, chaosEnv)
		c := s.client()
		ids := make([]string, 8)
		for i := range ids {
			ids[i] = s.initPipeline(t, "synthetic://160x120")
		}
		for i, fault := range []string{"ignore_sigterm", "ignore_sigterm", "ignore_sigterm", "ignore_sigterm", "spawn_grandchild"} {
			if err := c.Chaos(t.Context(), ids[i], fault, nil); err != nil {
				t.Fatalf("chaos %s on %s: %v", fault, ids[i], err)
			}
		}
		workers := s.workers(t)
		pgids := map[int]bool{}
		for _, id := range ids {
			w, ok := workers[id]
			if !ok {
				t.Fatalf("inspect lacks pipeline %s", id)
			}
			pgids[w.Pgid] = true
		}
		marker := markerOf(t, workers[ids[0]].Pid)
		if census, err := launch.Census(marker); err != nil || len(census) < len(ids)+1 {
			t.Fatalf("census before shutdown: %d processes (%v), want >= %d workers + 1 grandchild", len(census), err, len(ids))
		}

		start := time.Now()
		s.signal(t, syscall.SIGTERM)
		code, ok := s.waitExit(10 * time.Second)
		took := time.Since(start)
		t.Logf("SIGTERM to exit: %v (grace 1s, join 2s, bound 4s)", took)
		switch {
		case !ok:
			t.Fatalf("server still running %v after SIGTERM", took)
		case code != 0:
			t.Errorf("server exit status %d, want 0", code)
		}
		if took > 4*time.Second {
			t.Errorf("shutdown took %v, want <= 4s", took)
		}

		// The server reaped what it could; orphans it missed are found by
		// polling /proc, the only place that knows.
		var left []procStat
		gone, waited := pollUntil(time.Second, func() bool {
			left = groupMembers(pgids)
			return len(left) == 0
		})
		if !gone {
			t.Errorf("%v after exit, worker groups still hold %v", waited, left)
		}
		var survivors []launch.ProcInfo
		clean, waited := pollUntil(time.Second, func() bool {
			survivors, _ = launch.Census(marker)
			return len(survivors) == 0
		})
		if !clean {
			t.Errorf("%v after exit, processes carrying the manager's marker survive: %v", waited, survivors)
		}
	})

	t.Run("stopped worker with a request in flight", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, append([]string{"STREAM_MANAGER_QUEUE_TIMEOUT=10"}, chaosEnv...))
		id := s.initPipeline(t, "synthetic://160x120")
		w := s.workers(t)[id]
		stopProcess(t, w.Pid)
		conn := dial(t, s.Addr, requestTimeout)
		defer conn.Close()
		if _, err := conn.Write(frame([]byte(`{"type":"status","pipeline_id":"` + id + `"}`))); err != nil {
			t.Fatalf("write: %v", err)
		}
		// The server accepts in order, so once a later connection is
		// answered the status's connection was accepted before the signal.
		rawJSON(t, s.Addr, map[string]any{"type": "list_pipelines"})
		start := time.Now()
		s.signal(t, syscall.SIGTERM)
		code, ok := s.waitExit(10 * time.Second)
		took := time.Since(start)
		t.Logf("SIGTERM to exit with a stopped worker and a request in flight: %v", took)
		switch {
		case !ok:
			t.Fatalf("server still running %v after SIGTERM", took)
		case code != 0:
			t.Errorf("server exit status %d, want 0", code)
		case took > 4*time.Second:
			t.Errorf("shutdown took %v, want <= 4s", took)
		}
		env, err := readEnvelope(conn)
		switch {
		case err != nil:
			t.Errorf("the in-flight status got no answer: %v", err)
		case env.status() == "success":
			t.Errorf("the in-flight status to a stopped worker succeeded: %v", env.Response)
		default:
			t.Logf("the in-flight status was answered %s: %v", env.errorType(), env.Response["error_message"])
		}
	})

	t.Run("second signal skips the grace period", func(t *testing.T) {
		t.Parallel()
		// A grace period long enough that skipping it is unmistakable.
		s := startServer(t, []string{"STREAM_MANAGER_CHAOS=true", "STREAM_MANAGER_TERMINATION_GRACE_PERIOD=10", "STREAM_MANAGER_PROCESS_JOIN_TIMEOUT=2"})
		c := s.client()
		for range 2 {
			id := s.initPipeline(t, "synthetic://160x120")
			if err := c.Chaos(t.Context(), id, "ignore_sigterm", nil); err != nil {
				t.Fatalf("chaos ignore_sigterm: %v", err)
			}
		}
		start := time.Now()
		s.signal(t, syscall.SIGTERM)
		// The server logs each shutdown phase; the terminate phase is the
		// grace period. Its log line is the only signal that it began.
		inGrace, _ := pollUntil(5*time.Second, func() bool {
			return strings.Contains(s.stderr.String(), "name=terminate done=false")
		})
		if !inGrace {
			t.Fatalf("no terminate phase logged within 5s of SIGTERM")
		}
		s.signal(t, syscall.SIGTERM)
		code, ok := s.waitExit(15 * time.Second)
		took := time.Since(start)
		t.Logf("SIGTERM, SIGTERM to exit: %v (grace 10s)", took)
		if !ok {
			t.Fatalf("server still running %v after two SIGTERMs", took)
		}
		if took >= 10*time.Second {
			t.Errorf("exit took %v, not sooner than the 10s grace period", took)
		}
		t.Logf("exit status after a second signal: %d", code)
	})
}

// TestManagerKilled SIGKILLs the server: its workers must die with it.
func TestManagerKilled(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	for range 3 {
		s.initPipeline(t, "synthetic://160x120")
	}
	var pids []int
	for _, w := range s.workers(t) {
		pids = append(pids, w.Pid)
	}
	s.signal(t, syscall.SIGKILL)
	if _, ok := s.waitExit(5 * time.Second); !ok {
		t.Fatalf("SIGKILLed server not reaped within 5s")
	}
	var alive []procStat
	gone, took := pollUntil(time.Second, func() bool {
		alive = alive[:0]
		for _, pid := range pids {
			st, err := readProcStat(pid)
			if err != nil {
				continue // gone
			}
			// A zombie whose parent is not this test is no worker of ours
			// left running: it only waits for its new parent to reap it.
			if st.State == "Z" && st.PPid != os.Getpid() {
				continue
			}
			alive = append(alive, st)
		}
		return len(alive) == 0
	})
	t.Logf("workers %v gone %v after the manager was SIGKILLed", pids, took)
	if !gone {
		t.Errorf("workers still alive 1s after the manager was SIGKILLed: %+v", alive)
	}
}

// stopProcess SIGSTOPs pid and waits until every thread of it has
// stopped: kill returns when the signal is queued, and a thread running on
// another CPU may answer one more request before it stops. SIGCONT is sent
// at cleanup.
func stopProcess(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %d: %v", pid, err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	stopped, took := pollUntil(2*time.Second, func() bool {
		tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
		if err != nil || len(tasks) == 0 {
			return false
		}
		for _, task := range tasks {
			b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + task.Name() + "/stat")
			i := strings.LastIndexByte(string(b), ')')
			if err != nil || i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
				return false
			}
		}
		return true
	})
	if !stopped {
		t.Fatalf("process %d not stopped %v after SIGSTOP", pid, took)
	}
}

// markerOf reads the launcher marker from a worker's environment.
func markerOf(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		t.Fatalf("read environ of worker %d: %v", pid, err)
	}
	for kv := range strings.SplitSeq(string(b), "\x00") {
		if v, ok := strings.CutPrefix(kv, protocol.EnvManagerMarker+"="); ok && v != "" {
			return v
		}
	}
	t.Fatalf("worker %d has no %s in its environment", pid, protocol.EnvManagerMarker)
	return ""
}
