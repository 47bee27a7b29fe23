// Package launch starts worker programs for the manager. Two launchers
// implement the same seam: Processes runs each worker as its own OS process
// (own process group, parent-death signal, reaped by a subreaper), and
// Memory runs the same worker loop in goroutines for deterministic tests.
package launch

import (
	"context"
	"io"
	"time"
)

// Launcher starts idle workers. A started worker waits for its first
// command (init) on its channel.
type Launcher interface {
	// Launch starts one worker; ctx bounds the start only, not the
	// worker's life.
	Launch(ctx context.Context, opts Options) (Process, error)
	// Close stops the launcher's own goroutines (reaper) and kills any
	// process it still knows of. Safe to call twice.
	Close() error
}

// Options are per-worker launch options.
type Options struct {
	// Name labels the worker in logs (the pipeline id or "pool-N").
	Name string
	// Chaos lets the worker obey fault commands.
	Chaos bool
}

// Conn is the manager's end of a worker channel: frames are written to the
// worker's stdin and read from its stdout.
type Conn interface {
	io.Reader
	io.Writer
	SetWriteDeadline(t time.Time) error
	// Close closes both directions; safe to call twice.
	Close() error
}

// Process is one running worker.
type Process interface {
	// Conn is the command channel.
	Conn() Conn
	// Pid and Pgid identify the OS process and its group; 0 for
	// in-memory workers.
	Pid() int
	Pgid() int
	// Terminate asks the worker's whole group to stop (SIGTERM).
	Terminate() error
	// Kill stops the worker's whole group at once (SIGKILL) and closes
	// the channel. Safe to call twice, and after exit.
	Kill() error
	// Done is closed once the worker has exited and been reaped.
	Done() <-chan struct{}
	// Exit describes how the worker ended; valid after Done is closed.
	Exit() Exit
}

// Exit describes how a worker ended.
type Exit struct {
	Code   int    // exit status, -1 when killed by a signal
	Signal string // signal name when killed by one, e.g. "killed"
	Err    error  // a wait error, if any
}

// Clean reports whether the worker exited with status 0.
func (e Exit) Clean() bool { return e.Code == 0 && e.Signal == "" && e.Err == nil }
