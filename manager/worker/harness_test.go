package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
	"go.uber.org/goleak"
)

// TestMain doubles as the worker program: a test that re-executes this
// binary with protocol.EnvWorkerMode set gets Main, as `corral worker` would run it.
func TestMain(m *testing.M) {
	if os.Getenv(protocol.EnvWorkerMode) != "" {
		os.Exit(Main())
	}
	goleak.VerifyTestMain(m)
}

// waitLimit bounds every wait in these tests; reaching it is a failure.
const waitLimit = 5 * time.Second

// frameOrErr is one frame read from the worker's Out.
type frameOrErr struct {
	body []byte
	err  error
}

// harness runs one worker over io.Pipe pairs, the way the in-memory launcher
// does, and plays the manager.
type harness struct {
	t      *testing.T
	cancel context.CancelFunc
	inW    *io.PipeWriter // the manager's end of the worker's stdin
	term   chan struct{}
	exits  chan int

	outbox  chan []byte     // commands, written in order by one goroutine
	frames  chan frameOrErr // everything the worker writes
	done    chan error
	seq     int
	result  error
	ended   bool
	workers sync.WaitGroup
}

type options struct {
	chaos  bool
	spawn  func() error
	tracer Tracer
	ffmpeg string        // Config.FFmpeg
	stall  time.Duration // Config.StallTimeout (0: no watchdog)
}

func start(t *testing.T, opts options) *harness {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{
		t: t, cancel: cancel, inW: inW,
		term:   make(chan struct{}, 1),
		exits:  make(chan int, 4),
		outbox: make(chan []byte, 16),
		frames: make(chan frameOrErr, 64),
		done:   make(chan error, 1),
	}
	cfg := Config{
		In: inR, Out: outW, Chaos: opts.chaos, Terminate: h.term,
		Exit:            func(code int) { h.exits <- code },
		SpawnGrandchild: opts.spawn,
		Tracer:          opts.tracer,
		FFmpeg:          opts.ffmpeg,
		StallTimeout:    opts.stall,
	}
	h.workers.Add(3)
	go func() { defer h.workers.Done(); h.done <- Run(ctx, cfg) }()
	go func() {
		defer h.workers.Done()
		for body := range h.outbox {
			if protocol.WriteFrame(inW, body) != nil {
				return
			}
		}
	}()
	go func() {
		defer h.workers.Done()
		defer close(h.frames)
		for {
			body, err := protocol.ReadFrame(outR, 0)
			h.frames <- frameOrErr{body, err}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		// Closing both pipes first unblocks a worker stuck writing
		// or reading, as a killed manager connection would.
		cancel()
		outR.Close()
		inW.Close()
		h.wait()
		close(h.outbox)
		for range h.frames { // unblock the reader if the test left frames
		}
		h.workers.Wait()
	})
	return h
}

// sendRaw queues one frame body for the worker.
func (h *harness) sendRaw(body []byte) {
	h.outbox <- body
}

// send queues a command and returns its request id.
func (h *harness) send(typ string, req map[string]any) string {
	h.t.Helper()
	h.seq++
	id := fmt.Sprintf("req-%d", h.seq)
	fields := map[string]json.RawMessage{}
	for k, v := range req {
		b, err := json.Marshal(v)
		if err != nil {
			h.t.Fatalf("encode %s: %v", k, err)
		}
		fields[k] = b
	}
	body, err := json.Marshal(protocol.WorkerCommand{RequestID: id, Type: typ, Request: fields})
	if err != nil {
		h.t.Fatal(err)
	}
	h.sendRaw(body)
	return id
}

// next returns the next frame the worker wrote, failing after waitLimit.
func (h *harness) next() frameOrErr {
	h.t.Helper()
	select {
	case f, ok := <-h.frames:
		if !ok {
			return frameOrErr{err: io.EOF}
		}
		return f
	case <-time.After(waitLimit):
		h.t.Fatalf("no frame from the worker within %v", waitLimit)
		return frameOrErr{}
	}
}

// reply decodes the next frame as a reply to id.
func (h *harness) reply(id string) (protocol.WorkerReply, []byte) {
	h.t.Helper()
	f := h.next()
	if f.err != nil {
		h.t.Fatalf("reading reply to %s: %v", id, f.err)
	}
	var rep protocol.WorkerReply
	if err := json.Unmarshal(f.body, &rep); err != nil {
		h.t.Fatalf("reply to %s is not JSON: %v: %q", id, err, f.body)
	}
	if rep.RequestID != id {
		h.t.Fatalf("reply has request_id %q, want %q", rep.RequestID, id)
	}
	return rep, f.body
}

// call sends a command and returns its reply's response.
func (h *harness) call(typ string, req map[string]any) protocol.Response {
	h.t.Helper()
	rep, _ := h.reply(h.send(typ, req))
	return rep.Response
}

// ok sends a command that must succeed and returns its response fields.
func (h *harness) ok(typ string, req map[string]any) map[string]any {
	h.t.Helper()
	resp := h.call(typ, req)
	if !resp.OK() {
		h.t.Fatalf("%s failed: %v", typ, resp.Err())
	}
	return resp.Fields
}

// failure sends a command that must fail with errType and returns the message.
func (h *harness) failure(typ string, req map[string]any, errType string) string {
	h.t.Helper()
	resp := h.call(typ, req)
	if resp.OK() || resp.ErrorType != errType {
		h.t.Fatalf("%s: got status %q error_type %q (%s), want %s", typ, resp.Status, resp.ErrorType, resp.ErrorMessage, errType)
	}
	return resp.ErrorMessage
}

// wait returns Run's result, failing if it does not return within waitLimit.
func (h *harness) wait() error {
	h.t.Helper()
	if h.ended {
		return h.result
	}
	select {
	case h.result = <-h.done:
		h.ended = true
		return h.result
	case <-time.After(waitLimit):
		h.t.Fatalf("Run did not return within %v", waitLimit)
		return nil
	}
}

// running reports whether Run is still running, without waiting.
func (h *harness) running() bool {
	if h.ended {
		return false
	}
	select {
	case h.result = <-h.done:
		h.ended = true
		return false
	default:
		return true
	}
}

// expectEOF asserts that the worker wrote nothing more and closed Out.
func (h *harness) expectEOF() {
	h.t.Helper()
	if f := h.next(); !errors.Is(f.err, io.EOF) {
		h.t.Fatalf("want EOF on the worker's output, got %q (%v)", f.body, f.err)
	}
}

// report returns the status report.
func (h *harness) report() map[string]any {
	h.t.Helper()
	rep, _ := h.ok(protocol.TypeStatus, nil)["report"].(map[string]any)
	if rep == nil {
		h.t.Fatal("status has no report object")
	}
	return rep
}

// poll calls cond until it returns true, failing after waitLimit. It is for
// conditions no event signals (a pipeline catching up with frames).
func (h *harness) poll(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sourceOf returns sources_metadata[0] of a report.
func sourceOf(t *testing.T, report map[string]any) map[string]any {
	t.Helper()
	list, _ := report["sources_metadata"].([]any)
	if len(list) != 1 {
		t.Fatalf("sources_metadata = %v, want one source", report["sources_metadata"])
	}
	return list[0].(map[string]any)
}

// measured reports whether source 0's latency report has numbers (it has
// nulls until the first frame is through).
func (h *harness) measured() bool {
	latency := h.report()["latency_reports"].([]any)
	return len(latency) > 0 && latency[0].(map[string]any)["e2e_latency"] != nil
}

// parsePyTime parses a timestamp in upstream's form (naive local time with
// microseconds); anything else is an error.
func parsePyTime(s string) (time.Time, error) {
	return time.ParseInLocation(pyTimeLayout, s, time.Local)
}

// eventTypes lists the event_type of every status update in a report.
func eventTypes(report map[string]any) []string {
	var kinds []string
	for _, e := range report["video_source_status_updates"].([]any) {
		kinds = append(kinds, e.(map[string]any)["event_type"].(string))
	}
	return kinds
}

// hasEvent reports whether the worker's report lists an event of kind.
func (h *harness) hasEvent(kind string) bool {
	return slices.Contains(eventTypes(h.report()), kind)
}

// initRequest is a client init request for reference with overrides applied
// to video_configuration (keys of video) and the top level (keys of top).
func initRequest(reference any, video, top map[string]any) map[string]any {
	vc := map[string]any{"type": "VideoConfiguration", "video_reference": reference}
	for k, v := range video {
		vc[k] = v
	}
	req := map[string]any{
		"type":                     "init",
		"video_configuration":      vc,
		"processing_configuration": map[string]any{"type": "WorkflowConfiguration", "workflow_id": "w"},
		"sink_configuration":       map[string]any{"type": "MemorySinkConfiguration", "results_buffer_size": 8},
	}
	for k, v := range top {
		req[k] = v
	}
	return req
}

// writeY4M writes a test file in dir and returns its path.
func writeY4M(t *testing.T, width, height, frames, fps int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "clip.y4m")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteY4M(f, width, height, frames, fps); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// consumeAll pops entries until the buffer is empty and returns their ids.
func (h *harness) consumeAll() []int {
	h.t.Helper()
	var ids []int
	for {
		fields := h.ok(protocol.TypeConsumeResult, nil)
		meta := fields["frames_metadata"].([]any)
		if len(meta) == 0 {
			return ids
		}
		ids = append(ids, int(meta[0].(map[string]any)["frame_id"].(float64)))
	}
}
