package worker

import (
	"context"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// minWatchTick bounds how often the watchdog looks at the sources.
const minWatchTick = 20 * time.Millisecond

// stallFrames is how many frame intervals of silence count as a stall for
// a slow source, when that is longer than the base timeout.
const stallFrames = 3

// stallLimit is source's stall timeout: the base (STREAM_MANAGER_SOURCE_STALL_TIMEOUT),
// or stallFrames frame intervals of a slow source if longer.
func stallLimit(base time.Duration, fps float64) time.Duration {
	if fps > 0 {
		return max(base, time.Duration(stallFrames*float64(time.Second)/fps))
	}
	return base
}

// watch is the frame watchdog: a source that delivers no frame within its
// stall limit while connecting or running is reported (SOURCE_STALLED).
// A reconnectable source's connection is then abandoned (its reader
// reconnects with backoff), as is any source still connecting; a running
// source that cannot reconnect goes to ERROR and stays connected, so it
// recovers if frames come again, and the report's "stalled" key fails the
// manager's health probe meanwhile.
func (p *pipeline) watch(ctx context.Context) {
	base := p.spec.stallTimeout
	if base <= 0 {
		return
	}
	ticker := time.NewTicker(max(base/4, minWatchTick))
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-ticker.C:
			for _, f := range p.feeds {
				p.checkStall(f, now, base)
			}
		}
	}
}

func (p *pipeline) checkStall(f *feed, now time.Time, base time.Duration) {
	fps := 0.0
	if props, ok := f.props(); ok {
		fps = props.fps
		if p.spec.maxFPS > 0 {
			fps = min(fps, p.spec.maxFPS)
		}
	}
	limit := stallLimit(base, fps)
	m := p.monitor
	m.mu.Lock()
	src := &m.sources[f.id]
	state := src.state
	silent := now.Sub(src.lastFrame)
	watched := state == stateRunning || state == stateMuted || state == stateInitialising || state == stateRestarting
	if src.stalled || src.waiting || !watched || silent < limit {
		m.mu.Unlock()
		return
	}
	src.stalled = true
	connecting := state == stateInitialising || state == stateRestarting
	m.emitLocked(event{at: now, severity: severityWarning, kind: protocol.EventSourceStalled, context: contextSource,
		payload: map[string]any{"source_id": f.id, "seconds_without_frame": pyFloat(silent.Seconds()),
			"stall_timeout": pyFloat(limit.Seconds())}})
	if !connecting && !f.spec.reconnectable {
		m.transitionLocked(f.id, stateError)
	}
	m.mu.Unlock()
	p.log.Warn("source stalled", "source_id", f.id, "without_frame", silent.Round(time.Millisecond), "limit", limit)
	if connecting || f.spec.reconnectable {
		f.abandon(stallError(silent))
	}
}
