package chaos

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// ioTimeout bounds every socket step of a client fault unless
// Params["timeout_seconds"] says otherwise.
const ioTimeout = 5 * time.Second

// answerLimit caps the frames client faults read back.
const answerLimit = 1 << 20

// clientSetup checks the target and reads the per-socket timeout.
func clientSetup(fault string, t Target, s Spec) (addr string, timeout time.Duration, err error) {
	if t.Client == nil || t.Client.Addr == "" {
		return "", 0, errorf(fault, ErrNoClient, nil, "no address to connect to")
	}
	addr = t.Client.Addr
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, errorf(fault, ErrNotLoopback, err, "address %q", addr)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", 0, errorf(fault, ErrNotLoopback, nil, "refusing to misbehave against %s", addr)
	}
	timeout, err = secondsParam(fault, s.Params, "timeout_seconds", ioTimeout)
	if err == nil && timeout <= 0 {
		err = errorf(fault, ErrBadParam, nil, "timeout_seconds must be > 0")
	}
	return addr, timeout, err
}

// dial connects with a deadline of timeout on every step; ending ctx
// forces the deadline into the past. close releases both.
func dial(ctx context.Context, addr string, timeout time.Duration) (conn net.Conn, close func(), err error) {
	d := net.Dialer{Timeout: timeout}
	if conn, err = d.DialContext(ctx, "tcp", addr); err != nil {
		return nil, nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	return conn, func() { stop(); _ = conn.Close() }, nil
}

// readAnswer reads one response frame and summarises it for Observed.
func readAnswer(conn net.Conn) map[string]any {
	body, err := protocol.ReadFrame(conn, answerLimit)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return map[string]any{"answer": "closed without a frame"}
		}
		return map[string]any{"answer": "no frame: " + err.Error()}
	}
	var env protocol.Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return map[string]any{"answer": "frame is not an envelope: " + err.Error()}
	}
	out := map[string]any{"answer": env.Response.Status}
	if env.Response.ErrorType != "" {
		out["error_type"] = env.Response.ErrorType
		out["error_message"] = env.Response.ErrorMessage
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// injectStall connects, sends two bytes of a header and holds the
// connection for s.For, noting whether the server dropped it first.
func injectStall(ctx context.Context, f *fault, t Target, s Spec) (Injection, error) {
	addr, _, err := clientSetup(f.name, t, s)
	if err != nil {
		return nil, err
	}
	in := newInjection(f.name, map[string]any{"addr": addr, "hold_seconds": s.For.Seconds()})
	in.background(ctx, true, func(ctx context.Context) {
		conn, closeConn, err := dial(ctx, addr, s.For)
		if err != nil {
			in.set("error", err.Error())
			return
		}
		defer closeConn()
		start := time.Now()
		if _, err := conn.Write([]byte{0, 0}); err != nil {
			in.set("error", "write: "+err.Error())
			return
		}
		in.set("bytes_sent", 2)
		n, err := conn.Read(make([]byte, 1))
		in.set("held_ms", ms(time.Since(start)))
		var ne net.Error
		switch {
		case n > 0:
			in.set("dropped_by_server", false)
			in.set("server_wrote", true)
		case errors.As(err, &ne) && ne.Timeout():
			// Our own deadline (the hold) or Heal: the server kept it.
			in.set("dropped_by_server", false)
			if ctx.Err() != nil {
				in.set("ended_by", "heal")
			}
		default:
			in.set("dropped_by_server", true)
			in.set("drop", fmt.Sprint(err))
		}
	})
	return in, nil
}

// injectDisconnect sends half a frame of a valid request, then closes.
func injectDisconnect(ctx context.Context, f *fault, t Target, s Spec) (Injection, error) {
	addr, timeout, err := clientSetup(f.name, t, s)
	if err != nil {
		return nil, err
	}
	in := newInjection(f.name, map[string]any{"addr": addr})
	in.background(ctx, false, func(ctx context.Context) {
		frame := protocol.AppendFrame(nil, []byte(`{"type":"list_pipelines"}`))
		conn, closeConn, err := dial(ctx, addr, timeout)
		if err != nil {
			in.set("error", err.Error())
			return
		}
		defer closeConn()
		half := frame[:len(frame)/2]
		if _, err := conn.Write(half); err != nil {
			in.set("error", "write: "+err.Error())
			return
		}
		in.set("bytes_sent", len(half))
		in.set("frame_bytes", len(frame))
	})
	return in, nil
}

// injectOversized sends a header announcing 4 GiB - 1 (the widest the
// 4-byte header allows) and records the answer; a manager with a frame cap
// answers invalid_payload without reading the body.
func injectOversized(ctx context.Context, f *fault, t Target, s Spec) (Injection, error) {
	addr, timeout, err := clientSetup(f.name, t, s)
	if err != nil {
		return nil, err
	}
	const announced = 1<<32 - 1
	in := newInjection(f.name, map[string]any{"addr": addr, "announced_bytes": announced})
	in.background(ctx, false, func(ctx context.Context) {
		conn, closeConn, err := dial(ctx, addr, timeout)
		if err != nil {
			in.set("error", err.Error())
			return
		}
		defer closeConn()
		if _, err := conn.Write(binary.BigEndian.AppendUint32(nil, announced)); err != nil {
			in.set("error", "write: "+err.Error())
			return
		}
		for k, v := range readAnswer(conn) {
			in.set(k, v)
		}
	})
	return in, nil
}

// malformedCases returns the bad frames of malformed_frame, in sending
// order.
func malformedCases() []struct{ name, body string } {
	return []struct{ name, body string }{
		{"not_json", "this is not json"},
		{"array", `[1,2,3]`},
		{"wrong_types", `{"type":42,"pipeline_id":["x"]}`},
		{"unknown_type", `{"type":"no_such_command"}`},
		{"invalid_utf8", "{\"type\":\"\xff\xfe\"}"},
		{"empty", ""},
	}
}

// injectMalformed sends each malformed case on its own connection and
// records the error type of each answer.
func injectMalformed(ctx context.Context, f *fault, t Target, s Spec) (Injection, error) {
	addr, timeout, err := clientSetup(f.name, t, s)
	if err != nil {
		return nil, err
	}
	cases := malformedCases()
	in := newInjection(f.name, map[string]any{"addr": addr, "cases": len(cases)})
	in.background(ctx, false, func(ctx context.Context) {
		answers := map[string]any{}
		invalid := 0
		for _, c := range cases {
			if ctx.Err() != nil {
				answers[c.name] = "not sent: " + ctx.Err().Error()
				continue
			}
			a := sendRaw(ctx, addr, timeout, protocol.AppendFrame(nil, []byte(c.body)))
			if a["error_type"] == protocol.ErrTypeInvalidPayload {
				invalid++
				answers[c.name] = protocol.ErrTypeInvalidPayload
			} else if et, ok := a["error_type"]; ok {
				answers[c.name] = et
			} else {
				answers[c.name] = a["answer"]
			}
		}
		in.set("answers", answers)
		in.set("invalid_payload", invalid)
	})
	return in, nil
}

// sendRaw writes frame on a fresh connection and reads the answer.
func sendRaw(ctx context.Context, addr string, timeout time.Duration, frame []byte) map[string]any {
	conn, closeConn, err := dial(ctx, addr, timeout)
	if err != nil {
		return map[string]any{"answer": "dial: " + err.Error()}
	}
	defer closeConn()
	if _, err := conn.Write(frame); err != nil {
		return map[string]any{"answer": "write: " + err.Error()}
	}
	return readAnswer(conn)
}

// maxBurst caps Params["clients"] of client_burst.
const maxBurst = 10000

// injectBurst runs Params["clients"] (default 50) list_pipelines at once.
func injectBurst(ctx context.Context, f *fault, t Target, s Spec) (Injection, error) {
	addr, timeout, err := clientSetup(f.name, t, s)
	if err != nil {
		return nil, err
	}
	n, err := countParam(f.name, s.Params, "clients", 50, 1, maxBurst)
	if err != nil {
		return nil, err
	}
	in := newInjection(f.name, map[string]any{"addr": addr, "clients": n})
	in.background(ctx, false, func(ctx context.Context) {
		var (
			mu         sync.Mutex
			ok, failed int // failed: an answer that is a failure
			lost       int // no answer at all
			maxLatency time.Duration
			errs       = map[string]int{}
			wg         sync.WaitGroup
		)
		c := &protocol.Client{Addr: addr, Timeout: timeout}
		for range n {
			wg.Go(func() {
				start := time.Now()
				_, err := c.List(ctx)
				took := time.Since(start)
				var perr *protocol.Error
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ok++
					maxLatency = max(maxLatency, took)
				case errors.As(err, &perr):
					failed++
					errs[perr.Type]++
					maxLatency = max(maxLatency, took)
				default:
					lost++
					errs[err.Error()]++
				}
			})
		}
		wg.Wait()
		in.set("answered", ok+failed)
		in.set("ok", ok)
		in.set("failed", failed)
		in.set("unanswered", lost)
		in.set("max_latency_ms", ms(maxLatency))
		in.set("errors", firstErrors(errs, 5))
	})
	return in, nil
}

// firstErrors keeps the limit most frequent error texts (ties by text).
func firstErrors(errs map[string]int, limit int) map[string]int {
	keys := make([]string, 0, len(errs))
	for k := range errs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if errs[keys[i]] != errs[keys[j]] {
			return errs[keys[i]] > errs[keys[j]]
		}
		return keys[i] < keys[j]
	})
	out := map[string]int{}
	for _, k := range keys[:min(limit, len(keys))] {
		out[k] = errs[k]
	}
	return out
}
