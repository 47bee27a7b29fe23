package manager

import (
	"sync"
	"time"
)

// adaptiveTimeout is an RTO-style deadline (RFC 6298): smoothed latency plus
// four deviations (at least a quarter of the smoothed latency), clamped to
// [floor, ceiling], doubled after each timeout.
// With no samples yet it is the ceiling, so a fresh pipeline gets the
// configured bound. Safe for concurrent use.
type adaptiveTimeout struct {
	mu             sync.Mutex
	floor, ceiling time.Duration
	srtt, rttvar   time.Duration
	samples        int
	backoff        uint
}

func newAdaptiveTimeout(floor, ceiling time.Duration) *adaptiveTimeout {
	floor = min(floor, ceiling)
	return &adaptiveTimeout{floor: floor, ceiling: ceiling}
}

// Timeout returns the current deadline.
func (a *adaptiveTimeout) Timeout() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.timeoutLocked()
}

func (a *adaptiveTimeout) timeoutLocked() time.Duration {
	if a.samples == 0 {
		return a.ceiling
	}
	// RFC 6298 adds max(G, 4*RTTVAR) to the smoothed latency, G the
	// clock granularity. Here G is a quarter of the smoothed latency: under
	// a steady latency RTTVAR decays to nothing, and a deadline equal to
	// the latency itself would race every reply (found in virtual time by
	// tests/property TestAdaptiveProbeTimeout: every other probe of a
	// steady slow worker timed out).
	t := a.srtt + max(4*a.rttvar, a.srtt/4)
	t = max(t, a.floor)
	for i := uint(0); i < a.backoff && t < a.ceiling; i++ {
		t *= 2
	}
	return min(t, a.ceiling)
}

// Observe records a successful round trip and clears the backoff; it
// returns the old and new deadline.
func (a *adaptiveTimeout) Observe(d time.Duration) (before, after time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	before = a.timeoutLocked()
	if a.samples == 0 {
		a.srtt, a.rttvar = d, d/2
	} else {
		diff := a.srtt - d
		if diff < 0 {
			diff = -diff
		}
		a.rttvar = (3*a.rttvar + diff) / 4
		a.srtt = (7*a.srtt + d) / 8
	}
	a.samples++
	a.backoff = 0
	return before, a.timeoutLocked()
}

// TimedOut backs the deadline off after a timeout; it returns the old and
// new deadline.
func (a *adaptiveTimeout) TimedOut() (before, after time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	before = a.timeoutLocked()
	if a.backoff < 16 {
		a.backoff++
	}
	return before, a.timeoutLocked()
}
