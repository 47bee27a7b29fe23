package manager

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// ErrSurvivors is returned by Shutdown when some worker would not die
// within the join timeout.
var ErrSurvivors = errors.New("manager: workers still alive after shutdown")

// askToStop sends terminate and SIGTERM to p's group at once (the polite
// half of the stop sequence); the terminate reply, if any, is awaited by an
// owned goroutine bounded by grace.
func (m *Manager) askToStop(p *pipeline, grace time.Duration) {
	p.termOnce.Do(func() {
		m.setState(p, protocol.StateTerminating)
		_ = p.proc.Terminate()
		if grace <= 0 {
			return
		}
		// Refused only after the last phase of Shutdown, when no reply
		// matters any more.
		m.goOwned(func() {
			cmd := protocol.WorkerCommand{RequestID: m.nextRequestID(), Type: protocol.TypeTerminate}
			_, _ = p.ch.call(m.ctx, cmd, grace, callOpts{force: true})
		})
	})
}

// kill SIGKILLs p's group and records that it had to.
func (m *Manager) kill(p *pipeline) {
	select {
	case <-p.proc.Done():
	default:
		m.mu.Lock()
		p.killed = true
		m.mu.Unlock()
	}
	_ = p.proc.Kill()
}

// stopPipeline runs the whole stop sequence for one pipeline already marked
// for removal: terminate + SIGTERM, up to grace; SIGKILL, up to the join
// timeout; then it leaves the table. Grace 0 kills at once (failed init).
// It returns an error only when the worker outlived the join timeout.
func (m *Manager) stopPipeline(p *pipeline, grace time.Duration) error {
	m.askToStop(p, grace)
	if !waitDone(p, grace, nil) {
		m.kill(p)
	}
	ok := waitDone(p, m.cfg.ProcessJoinTimeout, nil)
	if ok {
		<-p.quit // the watcher removes it right after the reap
	} else {
		m.remove(p)
	}
	if !ok {
		err := fmt.Errorf("worker pid %d did not exit within %s of SIGKILL", p.proc.Pid(), m.cfg.ProcessJoinTimeout)
		m.emit(PipelineError{At: now(), PipelineID: p.id, Op: "terminate", Err: err})
		return err
	}
	return nil
}

// waitDone waits up to d for p's worker to be reaped, or until skip closes.
func waitDone(p *pipeline, d time.Duration, skip <-chan struct{}) bool {
	if d <= 0 {
		select {
		case <-p.proc.Done():
			return true
		default:
			return false
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.proc.Done():
		return true
	case <-t.C:
	case <-skip:
	}
	select {
	case <-p.proc.Done():
		return true
	default:
		return false
	}
}

// Shutdown stops the manager in three bounded phases: (1) mark every
// pipeline for removal, so new commands get operation_error; (2) send
// terminate and SIGTERM to every worker at once and wait up to the grace
// period; (3) SIGKILL the survivors' groups and wait up to the join timeout
// for them to be reaped. Cancelling ctx skips the rest of phase 2 (a second
// signal). Total time is at most grace + join + a small epsilon, whatever
// the number of pipelines. Safe to call more than once; later calls wait
// for the first and return its result.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.shutdownOnce.Do(func() {
		defer close(m.shutdownDone)
		m.shutdownErr = m.shutdown(ctx)
	})
	select {
	case <-m.shutdownDone:
		return m.shutdownErr
	case <-time.After(m.cfg.TerminationGracePeriod + m.cfg.ProcessJoinTimeout + 5*time.Second):
		return fmt.Errorf("%w: shutdown in progress elsewhere did not finish", ErrSurvivors)
	}
}

func (m *Manager) shutdown(ctx context.Context) error {
	// Phase 1: mark.
	start := time.Now()
	m.mu.Lock()
	m.closing = true
	all := make([]*pipeline, 0, len(m.table))
	for _, p := range m.table {
		all = append(all, p)
	}
	m.mu.Unlock()
	m.emit(ShutdownPhase{At: now(), Phase: 1, Name: "mark", Pipelines: len(all)})
	for _, p := range all {
		m.markRemoval(p, ExitRequested)
	}
	m.emit(ShutdownPhase{At: now(), Phase: 1, Name: "mark", Pipelines: len(all), Done: true, Duration: time.Since(start)})

	// Phase 2: terminate + SIGTERM everything at once, wait up to grace.
	start = time.Now()
	m.emit(ShutdownPhase{At: now(), Phase: 2, Name: "terminate", Pipelines: len(all)})
	// Concurrently: signalling a worker's group first looks its members
	// up in /proc, and concurrent look-ups share one scan (launch).
	each(all, func(p *pipeline) { m.askToStop(p, m.cfg.TerminationGracePeriod) })
	survivors := waitAll(all, m.cfg.TerminationGracePeriod, ctx.Done())
	m.emit(ShutdownPhase{At: now(), Phase: 2, Name: "terminate", Pipelines: len(all), Done: true,
		Duration: time.Since(start), Survivors: len(survivors)})

	// Phase 3: SIGKILL the survivors' groups, wait up to the join timeout.
	start = time.Now()
	m.emit(ShutdownPhase{At: now(), Phase: 3, Name: "kill", Pipelines: len(survivors)})
	each(survivors, m.kill)
	left := waitAll(survivors, m.cfg.ProcessJoinTimeout, nil)
	each(all, func(p *pipeline) {
		_ = p.proc.Kill() // sweep group members left behind by exited leaders
		m.remove(p)
	})
	m.cancel() // stops the pool and health loops
	launcherErr := m.opts.Launcher.Close()
	m.emit(ShutdownPhase{At: now(), Phase: 3, Name: "kill", Pipelines: len(survivors), Done: true,
		Duration: time.Since(start), Survivors: len(left)})

	m.mu.Lock()
	m.joining = true // goOwned refuses from here on: no Add races this Wait
	m.mu.Unlock()
	waited := make(chan struct{})
	go func() { m.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(m.cfg.ProcessJoinTimeout):
		// Only a worker that outlived SIGKILL keeps a watcher alive.
	}
	var errs []error
	if len(left) > 0 {
		ids := make([]string, len(left))
		for i, p := range left {
			ids[i] = fmt.Sprintf("%s (pid %d)", p.id, p.proc.Pid())
		}
		errs = append(errs, fmt.Errorf("%w: %s", ErrSurvivors, strings.Join(ids, ", ")))
	}
	if launcherErr != nil {
		errs = append(errs, launcherErr)
	}
	return errors.Join(errs...)
}

// waitAll waits up to d (or until skip closes) for every pipeline's worker
// to be reaped and returns those still alive.
// each runs f for every pipeline concurrently and returns when all have
// returned; f must not block (signals, table updates).
func each(ps []*pipeline, f func(*pipeline)) {
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() { f(p) })
	}
	wg.Wait()
}

func waitAll(ps []*pipeline, d time.Duration, skip <-chan struct{}) []*pipeline {
	var wg sync.WaitGroup
	alive := make([]bool, len(ps))
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			alive[i] = !waitDone(p, d, skip)
		}()
	}
	wg.Wait()
	var out []*pipeline
	for i, p := range ps {
		if alive[i] {
			out = append(out, p)
		}
	}
	return out
}
