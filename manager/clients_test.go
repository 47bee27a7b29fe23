package manager_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-dev/corral/internal/testkit"
	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/protocol"
)

// sendOnly writes one request frame and returns the open connection.
func sendOnly(t testing.TB, addr string, req map[string]any) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(req)
	_ = conn.SetWriteDeadline(time.Now().Add(wait))
	if err := protocol.WriteFrame(conn, body); err != nil {
		conn.Close()
		t.Fatal(err)
	}
	return conn
}

// reset closes conn with an RST, as a client that crashed or gave up does.
func reset(c net.Conn) {
	if tcp, ok := c.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = c.Close()
}

// waitConnections polls until srv counts want live connections; there is
// no event for a connection leaving, so this is a bounded poll.
func waitConnections(t *testing.T, srv *manager.Server, want int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for srv.Connections() != want {
		if time.Now().After(deadline) {
			t.Fatalf("live connections = %d after %s, want %d", srv.Connections(), wait, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A client that resets is gone at once; one that closes (EOF: it might
// only have half-closed) once the socket timeout has passed.
func TestDepartedClientCancelsItsRequest(t *testing.T) {
	for _, how := range []string{"close", "reset"} {
		t.Run(how, func(t *testing.T) {
			entered := make(chan struct{})
			ended := make(chan error, 1)
			h := manager.HandlerFunc(func(ctx context.Context, req *protocol.Request) protocol.Response {
				close(entered)
				select {
				case <-ctx.Done():
					ended <- ctx.Err()
				case <-time.After(wait):
					ended <- errors.New("context still live after the client left")
				}
				return protocol.Success(nil)
			})
			srv, addr := testkit.StartServer(t, h, testConfig(), wait)
			conn := sendOnly(t, addr, map[string]any{"type": "list_pipelines"})
			select {
			case <-entered:
			case <-time.After(wait):
				t.Fatal("request never reached the handler")
			}
			if how == "reset" {
				reset(conn)
			} else {
				conn.Close()
			}
			if err := <-ended; !errors.Is(err, context.Canceled) {
				t.Fatalf("handler context: %v, want cancelled", err)
			}
			waitConnections(t, srv, 0)
		})
	}
}

// A client that only half-closes its side after the request may still be
// reading: its request is not cancelled while the socket timeout runs, and
// it gets its answer.
func TestHalfClosedClientStillAnswered(t *testing.T) {
	h := manager.HandlerFunc(func(ctx context.Context, req *protocol.Request) protocol.Response {
		select { // a request that takes a while, far less than the socket timeout
		case <-ctx.Done():
			return protocol.Failure(protocol.OperationError("cancelled: " + ctx.Err().Error()))
		case <-time.After(300 * time.Millisecond):
			return protocol.Success(nil)
		}
	})
	_, addr := testkit.StartServer(t, h, testConfig(), wait)
	conn := sendOnly(t, addr, map[string]any{"type": "list_pipelines"})
	defer conn.Close()
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	body, err := protocol.ReadFrame(conn, 0)
	if err != nil {
		t.Fatalf("half-closed client got no answer: %v", err)
	}
	var env protocol.Envelope
	if err := json.Unmarshal(body, &env); err != nil || !env.Response.OK() {
		t.Fatalf("half-closed client's answer = %s, want success", body)
	}
}

// TestAbandonedRequestsLeaveHealthyPipelineAnswering is issue 9's case 4:
// 1100 clients send status to a hung pipeline; at most
// MaxQueuedPerPipeline wait, the rest are told it is busy, a healthy
// pipeline answers throughout, and once the clients reset every slot is
// released.
func TestAbandonedRequestsLeaveHealthyPipelineAnswering(t *testing.T) {
	const clients = 1100
	cfg := testConfig()
	cfg.Chaos = true
	cfg.HealthCheckInterval = time.Hour // the hung pipeline stays hung
	cfg.QueueTimeout = time.Minute      // its clients wait, unless they leave
	r := testkit.StartManager(t, cfg, memory(t))
	ctx := t.Context()
	healthy, hung := r.Init(t), r.Init(t)
	if err := r.Client.Chaos(ctx, hung, "hang_queue", nil); err != nil {
		t.Fatal(err)
	}
	srv := r.Service.Server()
	// The baseline of a quiet server: the connections of the calls above
	// are released just after their answers.
	const baseline = 0
	waitConnections(t, srv, baseline)

	conns := make([]net.Conn, clients)
	for i := range conns {
		conns[i] = sendOnly(t, r.Addr, map[string]any{"type": "status", "pipeline_id": hung})
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// Those beyond the queue are answered at once; the waiting ones are
	// not answered before this read's deadline.
	var mu sync.Mutex
	busy, other := 0, []string{}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			// Generous: busy answers come at once, the waiting ones never.
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			body, err := protocol.ReadFrame(c, 0)
			if err != nil {
				return
			}
			var env protocol.Envelope
			_ = json.Unmarshal(body, &env)
			mu.Lock()
			defer mu.Unlock()
			if env.Response.ErrorType == protocol.ErrTypeOperation && strings.Contains(env.Response.ErrorMessage, "busy") &&
				strings.Contains(env.Response.ErrorMessage, "STREAM_MANAGER_MAX_QUEUED_PER_PIPELINE=32") {
				busy++
			} else {
				other = append(other, string(body))
			}
		})
	}
	wg.Wait()
	if len(other) > 0 || busy < clients-cfg.MaxQueuedPerPipeline {
		t.Fatalf("%d busy answers (want >= %d), others: %.300q", busy, clients-cfg.MaxQueuedPerPipeline, other)
	}
	t.Logf("%d of %d requests to the hung pipeline answered busy at once", busy, clients)

	start := time.Now()
	if _, err := r.Client.Status(ctx, healthy); err != nil {
		t.Fatalf("healthy status beside %d waiting clients: %v", clients-busy, err)
	}
	t.Logf("healthy status beside the full queue of the hung pipeline: %v", time.Since(start))

	for _, c := range conns {
		reset(c)
	}
	start = time.Now()
	if _, err := r.Client.Status(ctx, healthy); err != nil {
		t.Fatalf("healthy status after %d resets: %v", clients, err)
	}
	t.Logf("healthy status right after %d clients reset: %v", clients, time.Since(start))
	waitConnections(t, srv, baseline)
	t.Logf("live connections back to %d %v after the resets", baseline, time.Since(start))
}

// TestTerminateHonoursCallerDeadline: a terminate whose caller gives up
// returns by the caller's deadline; the stop goes on in the background and
// the worker is still killed and reaped.
func TestTerminateHonoursCallerDeadline(t *testing.T) {
	cfg := testConfig()
	cfg.Chaos = true
	cfg.TerminationGracePeriod = 3 * time.Second
	r := testkit.StartManager(t, cfg, memory(t))
	id := r.Init(t)
	if err := r.Client.Chaos(t.Context(), id, "ignore_sigterm", nil); err != nil {
		t.Fatal(err)
	}
	const deadline = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	start := time.Now()
	resp := r.M.Handle(ctx, request(t, map[string]any{"type": "terminate", "pipeline_id": id}))
	took := time.Since(start)
	t.Logf("terminate with a %v deadline returned after %v (the stop takes the %v grace period)", deadline, took, cfg.TerminationGracePeriod)
	if took >= cfg.TerminationGracePeriod {
		t.Fatalf("terminate returned after %v: it waited for the stop, not for its caller", took)
	}
	if resp.OK() || resp.ErrorType != protocol.ErrTypeOperation || !strings.Contains(resp.ErrorMessage, "still being stopped") {
		t.Fatalf("terminate past its deadline = %+v, want operation_error saying the stop goes on", resp)
	}
	exit := r.Events.WaitFor(t, "worker exit", func(e manager.Event) bool {
		x, ok := e.(manager.WorkerExited)
		return ok && x.PipelineID == id
	}).(manager.WorkerExited)
	if !exit.Killed || exit.Reason != manager.ExitRequested {
		t.Fatalf("exit = %+v, want killed on request", exit)
	}
	if ids, err := r.Client.List(t.Context()); err != nil || len(ids) != 0 {
		t.Fatalf("list after the background stop = %v, %v; want empty", ids, err)
	}
}

// TestServerShutdownHonoursContext: Shutdown returns ctx.Err() when ctx
// ends before the requests in flight, and Close then reaps them.
func TestServerShutdownHonoursContext(t *testing.T) {
	entered := make(chan struct{})
	h := manager.HandlerFunc(func(ctx context.Context, req *protocol.Request) protocol.Response {
		close(entered)
		<-ctx.Done() // honours its context, and nothing else
		return protocol.Failure(protocol.OperationError("cancelled"))
	})
	srv, addr := testkit.StartServer(t, h, testConfig(), wait)
	conn := sendOnly(t, addr, map[string]any{"type": "list_pipelines"})
	defer conn.Close()
	select {
	case <-entered:
	case <-time.After(wait):
		t.Fatal("request never reached the handler")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := srv.Shutdown(ctx)
	t.Logf("Shutdown returned after %v", time.Since(start))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want context.DeadlineExceeded", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("Close after Shutdown: %v", err)
	}
	if err := srv.Shutdown(t.Context()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

// BenchmarkHealthyAfterAbandonWave measures a healthy pipeline's status
// right after a wave of 1100 clients sent status to a hung pipeline and
// reset (issue 9 asks under 100 ms), beside the same status on a calm
// manager, and reports both and their ratio.
func BenchmarkHealthyAfterAbandonWave(b *testing.B) {
	const clients = 1100
	cfg := testConfig()
	cfg.Chaos = true
	cfg.HealthCheckInterval = time.Hour
	cfg.QueueTimeout = time.Minute
	r := testkit.StartManager(b, cfg, memory(b))
	healthy, hung := r.Init(b), r.Init(b)
	if err := r.Client.Chaos(b.Context(), hung, "hang_queue", nil); err != nil {
		b.Fatal(err)
	}
	status := func() time.Duration {
		start := time.Now()
		if _, err := r.Client.Status(b.Context(), healthy); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	var calm, after []time.Duration
	for range 20 {
		calm = append(calm, status())
	}
	for b.Loop() {
		b.StopTimer()
		conns := make([]net.Conn, clients)
		for i := range conns {
			conns[i] = sendOnly(b, r.Addr, map[string]any{"type": "status", "pipeline_id": hung})
		}
		for _, c := range conns {
			reset(c)
		}
		b.StartTimer()
		after = append(after, status())
	}
	base, wave := median(calm), median(after)
	b.ReportMetric(float64(base.Microseconds()), "calm-µs")
	b.ReportMetric(float64(wave.Microseconds()), "after-wave-µs")
	b.ReportMetric(float64(wave)/float64(base), "ratio")
}
