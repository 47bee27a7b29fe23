package manager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Service is a Manager served on a TCP listener: the one way `corral
// serve`, `corral demo`, the harness's embedded mode and the test rig
// start and stop the pair, so there is one teardown, not four.
type Service struct {
	m   *Manager
	srv *Server
	ln  net.Listener
	cfg Config

	served   chan struct{} // closed when Serve has returned
	serveErr error         // Serve's result, readable once served is closed

	stopOnce sync.Once
	stopped  chan struct{}
	stopErr  error
}

// StartService starts a Manager with cfg and opts, listens on cfg.Addr()
// and serves the manager behind Recover(opts.Log) and then mws (outermost
// first) from a goroutine the Service owns. Errors: cfg invalid (a
// *ConfigError, from New), or the listen failed. On error nothing is left
// running and opts.Launcher has been closed: the Service owns it from this
// call on, as the Manager does.
func StartService(cfg Config, opts Options, mws ...Middleware) (*Service, error) {
	m, err := New(cfg, opts)
	if err != nil {
		if opts.Launcher != nil {
			_ = opts.Launcher.Close()
		}
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // nothing runs yet: no grace to give
		return nil, errors.Join(fmt.Errorf("manager: listen: %w", err), m.Shutdown(ctx))
	}
	h := Chain(m, append([]Middleware{Recover(opts.Log)}, mws...)...)
	s := &Service{m: m, srv: NewServer(h, cfg, opts.Log), ln: ln, cfg: cfg,
		served: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(s.served)
		s.serveErr = s.srv.Serve(ln)
	}()
	return s, nil
}

// Addr returns the address the service listens on (host:port).
func (s *Service) Addr() string { return s.ln.Addr().String() }

// Manager returns the service's manager.
func (s *Service) Manager() *Manager { return s.m }

// Server returns the service's server.
func (s *Service) Server() *Server { return s.srv }

// Served is closed when the server has stopped serving: after Shutdown, or
// early when the listener failed (Shutdown then reports why).
func (s *Service) Served() <-chan struct{} { return s.served }

// ShutdownBound is how long Shutdown lets requests in flight finish: the
// longest a terminate can take (grace + join) plus a second.
func (s *Service) ShutdownBound() time.Duration {
	return s.cfg.TerminationGracePeriod + s.cfg.ProcessJoinTimeout + time.Second
}

// Shutdown stops the service: the server stops accepting and waits up to
// ShutdownBound for the requests in flight, while the manager runs its
// three bounded phases (see Manager.Shutdown); then connections still open
// are cut (Server.Close). Ending ctx hurries both, as a second signal does:
// the rest of the grace period is skipped and requests in flight are
// cancelled at once. It returns the manager's error, a listener failure,
// and requests still in flight after ShutdownBound, joined; requests cut
// short because ctx ended are not an error. Safe to call twice: later
// calls wait for the first (at most ShutdownBound plus the socket
// timeout) and return its result.
func (s *Service) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		defer close(s.stopped)
		s.stopErr = s.shutdown(ctx)
	})
	t := time.NewTimer(s.ShutdownBound() + s.cfg.SocketTimeout + time.Second)
	defer t.Stop()
	select {
	case <-s.stopped:
		return s.stopErr
	case <-t.C:
		return errors.New("manager: service shutdown in progress elsewhere did not finish")
	}
}

func (s *Service) shutdown(ctx context.Context) error {
	bound := s.ShutdownBound()
	srvCtx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	srvDone := make(chan error, 1)
	go func() { srvDone <- s.srv.Shutdown(srvCtx) }() // waited just below
	mErr := s.m.Shutdown(ctx)
	sErr := <-srvDone
	cErr := s.srv.Close()
	<-s.served // Serve returns once the listener is closed
	var errs []error
	if mErr != nil {
		errs = append(errs, mErr)
	}
	if sErr != nil && ctx.Err() == nil {
		errs = append(errs, fmt.Errorf("manager: requests still in flight %s into shutdown: %w", bound, sErr))
	}
	if cErr != nil {
		errs = append(errs, cErr)
	}
	if s.serveErr != nil && !errors.Is(s.serveErr, ErrServerClosed) {
		errs = append(errs, fmt.Errorf("manager: serve: %w", s.serveErr))
	}
	return errors.Join(errs...)
}
