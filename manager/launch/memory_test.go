package launch

import (
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// call sends one command to a worker and reads its reply, each within a
// deadline so a broken worker fails the test instead of hanging it.
func call(t *testing.T, c Conn, id int, typ string, request map[string]any) protocol.WorkerReply {
	t.Helper()
	cmd := protocol.WorkerCommand{RequestID: strconv.Itoa(id), Type: typ}
	if request != nil {
		cmd.Request = make(map[string]json.RawMessage)
		for k, v := range request {
			raw, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			cmd.Request[k] = raw
		}
	}
	body, err := json.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	if err := c.SetWriteDeadline(deadline); err != nil {
		t.Fatal(err)
	}
	if err := protocol.WriteFrame(c, body); err != nil {
		t.Fatalf("send %s: %v", typ, err)
	}
	if rd, ok := c.(interface{ SetReadDeadline(time.Time) error }); ok {
		if err := rd.SetReadDeadline(deadline); err != nil {
			t.Fatal(err)
		}
	}
	for {
		frame, err := protocol.ReadFrame(c, 0)
		if err != nil {
			t.Fatalf("reply to %s: %v", typ, err)
		}
		var reply protocol.WorkerReply
		if err := json.Unmarshal(frame, &reply); err != nil {
			t.Fatalf("reply to %s: %v in %q", typ, err, frame)
		}
		if reply.RequestID == cmd.RequestID {
			return reply
		}
	}
}

func newTestMemory(t *testing.T) *Memory {
	t.Helper()
	m := NewMemory(MemoryConfig{})
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

func TestMemoryStatusAndCleanEnd(t *testing.T) {
	m := newTestMemory(t)
	p, err := m.Launch(t.Context(), Options{Name: "w"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid() != 0 || p.Pgid() != 0 {
		t.Errorf("pid %d, pgid %d; want 0 for an in-memory worker", p.Pid(), p.Pgid())
	}
	if reply := call(t, p.Conn(), 1, protocol.TypeStatus, nil); !reply.Response.OK() {
		t.Fatalf("status: %+v", reply.Response)
	}
	// The manager hanging up ends the worker cleanly, as EOF on stdin does.
	if err := p.Conn().Close(); err != nil {
		t.Fatal(err)
	}
	if exit := waitDone(t, p); !exit.Clean() {
		t.Errorf("exit %+v, want clean", exit)
	}
}

func TestMemoryTerminate(t *testing.T) {
	m := newTestMemory(t)
	p, err := m.Launch(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Terminate(); err != nil {
		t.Fatal(err)
	}
	if exit := waitDone(t, p); !exit.Clean() {
		t.Errorf("exit after Terminate %+v, want clean", exit)
	}
}

func TestMemoryIgnoredTerminateThenKill(t *testing.T) {
	m := newTestMemory(t)
	p, err := m.Launch(t.Context(), Options{Chaos: true})
	if err != nil {
		t.Fatal(err)
	}
	if reply := call(t, p.Conn(), 1, protocol.TypeChaos, map[string]any{"fault": "ignore_sigterm"}); !reply.Response.OK() {
		t.Fatalf("chaos: %+v", reply.Response)
	}
	if err := p.Terminate(); err != nil {
		t.Fatal(err)
	}
	// Still answering after the terminate request; the exit below must
	// be Kill's, not a clean one.
	if reply := call(t, p.Conn(), 2, protocol.TypeStatus, nil); !reply.Response.OK() {
		t.Fatalf("status after ignored terminate: %+v", reply.Response)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatalf("second Kill: %v", err)
	}
	if exit := waitDone(t, p); exit.Code != -1 || exit.Signal != "killed" {
		t.Errorf("exit %+v, want code -1, signal killed", exit)
	}
}

func TestMemoryCrashAndRefusedGrandchild(t *testing.T) {
	m := newTestMemory(t)
	p, err := m.Launch(t.Context(), Options{Chaos: true})
	if err != nil {
		t.Fatal(err)
	}
	if reply := call(t, p.Conn(), 1, protocol.TypeChaos, map[string]any{"fault": "spawn_grandchild"}); reply.Response.OK() {
		t.Errorf("spawn_grandchild succeeded in memory; want an error reply")
	}
	cmd, _ := json.Marshal(protocol.WorkerCommand{RequestID: "2", Type: protocol.TypeChaos,
		Request: map[string]json.RawMessage{"fault": json.RawMessage(`"crash"`), "exit_code": json.RawMessage(`3`)}})
	if err := protocol.WriteFrame(p.Conn(), cmd); err != nil {
		t.Fatal(err)
	}
	if exit := waitDone(t, p); exit.Code != 3 || exit.Signal != "" {
		t.Errorf("exit %+v, want code 3", exit)
	}
}

func TestMemoryCloseKillsAll(t *testing.T) {
	m := NewMemory(MemoryConfig{})
	var procs []Process
	for range 3 {
		p, err := m.Launch(t.Context(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, p := range procs {
		select {
		case <-p.Done():
		default:
			t.Error("worker still running after Close")
		}
	}
	if _, err := m.Launch(t.Context(), Options{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Launch after Close: %v, want ErrClosed", err)
	}
}
