package scenarios

import (
	"cmp"
	"slices"
	"time"

	"github.com/corral-dev/corral/chaos"
)

// serialBounds returns, for each client invoke (by index), the bound its
// answer is judged by. A concurrent manager answers each request within
// RequestBound. A serial one (Profile.Serial: one request at a time, as
// upstream's server) may first have to finish every request that was in
// flight when this one was sent, plus one request of the harness's own
// sampler (QueueTimeout), plus what remained of every misbehaving client
// connection the nemesis held open then (a stalled or oversized frame
// holds a serial server until it gives up on it): the bound is the sum. Requests
// that are never answered stay unanswered whatever the bound, so a target
// that freezes is still judged by requests_answered.
func serialBounds(d *RunData, v *opView) map[int]time.Duration {
	type event struct {
		at    int64
		delta time.Duration
		inv   *Op // set on the invoke's own start event
	}
	var events []event
	for i := range d.Ops {
		inv := &d.Ops[i]
		if inv.Type != OpInvoke || !isClientProcess(inv.Process) {
			continue
		}
		b := RequestBound(inv.F, d.Bounds)
		events = append(events, event{at: inv.Time, delta: b, inv: inv})
		if c := v.completion(inv); c != nil {
			events = append(events, event{at: c.Time, delta: -b})
		}
	}
	// At equal times, completions first: an answer and a new invoke in the
	// same nanosecond do not wait for each other.
	slices.SortStableFunc(events, func(a, b event) int {
		if c := cmp.Compare(a.at, b.at); c != 0 {
			return c
		}
		return cmp.Compare(a.delta, b.delta)
	})
	// The nemesis's client connections: open from the injection to the
	// completion of the heal that waited for them.
	type span struct{ from, to int64 }
	var held []span
	end := runEnd(d)
	for _, w := range nemesisFaults(d) {
		if w.OK != nil && w.Fault != nil && w.Fault.Level() == chaos.LevelClient {
			to := w.End
			if to < 0 {
				to = end
			}
			held = append(held, span{w.Invoke.Time, to})
		}
	}
	out := map[int]time.Duration{}
	var inFlight time.Duration
	for _, e := range events {
		if e.inv != nil {
			b := inFlight + e.delta + d.Bounds.QueueTimeout
			for _, h := range held {
				if h.from <= e.at && e.at < h.to {
					b += time.Duration(h.to - e.at)
				}
			}
			out[e.inv.Index] = b
		}
		inFlight += e.delta
	}
	return out
}

// requestBounder returns the bound of each client invoke: RequestBound,
// or serialBounds for a serial target.
func requestBounder(d *RunData, v *opView) func(inv *Op) time.Duration {
	if !d.Profile.Serial {
		return func(inv *Op) time.Duration { return RequestBound(inv.F, d.Bounds) }
	}
	sb := serialBounds(d, v)
	return func(inv *Op) time.Duration { return sb[inv.Index] }
}
