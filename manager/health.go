package manager

import (
	"errors"
	"fmt"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// healthLoop probes one pipeline with status commands until it leaves the
// table. Probes use the pipeline's own channel only, never the table lock
// across I/O, and skip a round when a client command is in flight (that
// command is itself a liveness check), so they never block clients or other
// pipelines. The interval stretches up to 2x the base while healthy and
// drops to half of it after a failure.
func (m *Manager) healthLoop(p *pipeline) {
	base := m.cfg.HealthCheckInterval
	interval := base
	settled := false // its RAM reservation is released (memory.go)
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		select {
		case <-p.quit:
			return
		case <-m.ctx.Done():
			return
		case <-p.proc.Done():
			return
		case <-timer.C:
		}
		timeout := p.probeTimeout.Timeout()
		start := time.Now()
		cmd := protocol.WorkerCommand{RequestID: m.nextRequestID(), Type: protocol.TypeStatus}
		r, err := p.ch.call(m.ctx, cmd, timeout, callOpts{try: true})
		elapsed := time.Since(start)
		switch {
		case errors.Is(err, ErrBusy):
			// A client command is in flight and is itself a liveness
			// check, unless it has waited longer than a probe may.
			age, inflight := p.ch.inflightAge()
			if !inflight || age <= timeout {
				timer.Reset(interval)
				continue
			}
			err = fmt.Errorf("%w: %w: the command in flight has waited %s", ErrBusy, ErrTimeout, age.Round(time.Millisecond))
		case errors.Is(err, ErrChannelBroken) && p.ch.readerStopped():
			// The reply stream broke: no later probe can succeed. (A
			// broken write is a worker that stopped reading: its probes
			// keep failing fast and are counted below, like a hang.)
			if failures, ok := m.channelBroke(p, "probe", err); ok {
				m.emit(ProbeResult{At: now(), PipelineID: p.id, Duration: elapsed, Err: err,
					ConsecutiveFailures: failures, NextInterval: interval})
			}
			return
		case errors.Is(err, errRefused), errors.Is(err, ErrWorkerGone), m.ctx.Err() != nil:
			return // the stop sequence or the exit watcher owns it now
		case err == nil && !r.OK():
			err = fmt.Errorf("status answered %s: %s", r.ErrorType, r.ErrorMessage)
		case err == nil:
			report, _ := r.Fields["report"].(map[string]any)
			if report[protocol.ReportKeyStalled] == true {
				err = errSourceStalled
			} else if report[protocol.ReportKeyFinished] == true && m.finished(p) {
				return
			}
		}

		var before, after time.Duration
		if err == nil {
			if !settled {
				// Running for a probe interval, the worker has
				// grown to its working size: measure it once.
				m.settle(p)
				settled = true
			}
			before, after = p.probeTimeout.Observe(elapsed)
			interval = min(interval*3/2, 2*base)
		} else {
			if errors.Is(err, ErrTimeout) && !errors.Is(err, ErrBusy) {
				m.timeouts.Add(1)
				m.emit(CommandTimedOut{At: now(), PipelineID: p.id, Command: "probe", RequestID: cmd.RequestID, After: timeout})
				before, after = p.probeTimeout.TimedOut()
			}
			interval = max(base/2, 10*time.Millisecond)
		}
		failures, unhealthy := m.recordHealth(p, err, true, interval)
		if before != after {
			m.emit(TimeoutChanged{At: now(), PipelineID: p.id, Command: "probe", Before: before, After: after})
		}
		m.emit(ProbeResult{At: now(), PipelineID: p.id, Duration: elapsed, Err: err,
			TimedOut: errors.Is(err, ErrTimeout), ConsecutiveFailures: failures, NextInterval: interval})
		if failures >= m.cfg.MaxHealthFailures {
			if unhealthy {
				p.ch.refuseNew()
				_ = m.stopPipeline(p, m.cfg.TerminationGracePeriod)
			}
			return
		}
		timer.Reset(interval)
	}
}

// errSourceStalled fails a probe whose report shows a source that cannot
// reconnect and delivered no frame within its stall timeout: the worker
// answers, but its pipeline does no work.
var errSourceStalled = errors.New("a source that cannot reconnect is stalled (" + protocol.EnvSourceStallTimeout + ")")

// finished removes p, whose sources all ended and whose results were all
// consumed (the worker's report says so), as upstream's health pass removes
// such a pipeline: it leaves the table and its worker is stopped and
// reaped. It returns false when p was already marked (someone else owns
// its removal).
func (m *Manager) finished(p *pipeline) bool {
	m.mu.Lock()
	marked := m.table[p.id] == p && m.markRemovalLocked(p, ExitEnded)
	m.mu.Unlock()
	if !marked {
		return false
	}
	p.ch.refuseNew()
	m.stopMarked(p)
	return true
}

// recordHealth updates p's health record with one round trip's outcome and
// returns the consecutive failures. When they reach MaxHealthFailures the
// pipeline is marked for removal under the same lock, so no observer ever
// sees a record at the limit on an unmarked entry; unhealthy reports that
// this call set the mark, and the caller must then stop the pipeline. Probes and client commands both count:
// a worker that times out on a client's command has failed a liveness
// check just as a probe would, and under steady client load the probe
// itself is skipped (the slot is busy), so client timeouts must count or a
// hang would go unnoticed.
func (m *Manager) recordHealth(p *pipeline, err error, probe bool, interval time.Duration) (failures int, unhealthy bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := &p.health
	if probe {
		h.LastProbe = time.Now()
		h.Interval = interval
	}
	if err == nil {
		h.ConsecutiveFailures, h.LastError = 0, ""
	} else {
		h.ConsecutiveFailures++
		h.LastError = err.Error()
	}
	if h.ConsecutiveFailures >= m.cfg.MaxHealthFailures {
		unhealthy = m.markRemovalLocked(p, ExitUnhealthy)
	}
	return h.ConsecutiveFailures, unhealthy
}

// channelBroke fails p, whose worker channel broke during op (a reply over
// MaxWorkerFrameBytes, a bad frame header, output ended while the worker
// lives, a partial write): the channel cannot carry another command, so
// waiting for probes to time out would only leave a listed pipeline nobody
// can reach. The break is recorded as a failure in p's health record, p is
// marked for removal as unhealthy under the same lock and stopped from an
// owned goroutine. A pipeline already marked (or gone) belongs to whoever
// marked it. Called by the exit watcher, the health loop and failed
// commands; the first caller acts, and gets the failures now recorded and
// true.
func (m *Manager) channelBroke(p *pipeline, op string, err error) (failures int, acted bool) {
	m.mu.Lock()
	if p.removal || m.table[p.id] != p {
		m.mu.Unlock()
		return 0, false
	}
	p.health.ConsecutiveFailures++
	p.health.LastError = fmt.Sprintf("%s: %v", op, err)
	failures = p.health.ConsecutiveFailures
	m.markRemovalLocked(p, ExitUnhealthy)
	idle := p.idle
	m.mu.Unlock()
	p.ch.refuseNew()
	m.emit(PipelineError{At: now(), PipelineID: p.id, Op: op, Err: err})
	m.stopMarked(p)
	if idle {
		m.kickPool() // the marked worker no longer counts as warm
	}
	return failures, true
}
