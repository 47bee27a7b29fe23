package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// Client-level faults that push a manager against its limits
// (STREAM_MANAGER_MAX_RAM_MB, STREAM_MANAGER_MAX_CONNECTIONS).

// maxStorm caps Params["inits"] of init_storm and Params["requests"] of
// abandon_request.
const maxStorm = 1000

// defaultStormVideo is the source of init_storm's pipelines unless
// Params["video"] names another.
const defaultStormVideo = "synthetic://160x120?fps=15"

// injectInitStorm sends Params["inits"] (default 10) init requests at once,
// each on its own connection, for the video Params["video"]. It records how
// many were admitted and how many refused (by error type); its heal
// terminates every pipeline the storm created, so the room comes back.
func injectInitStorm(ctx context.Context, f *fault, t Target, s Spec) (Injection, error) {
	addr, timeout, err := clientSetup(f.name, t, s)
	if err != nil {
		return nil, err
	}
	n, err := countParam(f.name, s.Params, "inits", 10, 1, maxStorm)
	if err != nil {
		return nil, err
	}
	video := defaultStormVideo
	if v, ok := s.Params["video"]; ok {
		if video, ok = v.(string); !ok || video == "" {
			return nil, errorf(f.name, ErrBadParam, nil, "video = %v must be a non-empty string", v)
		}
	}
	c := &protocol.Client{Addr: addr, Timeout: timeout}
	in := newInjection(f.name, map[string]any{"addr": addr, "inits": n, "video": video})
	var ids []string // admitted pipelines, for the heal
	in.background(ctx, false, func(ctx context.Context) {
		var (
			mu                 sync.Mutex
			admitted, refused  int
			lost               int
			errs               = map[string]int{}
			wg                 sync.WaitGroup
			cfg                = protocol.InitConfig{VideoConfiguration: protocol.VideoConfiguration{VideoReference: video}}
			start              = time.Now()
			maxLatency         time.Duration
			refusedByErrorType = map[string]int{}
		)
		for range n {
			wg.Go(func() {
				t0 := time.Now()
				id, err := c.Init(ctx, cfg)
				took := time.Since(t0)
				var perr *protocol.Error
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					admitted++
					ids = append(ids, id)
					maxLatency = max(maxLatency, took)
				case errors.As(err, &perr):
					refused++
					refusedByErrorType[perr.Type]++
					errs[perr.Message]++
					maxLatency = max(maxLatency, took)
				default:
					lost++
					errs[err.Error()]++
				}
			})
		}
		wg.Wait()
		in.set("admitted", admitted)
		in.set("refused", refused)
		in.set("refused_by_error_type", refusedByErrorType)
		in.set("unanswered", lost)
		in.set("answered", admitted+refused)
		in.set("took_ms", ms(time.Since(start)))
		in.set("max_latency_ms", ms(maxLatency))
		in.set("errors", firstErrors(errs, 3))
		in.set("pipelines", append([]string(nil), ids...))
	})
	in.heal = func(ctx context.Context) error {
		// The background work has ended (Heal waits for it first).
		var failed []string
		for _, id := range ids {
			if err := c.Terminate(ctx, id); err != nil && !gone(err) {
				failed = append(failed, fmt.Sprintf("%s: %v", id, err))
			}
		}
		in.set("terminated", len(ids)-len(failed))
		if len(failed) > 0 {
			in.set("terminate_failed", failed)
			return errorf(f.name, nil, nil, "terminate %d of %d storm pipelines: %s", len(failed), len(ids), failed[0])
		}
		return nil
	}
	return in, nil
}

// abandonable are the commands abandon_request may send; commands that
// take a pipeline_id are sent to Spec.PipelineID.
func abandonable(cmd string) bool {
	return protocol.ForwardedToWorker(cmd) && cmd != protocol.TypeChaos ||
		cmd == protocol.TypeListPipelines || cmd == protocol.TypeInspect
}

// injectAbandon sends Params["requests"] (default 8) complete requests of
// Params["command"] (default status) to Spec.PipelineID at once, each on
// its own connection, waits Params["reset_after_seconds"] (default 0.2)
// and resets every connection (SO_LINGER 0) without reading an answer: clients that are gone while their requests are
// served. A manager should give their connection slots back at once
// rather than hold them until each answer is written.
func injectAbandon(ctx context.Context, f *fault, t Target, s Spec) (Injection, error) {
	addr, timeout, err := clientSetup(f.name, t, s)
	if err != nil {
		return nil, err
	}
	n, err := countParam(f.name, s.Params, "requests", 8, 1, maxStorm)
	if err != nil {
		return nil, err
	}
	cmd := protocol.TypeStatus
	if v, ok := s.Params["command"]; ok {
		if cmd, ok = v.(string); !ok || !abandonable(cmd) {
			return nil, errorf(f.name, ErrBadParam, nil, "command = %v must be one of status, consume_result, mute, resume, list_pipelines, inspect", v)
		}
	}
	// A reset that beats the server's read discards the request unread
	// (the kernel drops queued data on RST): wait until it was read.
	after, err := secondsParam(f.name, s.Params, "reset_after_seconds", 200*time.Millisecond)
	if err != nil {
		return nil, err
	}
	req := &protocol.Request{Type: cmd}
	if protocol.NeedsPipelineID(cmd) {
		req.PipelineID = s.PipelineID
	}
	body, err := req.MarshalJSON()
	if err != nil {
		return nil, errorf(f.name, nil, err, "encode %s", cmd)
	}
	frame := protocol.AppendFrame(nil, body)
	in := newInjection(f.name, map[string]any{"addr": addr, "requests": n, "command": cmd, "pipeline_id": req.PipelineID})
	in.background(ctx, false, func(ctx context.Context) {
		var conns []net.Conn
		var closers []func()
		defer func() {
			for _, c := range closers {
				c()
			}
		}()
		errs := map[string]int{}
		for range n {
			conn, closeConn, err := dial(ctx, addr, timeout)
			if err != nil {
				errs["dial: "+err.Error()]++
				continue
			}
			closers = append(closers, closeConn)
			if _, err := conn.Write(frame); err != nil {
				errs["write: "+err.Error()]++
				continue
			}
			conns = append(conns, conn)
		}
		// Every request is complete on the wire before the first reset,
		// so they all hold a slot at once.
		sent := len(conns)
		in.set("sent", sent)
		select {
		case <-time.After(after):
		case <-ctx.Done():
		}
		reset := 0
		for _, conn := range conns {
			if tc, ok := conn.(*net.TCPConn); ok && tc.SetLinger(0) == nil {
				reset++
			}
			_ = conn.Close()
		}
		in.set("reset", reset)
		in.set("reset_at_unix_ms", time.Now().UnixMilli())
		in.set("errors", firstErrors(errs, 3))
	})
	return in, nil
}
