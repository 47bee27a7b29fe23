package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
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
	// ErrChannelBroken is returned once the channel cannot carry another
	// command: a partial write left it out of frame, or its reader stopped
	// on a reply it could not take (over STREAM_MANAGER_MAX_WORKER_FRAME_BYTES,
	// empty, truncated) or on end of output while the worker lives. The
	// pipeline has failed and must be stopped.
	ErrChannelBroken = errors.New("manager: worker channel broken")
	// errRefused is returned once the pipeline is marked for removal.
	errRefused = errors.New("manager: pipeline is being terminated")
	// errQueued marks a timeout spent waiting behind the command in
	// flight: the worker never saw this command.
	errQueued = errors.New("queued behind the command in flight")
)

// callOpts tune one call: try fails with ErrBusy instead of waiting for the
// slot (probes); force passes a channel that refuses new commands (the
// stop sequence's own terminate); beforeRelease, if set, runs once the
// call is over but while it still holds the slot, so no later command can
// have completed when it runs (a shared status stops taking joiners there).
type callOpts struct {
	try, force    bool
	beforeRelease func()
}

// workerChan is the manager's end of one worker's command channel: one
// command in flight, replies matched by request id, anything else dropped
// as stale. A reader goroutine owns the read side for the channel's life;
// when it stops, readErr says why and readerDone is closed.
type workerChan struct {
	conn     launch.Conn
	exited   <-chan struct{} // the process is gone
	maxFrame int             // STREAM_MANAGER_MAX_WORKER_FRAME_BYTES
	onStale  func(requestID string, garbage bool)

	slot chan struct{} // holds a token while a command is in flight

	mu      sync.Mutex
	waiting string                 // request id being waited for
	sentAt  time.Time              // when the command in flight was written
	reply   chan protocol.Response // buffered 1
	broken  bool
	refuse  bool  // marked for removal: only forced calls pass
	readErr error // why the reader stopped; set before readerDone closes

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

// read delivers replies until the channel closes or a frame cannot be
// taken. A well-framed body that is not a reply leaves the framing intact
// and is dropped as garbage; a bad header or a short body does not.
func (w *workerChan) read() {
	defer close(w.readerDone)
	for {
		body, err := protocol.ReadFrame(w.conn, w.maxFrame)
		if err != nil {
			var big *protocol.FrameTooLargeError
			if errors.As(err, &big) {
				err = fmt.Errorf("reply frame of %d bytes exceeds STREAM_MANAGER_MAX_WORKER_FRAME_BYTES=%d", big.Size, big.Limit)
			}
			w.mu.Lock()
			w.readErr = err
			w.mu.Unlock()
			return
		}
		r, err := protocol.DecodeWorkerReply(body)
		if err != nil || r.RequestID == "" {
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
	// One deadline for the whole call: the write below must not restart
	// it after a wait for the slot (found in virtual time by
	// tests/property: a command queued behind a probe of a hung worker
	// answered after 1.25x its deadline).
	deadline := time.Now().Add(timeout)
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
			return protocol.Response{}, w.goneErr()
		case <-w.exited:
			return protocol.Response{}, ErrWorkerGone
		}
	}
	defer func() {
		if o.beforeRelease != nil {
			o.beforeRelease()
		}
		<-w.slot
	}()

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
		return protocol.Response{}, w.goneErr()
	}
	body, err := json.Marshal(cmd)
	if err != nil {
		return protocol.Response{}, fmt.Errorf("manager: encode command: %w", err)
	}
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
			return protocol.Response{}, w.goneErr()
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
		return protocol.Response{}, w.goneErr()
	}
}

// exitSettle is how long a worker whose output ended has to be reaped
// before its channel counts as broken: a worker that exits closes its
// output a moment before the reaper sees it, and that is an exit (crash or
// end), not a break.
const exitSettle = time.Second

// goneErr says why the channel can no longer answer: ErrWorkerGone when
// the worker exited (waiting up to exitSettle after its output ended), or
// ErrChannelBroken with the reader's cause while the worker lives. It
// must only be called once dead reports true.
func (w *workerChan) goneErr() error {
	select {
	case <-w.exited:
		return ErrWorkerGone
	default:
	}
	w.mu.Lock()
	cause := w.readErr
	w.mu.Unlock()
	if cause == nil { // the reader is still running: the exit came first
		return ErrWorkerGone
	}
	if endOfOutput(cause) {
		t := time.NewTimer(exitSettle)
		defer t.Stop()
		select {
		case <-w.exited:
			return ErrWorkerGone
		case <-t.C:
		}
		cause = fmt.Errorf("the worker's output ended (%v) but it is still running after %s", cause, exitSettle)
	}
	return fmt.Errorf("%w: %w", ErrChannelBroken, cause)
}

// endOfOutput reports a reader that stopped because the worker's output
// ended or the channel was closed (by a kill), rather than on a frame it
// could not take.
func endOfOutput(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, protocol.ErrTruncated) ||
		errors.Is(err, io.ErrClosedPipe) || errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed)
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

// readerStopped reports whether the reply stream has ended.
func (w *workerChan) readerStopped() bool {
	select {
	case <-w.readerDone:
		return true
	default:
		return false
	}
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
