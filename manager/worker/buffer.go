package worker

import (
	"context"
	"sync"

	"github.com/corral-dev/corral/manager/protocol"
)

// frameBuffer is one source's decoded-frame buffer (upstream's
// VideoSource frames buffer, decoding_buffer_size frames): the source's
// reader puts, the inference stage takes. The filling strategy decides what
// a put into a full buffer does, the consumption strategy what a take
// returns (upstream inference 1.5.0, camera/video_source.py):
//   - DROP_OLDEST / ADAPTIVE_DROP_OLDEST: the oldest buffered frame goes;
//   - DROP_LATEST / ADAPTIVE_DROP_LATEST: the new frame goes;
//   - WAIT: the reader blocks until the inference stage takes a frame;
//   - EAGER: a take returns the newest frame and drops the older ones;
//   - LAZY: a take returns the oldest frame.
//
// The adaptive strategies behave as their plain counterparts: upstream's
// adaptive variants also drop frames before the buffer is full when the
// reader outpaces the consumer, which Corral does not emulate (README,
// compatibility table).
type frameBuffer struct {
	size        int
	filling     string
	consumption string
	// ready is shared by every buffer of a pipeline: it gets a token on
	// every put and close, so the inference stage sleeps on one channel
	// for all sources.
	ready chan struct{}
	// space gets a token on every take, so a WAIT put sleeps on a
	// channel (and on ctx) instead of a condition variable.
	space chan struct{}

	mu      sync.Mutex
	frames  []frame
	closed  bool
	dropped int
}

func newFrameBuffer(size int, filling, consumption string, ready chan struct{}) *frameBuffer {
	return &frameBuffer{
		size: size, filling: filling, consumption: consumption, ready: ready,
		space: make(chan struct{}, 1), frames: make([]frame, 0, min(size, 64)),
	}
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// put adds f per the filling strategy. Under WAIT it blocks until a take
// makes room or ctx ends (then it returns ctx.Err()).
func (b *frameBuffer) put(ctx context.Context, f frame) error {
	for {
		b.mu.Lock()
		if len(b.frames) < b.size {
			b.frames = append(b.frames, f)
			b.mu.Unlock()
			notify(b.ready)
			return nil
		}
		switch b.filling {
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
			copy(b.frames, b.frames[1:])
			b.frames[len(b.frames)-1] = f
			b.dropped++
			b.mu.Unlock()
			notify(b.ready)
			return nil
		}
	}
}

// close marks the end of the source: take drains what is buffered, then
// reports done.
func (b *frameBuffer) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	notify(b.ready)
}

// take removes one frame per the consumption strategy; ok is false when the
// buffer is empty, done is true when it is also closed.
func (b *frameBuffer) take() (f frame, ok, done bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.frames) == 0 {
		return frame{}, false, b.closed
	}
	if b.consumption == protocol.ConsumeEager {
		f = b.frames[len(b.frames)-1]
		b.dropped += len(b.frames) - 1
		clear(b.frames)
		b.frames = b.frames[:0]
	} else {
		f = b.frames[0]
		copy(b.frames, b.frames[1:])
		b.frames[len(b.frames)-1] = frame{}
		b.frames = b.frames[:len(b.frames)-1]
	}
	notify(b.space)
	return f, true, false
}
