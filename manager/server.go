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
type Server struct {
	Handler Handler
	// SocketTimeout bounds reading the request and writing the response.
	SocketTimeout time.Duration
	// MaxFrameBytes caps request frames (protocol.DefaultMaxFrameBytes if 0).
	MaxFrameBytes int
	// MaxConnections caps open connections (1024 if 0).
	MaxConnections int
	// Log receives connection-level problems; nil discards them.
	Log *slog.Logger

	mu       sync.Mutex
	ln       net.Listener
	conns    map[net.Conn]struct{}
	closed   bool
	wg       sync.WaitGroup
	sem      chan struct{}
	baseCtx  context.Context
	cancel   context.CancelFunc
	initOnce sync.Once
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
			s.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
		}
		s.sem = make(chan struct{}, s.MaxConnections)
		s.conns = map[net.Conn]struct{}{}
		s.baseCtx, s.cancel = context.WithCancel(context.Background())
	})
}

// Serve accepts connections on ln until Shutdown; it returns
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

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
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
	defer func() { <-s.sem }()

	_ = conn.SetReadDeadline(time.Now().Add(s.SocketTimeout))
	body, err := protocol.ReadFrame(conn, s.MaxFrameBytes)
	if err != nil {
		var tooLarge *protocol.FrameTooLargeError
		switch {
		case errors.As(err, &tooLarge):
			s.write(conn, requestID, "", protocol.Failure(protocol.InvalidPayload(fmt.Sprintf(
				"Request frame of %d bytes exceeds the limit of %d bytes (STREAM_MANAGER_MAX_FRAME_BYTES).", tooLarge.Size, tooLarge.Limit))))
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
	resp := s.Handler.Handle(s.baseCtx, req)
	s.write(conn, requestID, "", resp)
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

// Shutdown stops accepting, lets in-flight requests finish, and returns
// when all connections are closed or ctx ends; then it closes the rest and
// returns ctx.Err(). Safe to call twice.
func (s *Server) Shutdown(ctx context.Context) error {
	s.setup()
	s.mu.Lock()
	s.closed = true
	if s.ln != nil {
		_ = s.ln.Close()
	}
	// Idle connections still waiting for a request are closed now.
	for c := range s.conns {
		_ = c.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.cancel()
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		<-done // closed connections end their goroutines promptly
		return ctx.Err()
	}
}
