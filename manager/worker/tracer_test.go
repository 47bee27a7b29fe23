package worker

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

type spanKey struct{}

// fakeTracer records the seam's calls; frames reports the ids of frames
// traced within the init command's ctx.
type fakeTracer struct {
	mu       sync.Mutex
	commands []string // type + " " + traceparent
	replies  []protocol.Response
	frames   chan int
}

func (f *fakeTracer) Command(ctx context.Context, typ, traceparent string) (context.Context, func(protocol.Response)) {
	f.mu.Lock()
	f.commands = append(f.commands, typ+" "+traceparent)
	f.mu.Unlock()
	return context.WithValue(ctx, spanKey{}, typ), func(r protocol.Response) {
		f.mu.Lock()
		f.replies = append(f.replies, r)
		f.mu.Unlock()
	}
}

func (f *fakeTracer) Frame(ctx context.Context, id int) func() {
	if ctx.Value(spanKey{}) == protocol.TypeInit {
		select {
		case f.frames <- id:
		default:
		}
	}
	return func() {}
}

func TestTracerSeam(t *testing.T) {
	ft := &fakeTracer{frames: make(chan int, 1)}
	h := start(t, options{tracer: ft})
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	fields := map[string]json.RawMessage{}
	for k, v := range initRequest("synthetic://8x8?fps=200", nil, nil) {
		fields[k], _ = json.Marshal(v)
	}
	body, _ := json.Marshal(protocol.WorkerCommand{RequestID: "traced-1", Type: protocol.TypeInit, Traceparent: tp, Request: fields})
	h.sendRaw(body)
	if rep, _ := h.reply("traced-1"); !rep.Response.OK() {
		t.Fatalf("init: %+v", rep.Response)
	}
	h.failure(protocol.TypeInit, initRequest("synthetic://8x8", nil, nil), protocol.ErrTypeOperation)

	select {
	case <-ft.frames: // frames run in the init command's ctx
	case <-time.After(waitLimit):
		t.Fatal("no frame traced within the init command's ctx")
	}
	ft.mu.Lock()
	defer ft.mu.Unlock()
	want := []string{"init " + tp, "init "}
	if len(ft.commands) != 2 || ft.commands[0] != want[0] || ft.commands[1] != want[1] {
		t.Errorf("commands %q, want %q", ft.commands, want)
	}
	if len(ft.replies) != 2 || !ft.replies[0].OK() || ft.replies[1].OK() {
		t.Errorf("replies %+v, want a success then a failure", ft.replies)
	}
}
