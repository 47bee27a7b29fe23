// Package logsink makes log output never fatal and never blocking: a Sink
// is an io.Writer for log lines that queues them (bounded) and writes them
// from one goroutine of its own, dropping and counting what the output
// refuses or what does not fit; SurviveSIGPIPE keeps a closed stdout or
// stderr from killing the process.
//
// A manager whose log reader went away (`corral serve 2>&1 | tee log`, then
// tee dies) or stalled (a terminal scrolled back, a full pipe) must go on
// answering requests: with log/slog over a Sink it does.
package logsink

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// DefaultLimit is the queue bound of New when limit <= 0: 1 MiB of lines.
const DefaultLimit = 1 << 20

// warnEvery spaces loss warnings out while the output keeps losing lines.
const warnEvery = 10 * time.Second

// Stats counts what a Sink could not deliver.
type Stats struct {
	// Dropped lines did not fit in the queue (the output was too slow or
	// stalled).
	Dropped int64
	// Failed lines were refused by the output (EPIPE: its reader is gone).
	Failed int64
	// LastError is the output's last write error, if any.
	LastError error
}

// Lost is the number of lines that never reached the output.
func (s Stats) Lost() int64 { return s.Dropped + s.Failed }

// Sink is a bounded, non-blocking io.Writer for log lines. Write copies
// the line into a queue of at most limit bytes and returns at once, never
// an error; one goroutine writes the queue to the output in order. Lines
// that do not fit are dropped and lines the output refuses are failed, both
// counted. When the output has caught up after a loss, one warning line
// with the counts follows (at most one per 10 s), and Close writes that
// warning too if a loss is still unreported. Safe for concurrent use.
type Sink struct {
	out   io.Writer
	limit int

	mu       sync.Mutex
	queue    [][]byte
	queued   int // bytes in queue (the batch being written is not counted)
	closed   bool
	stats    Stats
	reported int64     // lost lines already reported in a warning
	warned   time.Time // when the last warning was written (writer goroutine only)

	wake chan struct{} // buffered 1
	done chan struct{} // closed when the writer goroutine ends
	quit chan struct{} // closed by Close

	closeOnce sync.Once
}

// New starts a Sink writing to out with a queue of at most limit bytes
// (DefaultLimit if limit <= 0; the batch the goroutine is writing is held
// besides, so memory stays under twice the limit). Stop it with Close.
func New(out io.Writer, limit int) *Sink {
	if limit <= 0 {
		limit = DefaultLimit
	}
	s := &Sink{out: out, limit: limit, wake: make(chan struct{}, 1),
		done: make(chan struct{}), quit: make(chan struct{})}
	go s.run()
	return s
}

// Write queues a copy of p. It never blocks on the output and always
// returns len(p), nil: a log line that cannot be delivered is counted, not
// reported to the logger (which could only log it again).
func (s *Sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	switch {
	case s.closed:
		s.stats.Failed++
	case s.queued+len(p) > s.limit:
		s.stats.Dropped++
	default:
		s.queue = append(s.queue, append([]byte(nil), p...))
		s.queued += len(p)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

// Stats returns the counts so far.
func (s *Sink) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// run is the one goroutine that writes to the output.
func (s *Sink) run() {
	defer close(s.done)
	for {
		select {
		case <-s.wake:
		case <-s.quit:
			s.flush()
			s.warn()
			return
		}
		s.flush()
	}
}

// flush writes every queued line; once the output has caught up (the queue
// is empty and the last line went through), the loss warning follows if
// one is owed and none was written in the last warnEvery, so a flapping
// output is not flooded with warnings; Close reports the rest.
func (s *Sink) flush() {
	for {
		s.mu.Lock()
		lines := s.queue
		s.queue, s.queued = nil, 0
		s.mu.Unlock()
		if len(lines) == 0 {
			return
		}
		var err error
		for _, line := range lines {
			if _, err = s.out.Write(line); err != nil {
				s.mu.Lock()
				s.stats.Failed++
				s.stats.LastError = err
				s.mu.Unlock()
			}
		}
		s.mu.Lock()
		caughtUp := len(s.queue) == 0
		s.mu.Unlock()
		if caughtUp && err == nil && time.Since(s.warned) >= warnEvery {
			s.warn()
		}
	}
}

// warn writes one warning line if lines were lost since the last one.
func (s *Sink) warn() {
	s.mu.Lock()
	st := s.stats
	owed := st.Lost() > s.reported
	s.mu.Unlock()
	if !owed {
		return
	}
	last := ""
	if st.LastError != nil {
		last = fmt.Sprintf(" last_error=%q", st.LastError.Error())
	}
	line := fmt.Sprintf("time=%s level=WARN msg=\"log output lost lines\" dropped=%d failed=%d%s\n",
		time.Now().Format(time.RFC3339Nano), st.Dropped, st.Failed, last)
	if _, err := io.WriteString(s.out, line); err == nil {
		s.warned = time.Now()
		s.mu.Lock()
		s.reported = st.Lost()
		s.mu.Unlock()
	}
}

// Close stops accepting lines (later ones are counted as failed), writes
// what is queued and the loss warning if one is owed, and stops the
// goroutine. It returns ctx.Err() if the output is still blocked when ctx
// ends: a write to a stalled pipe cannot be interrupted, so that goroutine
// ends only when the write does (or the process exits). Safe to call
// twice.
func (s *Sink) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.quit)
	})
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SurviveSIGPIPE makes a write to a closed pipe or socket on stdout or
// stderr fail with EPIPE instead of killing the process. Go kills a
// program on SIGPIPE from fds 1 and 2 unless it is notified of SIGPIPE,
// whatever the parent's disposition (a parent that ignores SIGPIPE, as
// systemd does, does not help: Go installs its own handler). Being
// notified, unlike signal.Ignore, is not inherited by children through
// exec. The notifications themselves are dropped (the channel is never
// read and Notify never blocks on it); the failed writes are what count,
// and a Sink counts them. Process-wide; call it once from main.
func SurviveSIGPIPE() {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
}
