package testkit

import (
	"sync"
	"testing"
	"time"

	"github.com/corral-dev/corral/manager"
)

// Wait is the bound on every wait of this package when a caller sets none.
const Wait = 15 * time.Second

// Recorder keeps every manager event and wakes waiters on each new one.
// Install its Hook as (or among) the manager's hooks.
type Recorder struct {
	bound time.Duration

	mu     sync.Mutex
	events []manager.Event
	more   chan struct{} // closed and replaced on each event
}

// NewRecorder returns a recorder whose WaitFor gives up after bound;
// 0 means Wait.
func NewRecorder(bound time.Duration) *Recorder {
	if bound <= 0 {
		bound = Wait
	}
	return &Recorder{bound: bound, more: make(chan struct{})}
}

// Hook records e; it is a manager.Hook.
func (r *Recorder) Hook(e manager.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	close(r.more)
	r.more = make(chan struct{})
	r.mu.Unlock()
}

// WaitFor returns the first event matching pred, earlier ones included. It
// fails the test, naming what, when none comes within the recorder's bound.
func (r *Recorder) WaitFor(t testing.TB, what string, pred func(manager.Event) bool) manager.Event {
	t.Helper()
	deadline := time.NewTimer(r.bound)
	defer deadline.Stop()
	seen := 0
	for {
		r.mu.Lock()
		for ; seen < len(r.events); seen++ {
			if pred(r.events[seen]) {
				e := r.events[seen]
				r.mu.Unlock()
				return e
			}
		}
		more := r.more
		r.mu.Unlock()
		select {
		case <-more:
		case <-deadline.C:
			t.Fatalf("no %s event within %s", what, r.bound)
		}
	}
}

// All returns a copy of the events so far, in order.
func (r *Recorder) All() []manager.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]manager.Event(nil), r.events...)
}
