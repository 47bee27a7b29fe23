package launch

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/corral-dev/corral/manager/protocol"
)

// process is one worker started by Processes.
type process struct {
	launcher *Processes
	cmd      *exec.Cmd
	name     string
	pid      int
	conn     *pipeConn
	done     chan struct{}
	exit     Exit // written before done is closed

	// mu orders group signals against the leader's exit: while exited is
	// false the leader is alive or an unreaped zombie, so its pid, which
	// is the pgid, cannot have been recycled.
	mu     sync.Mutex
	exited bool
}

var _ Process = (*process)(nil)

func newProcess(l *Processes, cmd *exec.Cmd, name string, conn *pipeConn) *process {
	return &process{
		launcher: l,
		cmd:      cmd,
		name:     name,
		pid:      cmd.Process.Pid,
		conn:     conn,
		done:     make(chan struct{}),
	}
}

func (pr *process) Conn() Conn            { return pr.conn }
func (pr *process) Pid() int              { return pr.pid }
func (pr *process) Pgid() int             { return pr.pid } // Setpgid makes it the leader
func (pr *process) Done() <-chan struct{} { return pr.done }
func (pr *process) Terminate() error      { return pr.signalGroup(syscall.SIGTERM) }
func (pr *process) String() string        { return fmt.Sprintf("worker %q (pid %d)", pr.name, pr.pid) }

// Exit is valid once Done is closed; before that it is the zero Exit.
func (pr *process) Exit() Exit {
	select {
	case <-pr.done:
		return pr.exit
	default:
		return Exit{}
	}
}

// Kill SIGKILLs the whole group and closes the channel. Safe to call twice
// and after exit.
func (pr *process) Kill() error {
	err := pr.signalGroup(syscall.SIGKILL)
	pr.conn.Close()
	return err
}

// signalGroup signals the worker's process group. A group that no longer
// exists is not an error.
func (pr *process) signalGroup(sig syscall.Signal) error {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.exited && !pr.groupHasOurs() {
		// The leader is reaped and no marked member is left: the pgid
		// may already belong to a stranger.
		return nil
	}
	pr.launcher.rememberGroup(pr.pid)
	if err := syscall.Kill(-pr.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("launch: %s to group %d: %w", sig, pr.pid, err)
	}
	return nil
}

// groupHasOurs reports whether a live process carrying our marker is still
// in the worker's group (a grandchild that outlived the leader).
func (pr *process) groupHasOurs() bool {
	members, err := pr.launcher.groups.groupMembers(pr.pid)
	if err != nil {
		return false
	}
	want := []byte(protocol.EnvManagerMarker + "=" + pr.launcher.marker)
	for _, m := range members {
		if !m.Zombie() && hasEnv(m.Pid, want) {
			return true
		}
	}
	return false
}

// wait learns of the leader's exit without reaping it, marks it exited
// under mu, then reaps it: a signal sent in between still reaches our group.
func (pr *process) wait() {
	waitExitedNoReap(pr.pid)
	pr.mu.Lock()
	pr.exited = true
	pr.mu.Unlock()

	err := pr.cmd.Wait()
	if errors.Is(err, exec.ErrWaitDelay) {
		pr.launcher.log.Warn("worker stderr held open by a descendant", "name", pr.name, "pid", pr.pid)
	}
	pr.exit = exitOf(pr.cmd.ProcessState, err)
	pr.launcher.log.Debug("worker exited", "name", pr.name, "pid", pr.pid,
		"code", pr.exit.Code, "signal", pr.exit.Signal)

	l := pr.launcher
	l.mu.Lock()
	delete(l.procs, pr.pid)
	l.mu.Unlock()
	close(pr.done)
}

// exitOf turns a wait result into an Exit. A non-zero status is reported in
// Code, not as Err; ErrWaitDelay only means a descendant kept stderr open.
func exitOf(state *os.ProcessState, err error) Exit {
	if state == nil {
		return Exit{Code: -1, Err: err}
	}
	e := Exit{Code: state.ExitCode()}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		e.Code, e.Signal = -1, ws.Signal().String()
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) && !errors.Is(err, exec.ErrWaitDelay) {
		e.Err = err
	}
	return e
}

// waitExitedNoReap blocks until pid has exited, leaving it a zombie
// (waitid with WNOWAIT). Errors (ECHILD: someone else reaped it) end the
// wait early; cmd.Wait then reports them.
func waitExitedNoReap(pid int) {
	const (
		pPID    = 1         // P_PID
		wExited = 0x4       // WEXITED
		wNoWait = 0x1000000 // WNOWAIT
	)
	var info [128]byte // siginfo_t; unused
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info[0])), wExited|wNoWait, 0, 0)
		if errno != syscall.EINTR {
			return
		}
	}
}

// pipeConn is the manager's ends of a worker's stdin and stdout. os.Pipe
// files are non-blocking and registered with the poller, so deadlines work
// and Close unblocks a pending Read or Write.
type pipeConn struct {
	w    *os.File // worker's stdin
	r    *os.File // worker's stdout
	once sync.Once
	err  error
}

func (c *pipeConn) Read(b []byte) (int, error)         { return c.r.Read(b) }
func (c *pipeConn) Write(b []byte) (int, error)        { return c.w.Write(b) }
func (c *pipeConn) SetWriteDeadline(t time.Time) error { return c.w.SetWriteDeadline(t) }
func (c *pipeConn) SetReadDeadline(t time.Time) error  { return c.r.SetReadDeadline(t) }

// Close closes both directions; safe to call twice.
func (c *pipeConn) Close() error {
	c.once.Do(func() { c.err = errors.Join(c.w.Close(), c.r.Close()) })
	return c.err
}
