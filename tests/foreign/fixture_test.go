package foreign

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// bound is every wait of these tests that must come true: generous, the
// machine is shared.
const bound = 15 * time.Second

// upstreamInit is upstream's full init payload (the shape its model
// requires), on a 50 fps synthetic source with an 8-entry results buffer.
func upstreamInit() protocol.InitConfig {
	fps := 50.0
	return protocol.InitConfig{
		VideoConfiguration: protocol.VideoConfiguration{Type: "VideoConfiguration", VideoReference: "synthetic://64x48", MaxFPS: &fps},
		ProcessingConfiguration: map[string]any{"type": "WorkflowConfiguration",
			"workflow_specification": map[string]any{"version": "1.0", "inputs": []any{}, "steps": []any{}, "outputs": []any{}}},
		SinkConfiguration: protocol.SinkConfiguration{Type: "MemorySinkConfiguration", ResultsBufferSize: 8},
	}
}

func client(f *Fixture, timeout time.Duration) *protocol.Client {
	return &protocol.Client{Addr: f.Addr, Timeout: timeout}
}

// wantError asserts err is a failure response of type typ.
func wantError(t *testing.T, what string, err error, typ string) *protocol.Error {
	t.Helper()
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Type != typ {
		t.Errorf("%s: got %v, want a %s failure", what, err, typ)
		return &protocol.Error{}
	}
	return pe
}

func initPipeline(t *testing.T, f *Fixture) (id string, pid int) {
	t.Helper()
	id, err := client(f, bound).Init(t.Context(), upstreamInit())
	if err != nil || id == "" {
		t.Fatalf("init: id %q, %v", id, err)
	}
	workers, err := f.Workers()
	if err != nil || workers[id] == 0 {
		t.Fatalf("pid log names no worker for %s (%v): %v", id, err, workers)
	}
	return id, workers[id]
}

func listed(t *testing.T, f *Fixture, id string) bool {
	t.Helper()
	ids, err := client(f, bound).List(t.Context())
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	return slices.Contains(ids, id)
}

// eventually polls cond (a fact only the fixture's answers or /proc can
// tell, no event to wait on) until it holds or bound passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, bound)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func alive(f *Fixture, pid int) bool { return slices.Contains(f.Members(), pid) }

// The fixture speaks the upstream protocol with upstream's answers: a whole
// pipeline life, the error types of bad requests, and its workers as
// children in its process group.
func TestFixtureSpeaksTheUpstreamProtocol(t *testing.T) {
	t.Parallel()
	f := Start(t, Options{})
	c := client(f, bound)
	ctx := t.Context()
	if ids, err := c.List(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("list on a fresh manager: %v, %v", ids, err)
	}
	id, pid := initPipeline(t, f)
	if st, err := launch.Stat(pid); err != nil || st.PPid != f.Pid || st.Pgid != f.Pid {
		t.Errorf("worker %d: %+v (%v); want a child of %d in its group", pid, st, err, f.Pid)
	}
	if !listed(t, f, id) {
		t.Errorf("list does not show %s", id)
	}

	state := func() string {
		t.Helper()
		resp, err := c.Status(ctx, id)
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		report, _ := resp.Fields["report"].(map[string]any)
		sources, _ := report["sources_metadata"].([]any)
		events, _ := report["video_source_status_updates"].([]any)
		if len(sources) != 1 || len(events) == 0 {
			t.Fatalf("status report without one source and events: %v", report)
		}
		src, _ := sources[0].(map[string]any)
		s, _ := src["state"].(string)
		return s
	}
	if s := state(); s != "RUNNING" {
		t.Errorf("state after init %q, want RUNNING", s)
	}

	var out protocol.Response
	eventually(t, "consume_result returns a result", func() bool {
		var err error
		out, err = c.Consume(ctx, id, "motion")
		if err != nil {
			t.Fatalf("consume: %v", err)
		}
		outputs, _ := out.Fields["outputs"].([]any)
		return len(outputs) > 0
	})
	outputs, _ := out.Fields["outputs"].([]any)
	meta, _ := out.Fields["frames_metadata"].([]any)
	first, _ := outputs[0].(map[string]any)
	frame, _ := meta[0].(map[string]any)
	if _, ok := first["motion"]; ok || first["brightness"] == nil {
		t.Errorf("output %v: want brightness and not the excluded motion", first)
	}
	if ts, _ := frame["frame_timestamp"].(string); len(ts) != len("2026-11-29T13:28:41.340322") || frame["frame_id"] == nil {
		t.Errorf("frames_metadata %v: want an ISO timestamp with microseconds and a frame id", frame)
	}

	wantError(t, "resume while running", c.Resume(ctx, id), protocol.ErrTypeOperation)
	if err := c.Pause(ctx, id); err != nil {
		t.Fatalf("mute: %v", err)
	}
	if s := state(); s != "MUTED" {
		t.Errorf("state after mute %q, want MUTED", s)
	}
	wantError(t, "mute while muted", c.Pause(ctx, id), protocol.ErrTypeOperation)
	if err := c.Resume(ctx, id); err != nil {
		t.Fatalf("resume: %v", err)
	}

	_, err := c.Status(ctx, "nope")
	if pe := wantError(t, "status of an unknown id", err, protocol.ErrTypeNotFound); pe.Public != "Could not find InferencePipeline with id=nope." {
		t.Errorf("public message %q", pe.Public)
	}
	wantError(t, "terminate of an unknown id", c.Terminate(ctx, "nope"), protocol.ErrTypeInvalidPayload)
	_, err = c.Inspect(ctx)
	wantError(t, "inspect", err, protocol.ErrTypeInvalidPayload)
	wantError(t, "chaos", c.Chaos(ctx, id, "crash", nil), protocol.ErrTypeInvalidPayload)
	_, err = c.Call(ctx, protocol.TypeStatus, "", nil)
	wantError(t, "status without pipeline_id", err, protocol.ErrTypeInvalidPayload)
	if env := rawRequest(t, f, []byte("this is not json")); env.Response.ErrorType != protocol.ErrTypeInvalidPayload || env.RequestID == "" {
		t.Errorf("a body that is not JSON: %+v, want invalid_payload with a request id", env)
	}

	if err := c.Terminate(ctx, id); err != nil {
		t.Fatalf("terminate: %v", err)
	}
	if listed(t, f, id) || alive(f, pid) {
		t.Errorf("after terminate: listed %v, worker %d alive %v", listed(t, f, id), pid, alive(f, pid))
	}
}

// rawRequest sends body in one frame and decodes the answer.
func rawRequest(t *testing.T, f *Fixture, body []byte) protocol.Envelope {
	t.Helper()
	conn, err := net.DialTimeout("tcp", f.Addr, bound)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(bound))
	if err := protocol.WriteFrame(conn, body); err != nil {
		t.Fatal(err)
	}
	frame, err := protocol.ReadFrame(conn, 0)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	var env protocol.Envelope
	if err := json.Unmarshal(frame, &env); err != nil {
		t.Fatalf("answer is not an envelope: %v", err)
	}
	return env
}

// The server is serial: while one client holds a connection half-sent,
// nobody else is answered.
func TestFixtureServesOneConnectionAtATime(t *testing.T) {
	t.Parallel()
	f := Start(t, Options{Args: []string{"--socket-timeout", "60"}})
	stall, err := net.DialTimeout("tcp", f.Addr, bound)
	if err != nil {
		t.Fatal(err)
	}
	defer stall.Close()
	if _, err := stall.Write([]byte{0, 0}); err != nil {
		t.Fatal(err)
	}
	// The stalled connection was accepted before this one (the manager
	// reads it): wait until a short request goes unanswered.
	if _, err := client(f, time.Second).List(t.Context()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("list while another client stalls: %v, want no answer (deadline exceeded)", err)
	}
	_ = stall.Close()
	if _, err := client(f, bound).List(t.Context()); err != nil {
		t.Fatalf("list after the stalled client left: %v", err)
	}
}

// A request that does not arrive within the socket timeout (here a header
// announcing 4 GiB) is answered invalid_payload, and the fixture does not
// allocate what the header announced.
func TestFixtureAnswersARequestThatNeverArrives(t *testing.T) {
	t.Parallel()
	f := Start(t, Options{Args: []string{"--socket-timeout", "0.5"}})
	conn, err := net.DialTimeout("tcp", f.Addr, bound)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(bound))
	if _, err := conn.Write([]byte{0xff, 0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	frame, err := protocol.ReadFrame(conn, 0)
	if err != nil {
		t.Fatalf("no answer to a request that never arrived: %v", err)
	}
	var env protocol.Envelope
	if err := json.Unmarshal(frame, &env); err != nil || env.Response.ErrorType != protocol.ErrTypeInvalidPayload {
		t.Errorf("answer %s (%v), want invalid_payload", frame, err)
	}
	if _, err := client(f, bound).List(t.Context()); err != nil {
		t.Errorf("list after the oversized header: %v", err)
	}
}

// A failed init leaves its worker listed (the phantom) unless fixed.
func TestFixturePhantom(t *testing.T) {
	t.Parallel()
	for _, fixed := range []bool{false, true} {
		t.Run(map[bool]string{false: "defect", true: "fixed"}[fixed], func(t *testing.T) {
			t.Parallel()
			opts := Options{}
			if fixed {
				opts.Fix = []string{DefectPhantom}
			}
			f := Start(t, opts)
			c := client(f, bound)
			// Corral's old payload: no processing_configuration, no type literals.
			resp, err := c.Call(t.Context(), protocol.TypeInit, "", map[string]any{
				"video_configuration": map[string]any{"video_reference": "synthetic://64x48"},
				"sink_configuration":  map[string]any{}})
			pe := wantError(t, "init without upstream's model", err, protocol.ErrTypeInvalidPayload)
			for _, part := range []string{"processing_configuration", "VideoConfiguration", "MemorySinkConfiguration"} {
				if !strings.Contains(pe.Message, part) {
					t.Errorf("error message %q does not name %s", pe.Message, part)
				}
			}
			id := resp.PipelineID
			workers, _ := f.Workers()
			pid := workers[id]
			if id == "" || pid == 0 {
				t.Fatalf("failed init: envelope pipeline_id %q, pid log %v", id, workers)
			}
			if got := listed(t, f, id); got == fixed {
				t.Errorf("fixed=%v: list shows the failed init's id: %v", fixed, got)
			}
			if got := alive(f, pid); got == fixed {
				t.Errorf("fixed=%v: the failed init's worker %d is alive: %v", fixed, pid, got)
			}
		})
	}
}

// A crashed or stopped worker freezes every client unless the timeout
// defect is fixed; fixed, it is answered and removed from the list.
func TestFixtureStoppedOrCrashedWorker(t *testing.T) {
	t.Parallel()
	args := []string{"--health-interval", "0.2", "--queue-timeout", "1", "--max-health-failures", "2"}
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGSTOP} {
		for _, fixed := range []bool{false, true} {
			name := map[bool]string{false: "defect", true: "fixed"}[fixed] + "/" + map[syscall.Signal]string{syscall.SIGKILL: "crashed", syscall.SIGSTOP: "stopped"}[sig]
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				opts := Options{Args: args}
				if fixed {
					opts.Fix = []string{DefectTimeout}
				}
				f := Start(t, opts)
				id, pid := initPipeline(t, f)
				if err := syscall.Kill(pid, sig); err != nil {
					t.Fatal(err)
				}
				if sig == syscall.SIGSTOP {
					t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
				}
				short := client(f, 2*time.Second)
				_, err := short.Status(t.Context(), id)
				if !fixed {
					if !errors.Is(err, context.DeadlineExceeded) {
						t.Fatalf("status of a %v worker: %v, want no answer", sig, err)
					}
					if _, err := short.List(t.Context()); !errors.Is(err, context.DeadlineExceeded) {
						t.Fatalf("list after a request to a %v worker: %v, want no answer (frozen)", sig, err)
					}
					if sig == syscall.SIGSTOP {
						_ = syscall.Kill(pid, syscall.SIGCONT)
						if _, err := client(f, bound).List(t.Context()); err != nil {
							t.Fatalf("list after SIGCONT: %v", err)
						}
					}
					return
				}
				var pe *protocol.Error
				if err != nil && !errors.As(err, &pe) {
					t.Fatalf("status of a %v worker: %v, want an answer", sig, err)
				}
				eventually(t, "the worker leaves list_pipelines", func() bool { return !listed(t, f, id) })
				eventually(t, "the worker is gone", func() bool { return !alive(f, pid) })
				events, _ := f.Events()
				if !slices.ContainsFunc(events, func(e Event) bool { return e.Event == "exit" && e.Pid == pid && e.FoundBy != "" }) {
					t.Errorf("pid log has no exit of %d found by the fixture (health pass or request): %+v", pid, events)
				}
			})
		}
	}
}

// SIGTERM with pipelines raises TypeError and orphans the workers unless
// fixed; fixed, every worker is stopped and the manager exits 0.
func TestFixtureSigterm(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		fixed     bool
		pipelines int
		exit      int
	}{
		{"defect", false, 2, 1},
		{"defect/no-pipelines", false, 0, 0},
		{"fixed", true, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := Options{Args: []string{"--grace", "1"}}
			if tc.fixed {
				opts.Fix = []string{DefectSigterm}
			}
			f := Start(t, opts)
			var pids []int
			for range tc.pipelines {
				_, pid := initPipeline(t, f)
				pids = append(pids, pid)
			}
			if err := f.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			code, ok := f.WaitExit(bound)
			if !ok || code != tc.exit {
				t.Fatalf("after SIGTERM: exited %v with %d, want exit %d", ok, code, tc.exit)
			}
			if got := strings.Contains(f.Stderr(), "TypeError"); got != (tc.exit == 1) {
				t.Errorf("stderr names TypeError: %v, want %v", got, tc.exit == 1)
			}
			for _, pid := range pids {
				if alive(f, pid) == tc.fixed {
					t.Errorf("worker %d alive after SIGTERM: %v, want %v", pid, !tc.fixed, tc.fixed)
				}
			}
		})
	}
}

func TestFixtureRejectsUnknownDefects(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), bound)
	defer cancel()
	cmd := exec.CommandContext(ctx, Python(t), Script(), "--port", "0", "--fix", "phantom,bogus")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "unknown defect(s) bogus") {
		t.Errorf("--fix phantom,bogus: %v, %s; want exit 2 naming bogus", err, out)
	}
}
