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
	held := clientHolds(d)
	out := map[int]time.Duration{}
	var inFlight time.Duration
	for _, e := range events {
		if e.inv != nil {
			out[e.inv.Index] = inFlight + e.delta + d.Bounds.QueueTimeout + held.remaining(e.at, -1)
		}
		inFlight += e.delta
	}
	return out
}

// holds are the nemesis's misbehaving client connections, each open from
// its injection (by the invoke's index) to the completion of the heal that
// waited for it.
type holds []hold

type hold struct {
	invoke   int
	from, to int64
}

func clientHolds(d *RunData) holds {
	var out holds
	end := runEnd(d)
	for _, w := range nemesisFaults(d) {
		if w.OK != nil && w.Fault != nil && w.Fault.Level() == chaos.LevelClient {
			to := w.End
			if to < 0 {
				to = end
			}
			out = append(out, hold{w.Invoke.Index, w.Invoke.Time, to})
		}
	}
	return out
}

// remaining is how long the connections open at time at (all but the one
// injected by invoke except) still held a serial server from then.
func (h holds) remaining(at int64, except int) time.Duration {
	var total time.Duration
	for _, c := range h {
		if c.invoke != except && c.from <= at && at < c.to {
			total += time.Duration(c.to - at)
		}
	}
	return total
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
