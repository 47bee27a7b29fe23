package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("manager: server closed")

// Server answers the wire protocol: one request frame in, one response frame
// out, per connection, many connections at once.
//
// The client has nothing to send after its request, so while the handler
// runs the server keeps reading to learn when the client has gone: a reset
// or read error means gone at once; EOF means gone SocketTimeout later (a
// client that half-closed may still read its answer; one that closed gets
// no more time than any socket operation). Its request's context is then
// cancelled and its connection stops counting against MaxConnections, so
// departed clients never hold slots for long.
type Server struct {
	Handler Handler
	// SocketTimeout bounds reading the request and writing the response,
	// and Close's wait for connections it has cut.
	SocketTimeout time.Duration
	// MaxFrameBytes caps request frames (protocol.DefaultMaxFrameBytes if 0).
	MaxFrameBytes int
	// MaxConnections caps live connections (1024 if 0).
	MaxConnections int
	// Log receives connection-level problems; nil discards them.
	Log *slog.Logger

	mu       sync.Mutex
	ln       net.Listener
	conns    map[net.Conn]*connState
	closed   bool
	wg       sync.WaitGroup // one per tracked connection
	sem      chan struct{}  // one token per live connection
	baseCtx  context.Context
	cancel   context.CancelFunc
	drained  chan struct{} // closed once closed is set and wg is zero
	initOnce sync.Once
	drainOne sync.Once
}

// connState is guarded by Server.mu.
type connState struct {
	busy bool // the request was read and its handler runs
}

// NewServer returns a server for h configured from cfg.
func NewServer(h Handler, cfg Config, log *slog.Logger) *Server {
	return &Server{Handler: h, SocketTimeout: cfg.SocketTimeout, MaxFrameBytes: cfg.MaxFrameBytes,
		MaxConnections: cfg.MaxConnections, Log: log}
}

func (s *Server) setup() {
	s.initOnce.Do(func() {
		if s.MaxConnections <= 0 {
			s.MaxConnections = 1024
		}
		if s.SocketTimeout <= 0 {
			s.SocketTimeout = 5 * time.Second
		}
		if s.Log == nil {
			s.Log = slog.New(slog.DiscardHandler)
		}
		s.sem = make(chan struct{}, s.MaxConnections)
		s.conns = map[net.Conn]*connState{}
		s.baseCtx, s.cancel = context.WithCancel(context.Background())
		s.drained = make(chan struct{})
	})
}

// Connections returns the number of live client connections, those
// counted against MaxConnections. A connection whose client has gone stops
// counting at once, even while its request is still being cancelled.
func (s *Server) Connections() int {
	s.setup()
	return len(s.sem)
}

// Serve accepts connections on ln until Shutdown or Close; it returns
// ErrServerClosed then.
func (s *Server) Serve(ln net.Listener) error {
	s.setup()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	s.ln = ln
	s.mu.Unlock()
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			// Transient accept errors (EMFILE, ECONNABORTED) back off as
			// net/http does; the listener keeps serving.
			var ne net.Error
			if errors.As(err, &ne) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if !s.track(conn) {
			_ = conn.Close()
			continue
		}
		select {
		case s.sem <- struct{}{}:
			go s.serveConn(conn, true)
		default:
			go s.serveConn(conn, false)
		}
	}
}

// track registers c; it refuses once the server is closed, so wg.Add never
// races the wait for drained.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = &connState{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// serveConn answers one connection with exactly one frame (or none when the
// peer never sent a complete header in time or vanished).
func (s *Server) serveConn(conn net.Conn, admitted bool) {
	defer s.untrack(conn)
	defer conn.Close()
	requestID := newID()
	if !admitted {
		s.write(conn, requestID, "", protocol.Failure(protocol.InternalError(
			fmt.Sprintf("Too many open connections (STREAM_MANAGER_MAX_CONNECTIONS=%d); retry later.", s.MaxConnections))))
		return
	}
	release := sync.OnceFunc(func() { <-s.sem })
	defer release()

	_ = conn.SetReadDeadline(time.Now().Add(s.SocketTimeout))
	body, err := protocol.ReadFrame(conn, s.MaxFrameBytes)
	if err != nil {
		var tooLarge *protocol.FrameTooLargeError
		switch {
		case errors.As(err, &tooLarge):
			s.write(conn, requestID, "", protocol.Failure(protocol.InvalidPayload(fmt.Sprintf(
				"Request frame of %d bytes exceeds the limit of %d bytes (STREAM_MANAGER_MAX_FRAME_BYTES).", tooLarge.Size, tooLarge.Limit))))
			s.drainRefused(conn)
		case errors.Is(err, protocol.ErrEmptyFrame):
			s.write(conn, requestID, "", protocol.Failure(protocol.InvalidPayload("Request frame is empty.")))
		case isTimeout(err):
			s.Log.Debug("client did not send a request in time", "remote", conn.RemoteAddr(), "timeout", s.SocketTimeout)
		default:
			s.Log.Debug("request read failed", "remote", conn.RemoteAddr(), "err", err)
		}
		return
	}
	req, err := protocol.ParseRequest(body)
	if err != nil {
		s.write(conn, requestID, pipelineIDHint(body), protocol.Failure(err))
		return
	}
	ctx, cancel := context.WithCancel(s.baseCtx)
	defer cancel()
	stopWatch := s.watchPeer(conn, func(err error) {
		s.Log.Debug("client left before its answer", "remote", conn.RemoteAddr(), "type", req.Type, "err", err)
		cancel()
		release()
	})
	resp := s.Handler.Handle(ctx, req)
	stopWatch()
	// Written even to a client that has gone: one that only half-closed
	// still reads, and a write to a closed peer fails at once.
	s.write(conn, requestID, "", resp)
}

// drainRefused half-closes conn after its refusal was written and discards
// what the client still sends, until it closes or SocketTimeout passes.
// Closing a socket with unread input resets the connection, and a client
// still sending its oversized body (upstream's sends it whole before
// reading) would see the reset instead of the answer.
func (s *Server) drainRefused(conn net.Conn) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = conn.SetReadDeadline(time.Now().Add(s.SocketTimeout))
	_, _ = io.Copy(io.Discard, conn)
}

// watchPeer reads conn while its request is handled and calls gone once
// the client has left: at once when the connection is reset or fails, and
// SocketTimeout after EOF, since a client that only half-closed its side
// may still be reading (one request per connection: it has nothing more to
// send) and gets the bound of any socket operation to be answered. Bytes
// after the request are ignored. The returned stop ends the watch and
// waits for its goroutine.
func (s *Server) watchPeer(conn net.Conn, gone func(error)) (stop func()) {
	s.mu.Lock()
	if st := s.conns[conn]; st != nil {
		st.busy = true // Shutdown no longer cuts its reads
	}
	s.mu.Unlock()
	// After busy is set, so a deadline Shutdown set just before is undone.
	_ = conn.SetReadDeadline(time.Time{})
	stopped := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 512)
		for {
			_, err := conn.Read(buf)
			switch {
			case err == nil:
				continue
			case isTimeout(err):
				return // stop's own deadline, never the client's
			case errors.Is(err, io.EOF):
				t := time.NewTimer(s.SocketTimeout)
				defer t.Stop()
				select {
				case <-t.C:
					gone(fmt.Errorf("half-closed and not answered within %s", s.SocketTimeout))
				case <-stopped:
				}
				return
			default:
				gone(err)
				return
			}
		}
	}()
	return func() {
		close(stopped)
		_ = conn.SetReadDeadline(time.Unix(1, 0))
		<-done
	}
}

// pipelineIDHint echoes a well-formed pipeline_id of a request that failed
// validation, as upstream's envelope does.
func pipelineIDHint(body []byte) string {
	var v struct {
		PipelineID string `json:"pipeline_id"`
	}
	_ = json.Unmarshal(body, &v)
	return v.PipelineID
}

func (s *Server) write(conn net.Conn, requestID, pipelineID string, resp protocol.Response) {
	if resp.PipelineID == "" {
		resp.PipelineID = pipelineID
	}
	body, err := json.Marshal(protocol.NewEnvelope(requestID, resp))
	if err != nil {
		body, _ = json.Marshal(protocol.NewEnvelope(requestID, protocol.Failure(protocol.InternalError("response could not be encoded"))))
	}
	_ = conn.SetWriteDeadline(time.Now().Add(s.SocketTimeout))
	if err := protocol.WriteFrame(conn, body); err != nil {
		s.Log.Debug("response write failed", "remote", conn.RemoteAddr(), "err", err)
	}
}

// Shutdown stops accepting, closes idle connections (those still waiting
// for a request), and waits for the requests in flight to be answered.
// When ctx ends first it cancels their contexts, closes their connections
// and returns ctx.Err() at once, as net/http's Shutdown does; their
// goroutines are still tracked, and Close waits for them. Safe to call
// twice.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopAccepting()
	s.mu.Lock()
	for c, st := range s.conns {
		if !st.busy {
			_ = c.SetReadDeadline(time.Now())
		}
	}
	s.mu.Unlock()
	select {
	case <-s.drained:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.abort()
		return ctx.Err()
	}
}

// Close stops accepting, cancels every request in flight and closes every
// connection at once, then waits up to SocketTimeout for their goroutines
// (handlers honour their context, so they end promptly). It returns an
// error naming the connections still being served after that. Safe to call
// twice, and after Shutdown.
func (s *Server) Close() error {
	s.stopAccepting()
	s.abort()
	t := time.NewTimer(s.SocketTimeout)
	defer t.Stop()
	select {
	case <-s.drained:
		return nil
	case <-t.C:
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		return fmt.Errorf("manager: %d connections still being served %s after Close", n, s.SocketTimeout)
	}
}

// stopAccepting closes the listener, refuses new connections and starts
// the one goroutine that closes drained when the last connection ends.
func (s *Server) stopAccepting() {
	s.setup()
	s.mu.Lock()
	s.closed = true
	if s.ln != nil {
		_ = s.ln.Close()
	}
	s.mu.Unlock()
	// After closed is set, track refuses, so no Add races this Wait.
	s.drainOne.Do(func() {
		go func() {
			s.wg.Wait()
			close(s.drained)
		}()
	})
}

// abort cancels every request in flight and closes every connection.
func (s *Server) abort() {
	s.cancel()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
}
