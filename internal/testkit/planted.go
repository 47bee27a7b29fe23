package testkit

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
)

// Planted bugs: seams that make the reference manager behave like a broken
// one, shared by the harness's planted catalogue (scenarios) and the
// property tests' oracle proof (tests/property). Each models a real
// failure of the upstream manager or its forks.

// KeepRemovedEntries rewrites inspect answers so a pipeline that left the
// table keeps its entry and health record.
func KeepRemovedEntries() manager.Middleware {
	var mu sync.Mutex
	seen := map[string]protocol.PipelineInfo{}
	return func(next manager.Handler) manager.Handler {
		return manager.HandlerFunc(func(ctx context.Context, req *protocol.Request) protocol.Response {
			resp := next.Handle(ctx, req)
			infos, ok := resp.Fields["pipelines"].([]protocol.PipelineInfo)
			if req.Type != protocol.TypeInspect || !ok {
				return resp
			}
			mu.Lock()
			defer mu.Unlock()
			present := map[string]bool{}
			for _, p := range infos {
				present[p.PipelineID] = true
				seen[p.PipelineID] = p
			}
			out := slices.Clone(infos)
			for id, p := range seen {
				if !present[id] {
					out = append(out, p)
				}
			}
			fields := map[string]any{}
			for k, v := range resp.Fields {
				fields[k] = v
			}
			fields["pipelines"] = out
			resp.Fields = fields
			return resp
		})
	}
}

// StaleAfterTimeout: after a command to a pipeline timed out, the next
// command of another kind to that pipeline gets the previous answer, as
// when a late reply stays in the channel and the next caller reads it.
func StaleAfterTimeout() manager.Middleware {
	var mu sync.Mutex
	type answer struct {
		command string
		resp    protocol.Response
	}
	last := map[string]answer{}
	armed := map[string]bool{}
	commands := []string{protocol.TypeStatus, protocol.TypeConsumeResult, protocol.TypeMute, protocol.TypeResume}
	return func(next manager.Handler) manager.Handler {
		return manager.HandlerFunc(func(ctx context.Context, req *protocol.Request) protocol.Response {
			if !slices.Contains(commands, req.Type) {
				return next.Handle(ctx, req)
			}
			id := req.PipelineID
			mu.Lock()
			if a, ok := last[id]; ok && armed[id] && a.command != req.Type {
				armed[id] = false
				mu.Unlock()
				return a.resp
			}
			mu.Unlock()
			resp := next.Handle(ctx, req)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case resp.OK() && (req.Type == protocol.TypeStatus || req.Type == protocol.TypeConsumeResult):
				last[id] = answer{req.Type, resp}
			case resp.ErrorType == protocol.ErrTypeOperation && strings.Contains(resp.ErrorMessage, "did not answer"):
				armed[id] = true
			}
			return resp
		})
	}
}

// WrapProcesses returns a launcher wrapper that passes every process the
// real launcher starts through wrap. The wrapper's Close does not reach the
// real launcher (the broken manager forgets its workers): the caller closes
// the real one itself, so nothing outlives the test.
func WrapProcesses(wrap func(launch.Process) launch.Process) func(launch.Launcher) launch.Launcher {
	return func(real launch.Launcher) launch.Launcher { return &brokenLauncher{real: real, wrap: wrap} }
}

type brokenLauncher struct {
	real launch.Launcher
	wrap func(launch.Process) launch.Process
}

func (l *brokenLauncher) Launch(ctx context.Context, opts launch.Options) (launch.Process, error) {
	p, err := l.real.Launch(ctx, opts)
	if err != nil {
		return nil, err
	}
	return l.wrap(p), nil
}

func (l *brokenLauncher) Close() error { return nil }

// NeverKills: the stop sequence reaches no worker (no terminate, no
// SIGTERM, no SIGKILL), as when upstream's signal handler crashes and
// orphans its workers.
func NeverKills(p launch.Process) launch.Process {
	never := new(atomic.Bool)
	return &deafProcess{Process: p, conn: dropTerminate{p.Conn(), never}, obeys: never.Load}
}

// KeepsFailedInit: a worker that never answered with success (its init
// failed) is neither terminated nor killed, and never gets the terminate
// command, as upstream leaves a phantom process after a failed init.
func KeepsFailedInit(p launch.Process) launch.Process {
	ok := new(atomic.Bool)
	return &deafProcess{Process: p, conn: dropTerminate{watchSuccess{p.Conn(), ok}, ok}, obeys: ok.Load}
}

// deafProcess ignores Terminate and Kill unless obeys says otherwise.
type deafProcess struct {
	launch.Process
	conn  launch.Conn
	obeys func() bool
}

func (p *deafProcess) Conn() launch.Conn { return p.conn }

func (p *deafProcess) Terminate() error {
	if p.obeys() {
		return p.Process.Terminate()
	}
	return nil
}

func (p *deafProcess) Kill() error {
	if p.obeys() {
		return p.Process.Kill()
	}
	return nil
}

// dropTerminate drops the terminate command until delivers is set.
type dropTerminate struct {
	launch.Conn
	delivers *atomic.Bool
}

func (c dropTerminate) Write(b []byte) (int, error) {
	if !c.delivers.Load() && bytes.Contains(b, []byte(`"type":"terminate"`)) {
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// watchSuccess sets ok once the worker has answered with success.
type watchSuccess struct {
	launch.Conn
	ok *atomic.Bool
}

func (c watchSuccess) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if bytes.Contains(b[:n], []byte(`"status":"success"`)) {
		c.ok.Store(true)
	}
	return n, err
}
