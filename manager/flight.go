package manager

import (
	"context"
	"fmt"
	"maps"

	"github.com/corral-dev/corral/manager/protocol"
)

// flight is one status round trip to a worker, shared by every status
// request on that pipeline that arrives while it is in flight: 64 clients
// asking one pipeline cost one worker round trip, not 64 queued one behind
// the other on its single-command channel.
//
// Freshness: a request joins only a flight that still holds the worker's
// channel (the flight leaves the pipeline before the channel is released),
// so no command that changes the worker (mute, resume, consume) can have
// completed between the flight's report and the joiner's arrival: a shared
// answer is as fresh as one of its own.
type flight struct {
	done chan struct{}
	resp protocol.Response // set before done is closed
}

// sharable reports whether req is a plain status request (no parameters
// beyond its type, pipeline and trace context), whose answer any other
// such request may share.
func sharable(req *protocol.Request) bool {
	if req.Type != protocol.TypeStatus {
		return false
	}
	for k := range req.Fields {
		switch k {
		case "type", "pipeline_id", "traceparent":
		default:
			return false
		}
	}
	return true
}

// sharedStatus answers a plain status request from the flight in progress
// on p, or starts one. The flight runs in a goroutine the manager owns,
// on the manager's context and the status command's own deadline, so a
// client that leaves abandons only its own wait, never the others' answer;
// it carries the traceparent of the request that started it. Each request
// waits for the flight or its own context, whichever ends first.
func (m *Manager) sharedStatus(ctx context.Context, p *pipeline, req *protocol.Request) protocol.Response {
	p.statusMu.Lock()
	f := p.status
	if f == nil {
		f = &flight{done: make(chan struct{})}
		leave := func() {
			p.statusMu.Lock()
			if p.status == f {
				p.status = nil
			}
			p.statusMu.Unlock()
		}
		started := m.goOwned(func() {
			resp := m.forward(m.ctx, p, req, callOpts{beforeRelease: leave})
			leave() // the call may have ended before it held the channel
			f.resp = resp
			close(f.done)
		})
		if !started { // shutting down: no goroutine to share
			p.statusMu.Unlock()
			return m.forward(ctx, p, req, callOpts{})
		}
		p.status = f
	}
	p.statusMu.Unlock()
	select {
	case <-f.done:
		resp := f.resp
		// Middleware may add fields to its own answer; the nested
		// report is only read.
		resp.Fields = maps.Clone(resp.Fields)
		return resp
	case <-ctx.Done():
		return protocol.Failure(protocol.OperationError(fmt.Sprintf(
			"Pipeline %s: %s abandoned: %v.", p.id, req.Type, ctx.Err())))
	}
}
