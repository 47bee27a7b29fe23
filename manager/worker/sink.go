package worker

import (
	"context"
	"sync"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// result is one buffered entry: the model's output for one frame.
type result struct {
	frameID   int
	timestamp time.Time
	width     int
	height    int
	analysis
}

// output is the entry as a consume_result output object, minus excluded keys.
func (r result) output(excluded []string) map[string]any {
	out := map[string]any{
		"brightness":      r.brightness,
		"contrast":        r.contrast,
		"motion":          r.motion,
		"motion_fraction": r.motionFraction,
		"width":           r.width,
		"height":          r.height,
	}
	for _, k := range excluded {
		delete(out, k)
	}
	return out
}

// metadata is the entry's frames_metadata element.
func (r result) metadata() map[string]any {
	return map[string]any{
		"frame_timestamp": r.timestamp.UTC().Format(time.RFC3339Nano),
		"frame_id":        r.frameID,
		"source_id":       0,
	}
}

// results is the memory sink: a bounded FIFO shared by the sink goroutine
// (put) and the command loop (pop). When full it applies the pipeline's
// buffer filling strategy. The adaptive strategies behave as their plain
// counterparts here: with one consumer there is no pace to adapt to.
type results struct {
	size     int
	strategy string
	// space gets a token on every pop, so a WAIT put can sleep on a
	// channel (and on ctx) instead of a condition variable.
	space chan struct{}

	mu      sync.Mutex
	items   []result
	dropped int
}

func newResults(size int, strategy string) *results {
	return &results{size: size, strategy: strategy, space: make(chan struct{}, 1), items: make([]result, 0, min(size, 1024))}
}

// put adds r, evicting or dropping per the strategy when full. Under WAIT it
// blocks until a pop makes room or ctx ends (then it returns ctx.Err()).
func (b *results) put(ctx context.Context, r result) error {
	for {
		b.mu.Lock()
		if len(b.items) < b.size {
			b.items = append(b.items, r)
			b.mu.Unlock()
			return nil
		}
		switch b.strategy {
		case protocol.FillDropLatest, protocol.FillAdaptiveDropLatest:
			b.dropped++
			b.mu.Unlock()
			return nil
		case protocol.FillWait:
			b.mu.Unlock()
			select {
			case <-b.space:
			case <-ctx.Done():
				return ctx.Err()
			}
		default: // DROP_OLDEST, ADAPTIVE_DROP_OLDEST
			copy(b.items, b.items[1:])
			b.items[len(b.items)-1] = r
			b.dropped++
			b.mu.Unlock()
			return nil
		}
	}
}

// pop removes and returns the oldest entry; ok is false when empty.
func (b *results) pop() (r result, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.items) == 0 {
		return result{}, false
	}
	r = b.items[0]
	copy(b.items, b.items[1:])
	b.items = b.items[:len(b.items)-1]
	select {
	case b.space <- struct{}{}:
	default:
	}
	return r, true
}
