package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
)

var (
	// ErrTimeout is returned when a worker did not answer within its deadline.
	ErrTimeout = errors.New("manager: worker did not answer in time")
	// ErrWorkerGone is returned when the worker exited or its channel closed.
	ErrWorkerGone = errors.New("manager: worker exited")
	// ErrBusy is returned by a probe when a command is already in flight.
	ErrBusy = errors.New("manager: a command is in flight")
	// ErrChannelBroken is returned after a partial write left the channel
	// out of frame; the pipeline must be stopped.
	ErrChannelBroken = errors.New("manager: worker channel broken")
	// errRefused is returned once the pipeline is marked for removal.
	errRefused = errors.New("manager: pipeline is being terminated")
	// errQueued marks a timeout spent waiting behind the command in
	// flight: the worker never saw this command.
	errQueued = errors.New("queued behind the command in flight")
)

// callOpts tune one call: try fails with ErrBusy instead of waiting for the
// slot (probes); force passes a channel that refuses new commands (the
// stop sequence's own terminate).
type callOpts struct{ try, force bool }

// workerChan is the manager's end of one worker's command channel: one
// command in flight, replies matched by request id, anything else dropped
// as stale. A reader goroutine owns the read side for the channel's life.
type workerChan struct {
	conn     launch.Conn
	exited   <-chan struct{} // the process is gone
	maxFrame int
	onStale  func(requestID string, garbage bool)

	slot chan struct{} // holds a token while a command is in flight

	mu      sync.Mutex
	waiting string                 // request id being waited for
	sentAt  time.Time              // when the command in flight was written
	reply   chan protocol.Response // buffered 1
	broken  bool
	refuse  bool // marked for removal: only forced calls pass

	readerDone chan struct{}
}

func newWorkerChan(conn launch.Conn, exited <-chan struct{}, maxFrame int, onStale func(string, bool)) *workerChan {
	w := &workerChan{
		conn: conn, exited: exited, maxFrame: maxFrame, onStale: onStale,
		slot:       make(chan struct{}, 1),
		readerDone: make(chan struct{}),
	}
	go w.read()
	return w
}

// read delivers replies until the channel closes.
func (w *workerChan) read() {
	defer close(w.readerDone)
	for {
		body, err := protocol.ReadFrame(w.conn, w.maxFrame)
		if err != nil {
			return
		}
		var r protocol.WorkerReply
		if err := json.Unmarshal(body, &r); err != nil || r.RequestID == "" {
			w.onStale("", true)
			continue
		}
		w.mu.Lock()
		if r.RequestID == w.waiting {
			w.waiting = ""
			w.reply <- r.Response // buffered, one reply per waiter
			w.mu.Unlock()
			continue
		}
		w.mu.Unlock()
		w.onStale(r.RequestID, false)
	}
}

// done is closed once the worker can no longer answer.
func (w *workerChan) dead() bool {
	select {
	case <-w.readerDone:
		return true
	case <-w.exited:
		return true
	default:
		return false
	}
}

// refuseNew makes every later unforced call fail with errRefused, even one
// that passed the table lookup just before the pipeline was marked.
func (w *workerChan) refuseNew() {
	w.mu.Lock()
	w.refuse = true
	w.mu.Unlock()
}

// call sends cmd and waits for its reply, at most timeout in all (waiting
// for the slot included).
func (w *workerChan) call(ctx context.Context, cmd protocol.WorkerCommand, timeout time.Duration, o callOpts) (protocol.Response, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	if o.try {
		select {
		case w.slot <- struct{}{}:
		default:
			return protocol.Response{}, ErrBusy
		}
	} else {
		select {
		case w.slot <- struct{}{}:
		case <-timer.C:
			return protocol.Response{}, fmt.Errorf("%w (%w)", ErrTimeout, errQueued)
		case <-ctx.Done():
			return protocol.Response{}, ctx.Err()
		case <-w.readerDone:
			return protocol.Response{}, ErrWorkerGone
		case <-w.exited:
			return protocol.Response{}, ErrWorkerGone
		}
	}
	defer func() { <-w.slot }()

	reply := make(chan protocol.Response, 1)
	w.mu.Lock()
	if w.broken {
		w.mu.Unlock()
		return protocol.Response{}, ErrChannelBroken
	}
	if w.refuse && !o.force {
		w.mu.Unlock()
		return protocol.Response{}, errRefused
	}
	w.waiting, w.reply, w.sentAt = cmd.RequestID, reply, time.Now()
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		if w.waiting == cmd.RequestID {
			w.waiting = "" // a reply arriving from now on is stale
		}
		w.mu.Unlock()
	}()

	if w.dead() {
		return protocol.Response{}, ErrWorkerGone
	}
	body, err := json.Marshal(cmd)
	if err != nil {
		return protocol.Response{}, fmt.Errorf("manager: encode command: %w", err)
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = w.conn.SetWriteDeadline(deadline)
	if err := protocol.WriteFrame(w.conn, body); err != nil {
		// A short write leaves the worker mid-frame: the channel cannot be
		// trusted again.
		w.mu.Lock()
		w.broken = true
		w.mu.Unlock()
		if w.dead() {
			return protocol.Response{}, ErrWorkerGone
		}
		if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			return protocol.Response{}, fmt.Errorf("%w (write): %w", ErrTimeout, ErrChannelBroken)
		}
		return protocol.Response{}, fmt.Errorf("%w: %v", ErrChannelBroken, err)
	}

	select {
	case r := <-reply:
		return r, nil
	case <-timer.C:
		return protocol.Response{}, ErrTimeout
	case <-ctx.Done():
		return protocol.Response{}, ctx.Err()
	case <-w.readerDone:
		return w.lastChance(reply)
	case <-w.exited:
		return w.lastChance(reply)
	}
}

// lastChance returns a reply that raced with the worker's exit, if any.
func (w *workerChan) lastChance(reply chan protocol.Response) (protocol.Response, error) {
	select {
	case r := <-reply:
		return r, nil
	default:
		return protocol.Response{}, ErrWorkerGone
	}
}

// inflightAge returns how long the command in flight has waited for its
// reply, or false when none is.
func (w *workerChan) inflightAge() (time.Duration, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.waiting == "" {
		return 0, false
	}
	return time.Since(w.sentAt), true
}

func (w *workerChan) isBroken() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.broken
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
