package worker

import (
	"sync"
	"time"
)

// result is the model's output for one frame of one source.
type result struct {
	sourceID  int
	frameID   int
	timestamp time.Time
	width     int
	height    int
	analysis
}

// output is the result as a consume_result output object, minus excluded
// keys. Measured values are Python floats, sizes ints, as upstream's
// serialised predictions.
func (r result) output(excluded []string) map[string]any {
	out := map[string]any{
		"brightness":      pyFloat(r.brightness),
		"contrast":        pyFloat(r.contrast),
		"motion":          pyFloat(r.motion),
		"motion_fraction": pyFloat(r.motionFraction),
		"width":           r.width,
		"height":          r.height,
	}
	for _, k := range excluded {
		delete(out, k)
	}
	return out
}

// metadata is the result's frames_metadata element.
func (r result) metadata() map[string]any {
	return map[string]any{
		"frame_timestamp": pyTime(r.timestamp),
		"frame_id":        r.frameID,
		"source_id":       r.sourceID,
	}
}

// batch is one sink entry: the results of one inference round, one per
// source that had a frame (upstream's sink gets a list per round and
// consume_result returns it whole).
type batch []result

// results is the memory sink (upstream's InMemoryBufferSink): a bounded FIFO
// of batches shared by the inference stage (put) and the command loop
// (pop). It always keeps the newest results_buffer_size batches, dropping
// the oldest, whatever the source's filling strategy (that applies to the
// decoded-frame buffer, see frameBuffer).
type results struct {
	size int

	mu      sync.Mutex
	items   []batch
	dropped int
}

func newResults(size int) *results {
	return &results{size: size, items: make([]batch, 0, min(size, 1024))}
}

// put adds b, evicting the oldest batch when full. It never blocks.
func (s *results) put(b batch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.items) == s.size {
		copy(s.items, s.items[1:])
		s.items = s.items[:len(s.items)-1]
		s.dropped++
	}
	s.items = append(s.items, b)
}

// pop removes and returns the oldest batch; ok is false when empty.
func (s *results) pop() (b batch, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.items) == 0 {
		return nil, false
	}
	b = s.items[0]
	copy(s.items, s.items[1:])
	s.items[len(s.items)-1] = nil
	s.items = s.items[:len(s.items)-1]
	return b, true
}

// empty reports whether no batch is buffered.
func (s *results) empty() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items) == 0
}
