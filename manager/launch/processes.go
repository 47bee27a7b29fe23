package launch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
	"github.com/corral-dev/corral/manager/worker"
)

// closeTimeout bounds how long Close waits for killed processes to be reaped.
const closeTimeout = 2 * time.Second

// ErrClosed is returned by Launch once Close has been called.
var ErrClosed = errors.New("launch: launcher closed")

// ProcessConfig configures a Processes launcher. The zero value runs
// os.Executable() with the argument "worker".
type ProcessConfig struct {
	// Command is the program and its arguments; empty means
	// os.Executable() + "worker".
	Command []string
	// Env holds extra environment entries, added to this process's own.
	// The launcher's own variables (mode, chaos, marker) always win.
	Env []string
	// Stderr receives the workers' logs; nil means os.Stderr. An *os.File
	// is handed to the worker directly, anything else costs a copying
	// goroutine per worker.
	Stderr io.Writer
	// Subreaper makes this process a child subreaper (process-wide, it
	// cannot be undone by Close) so that descendants which escape a
	// worker are reparented here, killed and reaped.
	Subreaper bool
	// Log receives the launcher's own diagnostics; nil discards them.
	Log *slog.Logger
}

// Processes launches each worker as an OS process in its own process group,
// with a parent-death signal so that workers die with the manager even when
// it is SIGKILLed.
type Processes struct {
	command []string
	env     []string
	stderr  io.Writer
	log     *slog.Logger
	marker  string
	self    int

	forks      chan forkRequest
	stop       chan struct{} // closed by Close: no more launches
	forkerDone chan struct{}
	reaperDone chan struct{} // nil without Subreaper
	sigchld    chan os.Signal

	// mu is held across fork+register and by every /proc sweep, so a
	// sweep never mistakes a just-forked worker for an escaped one.
	mu     sync.Mutex
	closed bool
	procs  map[int]*process // registered workers by pid, until reaped
	marked map[int]bool     // other pids seen carrying our marker, until gone (Subreaper only)

	// groups answers the group look-ups made before each signal, one
	// /proc scan for all those made at once (scan.go).
	groups sharedScan

	closeOnce sync.Once
	closeErr  error
}

var _ Launcher = (*Processes)(nil)

type forkRequest struct {
	ctx   context.Context
	opts  Options
	reply chan forkResult // unbuffered: a handoff either happens or not
}

type forkResult struct {
	proc *process
	err  error
}

// NewProcesses starts the launcher's forking thread and, with Subreaper,
// its reaper.
func NewProcesses(cfg ProcessConfig) (*Processes, error) {
	command := slices.Clone(cfg.Command)
	if len(command) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("launch: find own executable: %w", err)
		}
		command = []string{exe, "worker"}
	}
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("launch: marker: %w", err)
	}
	p := &Processes{
		command:    command,
		env:        workerBaseEnv(cfg.Env),
		stderr:     cfg.Stderr,
		log:        cfg.Log,
		self:       os.Getpid(),
		forks:      make(chan forkRequest),
		stop:       make(chan struct{}),
		forkerDone: make(chan struct{}),
		procs:      make(map[int]*process),
		marked:     make(map[int]bool),
	}
	p.marker = strconv.Itoa(p.self) + "-" + hex.EncodeToString(nonce[:])
	if p.stderr == nil {
		p.stderr = os.Stderr
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Subreaper {
		if err := setChildSubreaper(); err != nil {
			return nil, err
		}
		// Notify before the first fork so no SIGCHLD is missed.
		p.sigchld = make(chan os.Signal, 1)
		signal.Notify(p.sigchld, syscall.SIGCHLD)
		p.reaperDone = make(chan struct{})
		go p.reapLoop()
	}
	go p.forker()
	return p, nil
}

// Marker is the value of protocol.EnvManagerMarker in this launcher's workers; pass it to
// Census to find every process they left behind.
func (p *Processes) Marker() string { return p.marker }

// Launch starts one worker. ctx bounds the wait for the forking thread and
// the fork itself; a worker started after ctx ended is killed, not leaked.
func (p *Processes) Launch(ctx context.Context, opts Options) (Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	req := forkRequest{ctx: ctx, opts: opts, reply: make(chan forkResult)}
	select {
	case p.forks <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.stop:
		return nil, ErrClosed
	}
	select {
	case r := <-req.reply:
		if r.err != nil {
			return nil, r.err
		}
		return r.proc, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.stop:
		return nil, ErrClosed
	}
}

// forker owns the one OS thread that forks every worker. Pdeathsig fires
// when the thread that forked the child exits, not the process, so the
// thread is locked and never unlocked: it lives exactly as long as the
// launcher, and exits (killing any straggler) when forker returns.
func (p *Processes) forker() {
	runtime.LockOSThread()
	defer close(p.forkerDone)
	for {
		select {
		case req := <-p.forks:
			var r forkResult
			if err := req.ctx.Err(); err != nil {
				r.err = err
			} else {
				r.proc, r.err = p.start(req.opts)
			}
			select {
			case req.reply <- r:
			case <-req.ctx.Done():
				r.abandon()
			case <-p.stop:
				r.abandon()
			}
		case <-p.stop:
			return
		}
	}
}

// abandon kills a worker whose caller gave up before receiving it; its
// wait goroutine still reaps it.
func (r forkResult) abandon() {
	if r.proc != nil {
		_ = r.proc.Kill()
	}
}

// start forks one worker. It runs on the forker's locked thread.
func (p *Processes) start(opts Options) (*process, error) {
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("launch: stdin pipe: %w", err)
	}
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		return nil, fmt.Errorf("launch: stdout pipe: %w", err)
	}
	cmd := exec.Command(p.command[0], p.command[1:]...)
	cmd.Env = append(slices.Clone(p.env), protocol.EnvManagerMarker+"="+p.marker)
	if opts.Name != "" {
		cmd.Env = append(cmd.Env, protocol.EnvPipelineID+"="+opts.Name)
	}
	if opts.Chaos {
		cmd.Env = append(cmd.Env, protocol.EnvWorkerChaos+"=1")
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, stdoutW, p.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// A grandchild that keeps a copied stderr open must not stall Wait.
	cmd.WaitDelay = time.Second

	var proc *process
	p.mu.Lock()
	if p.closed {
		err = ErrClosed
	} else if err = cmd.Start(); err == nil {
		proc = newProcess(p, cmd, opts.Name, &pipeConn{w: stdinW, r: stdoutR})
		p.procs[proc.pid] = proc
		go proc.wait() // owned: Close waits for proc.done
	}
	p.mu.Unlock()
	// The child holds its own copies now; ours would hide EOF from both sides.
	stdinR.Close()
	stdoutW.Close()
	if err != nil {
		stdinW.Close()
		stdoutR.Close()
		if !errors.Is(err, ErrClosed) {
			err = fmt.Errorf("launch: start %s: %w", p.command[0], err)
		}
		return nil, err
	}
	p.log.Debug("worker started", "name", opts.Name, "pid", proc.pid)
	return proc, nil
}

// workerBaseEnv is this process's environment plus extra, without any
// variable the launcher sets itself, so a stray inherited or configured
// CORRAL_WORKER_CHAOS=1 cannot turn chaos on.
func workerBaseEnv(extra []string) []string {
	owned := func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return k == protocol.EnvWorkerMode || k == protocol.EnvWorkerChaos || k == protocol.EnvPipelineID || k == protocol.EnvManagerMarker
	}
	env := slices.DeleteFunc(append(os.Environ(), extra...), owned)
	return append(env, protocol.EnvWorkerMode+"="+worker.ModeWorker)
}

// Close stops launching, SIGKILLs every worker group and every marked
// descendant, and waits (at most 2 s) for them to be reaped. It returns an
// error naming whatever survived. Safe to call twice.
func (p *Processes) Close() error {
	p.closeOnce.Do(func() { p.closeErr = p.close() })
	return p.closeErr
}

func (p *Processes) close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	close(p.stop)
	// The forker may be finishing a start; after this no new worker appears.
	<-p.forkerDone
	if p.reaperDone != nil {
		<-p.reaperDone
		defer signal.Stop(p.sigchld)
		p.sweep() // learn every marked descendant while it is alive
	}
	p.mu.Lock()
	procs := make([]*process, 0, len(p.procs))
	for _, proc := range p.procs {
		procs = append(procs, proc)
	}
	p.mu.Unlock()
	var errs []error
	for _, proc := range procs {
		if err := proc.Kill(); err != nil {
			errs = append(errs, err)
		}
	}
	p.killMarked()

	// A context, not a timer: its Done channel stays closed for every wait.
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	for _, proc := range procs {
		select {
		case <-proc.done:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("launch: worker %q (pid %d) not reaped after %v", proc.name, proc.pid, closeTimeout))
		}
	}
	if p.reaperDone != nil {
		errs = append(errs, p.drainEscaped(ctx.Done())...)
	}
	errs = append(errs, p.survivors(ctx.Done())...)
	return errors.Join(errs...)
}

// killMarked SIGKILLs every live process carrying this launcher's marker,
// wherever it is in the process tree.
func (p *Processes) killMarked() {
	infos, err := Census(p.marker)
	if err != nil {
		p.log.Warn("census failed", "err", err)
		return
	}
	for _, info := range infos {
		if info.Pid != p.self && !info.Zombie() {
			_ = syscall.Kill(info.Pid, syscall.SIGKILL)
		}
	}
}

// survivors polls the census until no marked process is left alive or the
// deadline passes. Polling is the only way to learn that a process we are
// not the parent of has gone.
func (p *Processes) survivors(deadline <-chan struct{}) []error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		infos, err := Census(p.marker)
		if err != nil {
			return []error{err}
		}
		infos = slices.DeleteFunc(infos, func(i ProcInfo) bool { return i.Pid == p.self || i.Zombie() })
		if len(infos) == 0 {
			return nil
		}
		select {
		case <-tick.C:
			p.killMarked()
		case <-deadline:
			var errs []error
			for _, i := range infos {
				errs = append(errs, fmt.Errorf("launch: pid %d (%s, state %s) survived Close", i.Pid, i.Comm, i.State))
			}
			return errs
		}
	}
}
