package manager

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
)

// newID returns a random UUID (version 4), the shape upstream ids have.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// spawn launches a worker and enters it in the table, idle (for the warm
// pool) or already claimed (for an init that found no warm worker: it must
// never be visible as idle, or another init could take it and the pool
// would count it). Its exit is watched from now on. The RAM claim moves onto
// the entry as it enters the table (so no one sees it uncounted or takes it
// before it holds the claim), or is dropped when no entry is made.
func (m *Manager) spawn(ctx context.Context, idle bool, claim ramClaim) (*pipeline, error) {
	id := newID()
	proc, err := m.opts.Launcher.Launch(ctx, launch.Options{Name: id, Chaos: m.cfg.Chaos})
	if err != nil {
		m.drop(claim)
		return nil, err
	}
	p := &pipeline{
		id: id, proc: proc, state: protocol.StateIdle, idle: idle,
		probeTimeout: newAdaptiveTimeout(m.cfg.ProbeTimeoutFloor, m.cfg.HealthCheckTimeout),
		health:       healthRecord{Interval: m.cfg.HealthCheckInterval},
		quit:         make(chan struct{}),
	}
	p.ch = newWorkerChan(proc.Conn(), proc.Done(), m.cfg.MaxWorkerFrameBytes, func(rid string, garbage bool) {
		m.stale.Add(1)
		m.emit(StaleResponse{At: now(), PipelineID: id, RequestID: rid, Garbage: garbage})
	})
	m.mu.Lock()
	if m.closing {
		m.dropLocked(claim)
		m.mu.Unlock()
		_ = proc.Kill()
		m.watch(p) // reap it
		return nil, ErrShuttingDown
	}
	m.table[id] = p
	m.order[id] = m.seq.Add(1)
	m.attachLocked(claim, p)
	m.mu.Unlock()
	m.emit(PipelineStateChanged{At: now(), PipelineID: id, To: protocol.StateIdle})
	m.watch(p)
	return p, nil
}

// watch reaps the worker: when it exits, its channel is closed and it
// leaves the table at once, whoever stopped it. A channel whose reader
// stops while the worker lives has broken: the pipeline is failed and
// stopped (channelBroke), and the reap follows.
func (m *Manager) watch(p *pipeline) {
	watching := m.goOwned(func() {
		select {
		case <-p.proc.Done():
		case <-p.ch.readerDone:
			if err := p.ch.goneErr(); errors.Is(err, ErrChannelBroken) {
				m.channelBroke(p, "read", err)
			}
			<-p.proc.Done()
		}
		_ = p.ch.conn.Close()
		<-p.ch.readerDone
		exit := p.proc.Exit()

		m.mu.Lock()
		requested, reason, killed, idle := p.removal, p.exitReason, p.killed, p.idle
		if !requested {
			reason = ExitEnded
			if !exit.Clean() {
				reason = ExitCrashed
			}
		}
		m.mu.Unlock()
		// Sweep anything the worker left in its group.
		_ = p.proc.Kill()
		if !requested {
			m.setState(p, protocol.StateFailed)
		}
		// Out of the table before anyone hears of the exit, so observers
		// of the event never find the dead entry.
		m.remove(p)
		m.emit(WorkerExited{At: now(), PipelineID: p.id, Pid: p.proc.Pid(), Code: exit.Code,
			Signal: exit.Signal, Reason: reason, Killed: killed})
		if idle && !requested {
			m.kickPool()
		}
	})
	if !watching {
		// Shutdown is past its last phase: nobody will reap this worker
		// through the manager, so it is killed now and the launcher's own
		// close reaps it.
		_ = p.proc.Kill()
		m.remove(p)
	}
}

// remove takes p out of the table; its health record goes with it.
func (m *Manager) remove(p *pipeline) {
	m.mu.Lock()
	if m.table[p.id] == p {
		delete(m.table, p.id)
		delete(m.order, p.id)
	}
	m.mu.Unlock()
	p.leave()
}

// markRemoval marks p so no new command gets through; it reports false if
// it was already marked.
func (m *Manager) markRemoval(p *pipeline, reason string) bool {
	m.mu.Lock()
	first := m.markRemovalLocked(p, reason)
	m.mu.Unlock()
	p.ch.refuseNew()
	return first
}

// markRemovalLocked sets the mark with m.mu held; the caller must call
// p.ch.refuseNew once the lock is released.
func (m *Manager) markRemovalLocked(p *pipeline, reason string) bool {
	if p.removal {
		return false
	}
	p.removal, p.exitReason = true, reason
	return true
}

// init takes a warm worker (or launches one), sends it the init payload and
// answers with the new pipeline id, on failure too.
func (m *Manager) init(ctx context.Context, req *protocol.Request) protocol.Response {
	fail := func(id string, e *protocol.Error) protocol.Response {
		r := protocol.Failure(e)
		r.PipelineID = id
		return r
	}
	if m.isClosing() {
		return fail("", protocol.OperationError("The stream manager is shutting down; init refused."))
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.QueueTimeout)
	defer cancel()
	// A warm worker's memory was admitted when the pool started it; a new
	// worker's is admitted now. Either way the reservation is p's from
	// here and leaves the table with it, on failure too.
	key := videoKey(req)
	p := m.takeIdle()
	if p != nil {
		m.claimWarm(p, key)
	} else {
		claim, perr := m.admit(key)
		if perr != nil {
			return fail("", perr)
		}
		var err error
		if p, err = m.spawn(ctx, false, claim); err != nil {
			return fail("", protocol.OperationError(fmt.Sprintf("Could not start a worker: %v.", err)))
		}
	}
	m.setState(p, protocol.StateStarting)
	start := time.Now()
	r, err := p.ch.call(ctx, m.workerCommand(protocol.TypeInit, req), m.cfg.QueueTimeout, callOpts{})
	if err != nil || !r.OK() {
		// A failed init leaves no process behind.
		m.markRemoval(p, ExitRequested)
		m.stopPipeline(p, 0)
		if err != nil {
			return fail(p.id, m.callFailed(p, protocol.TypeInit, nil, m.cfg.QueueTimeout, err))
		}
		r.PipelineID = p.id
		return r
	}
	m.commandTimeout(p, protocol.TypeInit).Observe(time.Since(start))
	m.setState(p, protocol.StateRunning)
	// Refused only once Shutdown is past its phases, which stop p.
	m.goOwned(func() { m.healthLoop(p) })
	r.PipelineID = p.id
	return r
}

// takeIdle moves one warm worker out of the pool, or returns nil.
func (m *Manager) takeIdle() *pipeline {
	m.mu.Lock()
	defer m.mu.Unlock()
	var pick *pipeline
	for id, p := range m.table {
		if p.idle && !p.removal && (pick == nil || m.order[id] < m.order[pick.id]) {
			pick = p
		}
	}
	if pick != nil {
		pick.idle = false
		m.order[pick.id] = m.seq.Add(1)
		m.kickPoolLocked()
	}
	return pick
}

func (m *Manager) kickPool() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.kickPoolLocked()
}

func (m *Manager) kickPoolLocked() {
	if m.cfg.PreloadedProcesses == 0 {
		return
	}
	select {
	case m.poolKick <- struct{}{}:
	default:
	}
}

// poolLoop keeps PreloadedProcesses idle workers ready.
func (m *Manager) poolLoop() {
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.poolKick:
		}
		// Only this loop adds idle workers, so the count it reads cannot
		// grow behind its back; a warm worker's memory is reserved like an
		// init's (memory.go), and the pool does not grow past the limit.
		for m.idleCount() < m.cfg.PreloadedProcesses && !m.isClosing() {
			claim, perr := m.admit("")
			if perr != nil {
				m.emit(PipelineError{At: now(), Op: "preload", Err: perr})
				break // the next kick (an exit or a take) retries
			}
			ctx, cancel := context.WithTimeout(m.ctx, m.cfg.QueueTimeout)
			_, err := m.spawn(ctx, true, claim)
			cancel()
			if err != nil {
				if !errors.Is(err, ErrShuttingDown) {
					m.emit(PipelineError{At: now(), Op: "preload", Err: err})
				}
				break // the next kick (an exit or a take) retries
			}
		}
	}
}

func (m *Manager) idleCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, p := range m.table {
		if p.idle && !p.removal {
			n++
		}
	}
	return n
}

func (m *Manager) isClosing() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closing
}

// terminate marks the pipeline for removal and runs its stop sequence in a
// goroutine the manager owns; it answers success once the worker has
// exited, or operation_error as soon as ctx ends first (the client left or
// its deadline passed), while the stop goes on in the background: a
// terminate never takes longer than its caller allows, and never leaves a
// pipeline half-stopped.
func (m *Manager) terminate(ctx context.Context, id string) protocol.Response {
	m.mu.Lock()
	p, ok := m.table[id]
	if ok && p.idle {
		ok = false
	}
	m.mu.Unlock()
	if !ok {
		// Upstream answers an unknown id on terminate with invalid_payload.
		return protocol.Failure(protocol.InvalidPayload(fmt.Sprintf("Could not find InferencePipeline with id=%s.", id)))
	}
	if !m.markRemoval(p, ExitRequested) {
		return protocol.Failure(beingTerminated(id))
	}
	stopped := make(chan error, 1)
	if !m.goOwned(func() { stopped <- m.stopPipeline(p, m.cfg.TerminationGracePeriod) }) {
		// Only once Shutdown is past its phases, and they stop p.
		return protocol.Failure(protocol.OperationError(fmt.Sprintf(
			"Pipeline %s is being stopped by the stream manager's shutdown.", id)))
	}
	select {
	case err := <-stopped:
		if err != nil {
			return protocol.Failure(protocol.OperationError(fmt.Sprintf("Pipeline %s: %v.", id, err)))
		}
		return protocol.Success(nil)
	case <-ctx.Done():
		return protocol.Failure(protocol.OperationError(fmt.Sprintf(
			"Pipeline %s: terminate abandoned by its caller (%v); the pipeline is still being stopped.", id, ctx.Err())))
	}
}

// stopMarked stops p, already marked for removal by the caller, from a
// goroutine the manager owns. Refused only once Shutdown is past its
// phases, which stop every pipeline.
func (m *Manager) stopMarked(p *pipeline) {
	m.goOwned(func() { _ = m.stopPipeline(p, m.cfg.TerminationGracePeriod) })
}
