package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/corral-dev/corral/manager/logsink"
	"github.com/corral-dev/corral/manager/protocol"
)

// Modes of Main, selected by protocol.EnvWorkerMode.
const (
	ModeWorker     = "worker"
	ModeGrandchild = "grandchild"
)

// grandchildWait bounds how long Main waits for its grandchildren after
// closing their stdin: they exit at EOF, but Main must not hang on them.
const grandchildWait = time.Second

// sinkCloseTimeout bounds writing the last log lines at exit to a stderr
// that may be stalled.
const sinkCloseTimeout = 500 * time.Millisecond

// flushTimeout bounds MainOptions.Flush, so telemetry never delays a
// worker's exit by more than this.
const flushTimeout = 2 * time.Second

// MainOptions are the host's additions to a worker process. The zero value
// is a worker without tracing.
type MainOptions struct {
	// Tracer traces commands and frames; nil traces nothing.
	Tracer Tracer
	// Flush, if set, is called once before the worker exits (also before a
	// crash fault's exit) to flush telemetry. MainWith bounds its ctx to
	// 2 s; Flush must honour it. Its error is logged, not fatal.
	Flush func(ctx context.Context) error
}

// Main is the entry point of a worker OS process (`corral worker`, and test
// binaries that re-execute themselves). It returns the process exit status.
func Main() int { return MainWith(MainOptions{}) }

// MainWith is Main with a tracer and a flush hook, for hosts that trace.
func MainWith(o MainOptions) int {
	if os.Getenv(protocol.EnvWorkerMode) == ModeGrandchild {
		return grandchildMain()
	}
	// A closed or stalled stderr (the manager's log reader went away) must
	// neither kill nor block the worker: stdout is the command channel,
	// and losing log lines is better than losing the pipeline.
	logsink.SurviveSIGPIPE()
	sink := logsink.New(os.Stderr, 256<<10)
	closeSink := func() {
		ctx, cancel := context.WithTimeout(context.Background(), sinkCloseTimeout)
		defer cancel()
		_ = sink.Close(ctx)
	}
	defer closeSink()
	log := slog.New(slog.NewTextHandler(sink, nil)).With("pid", os.Getpid())
	var flushOnce sync.Once
	flush := func() {
		flushOnce.Do(func() {
			if o.Flush == nil {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
			defer cancel()
			if err := o.Flush(ctx); err != nil {
				log.Warn("telemetry flush failed", "err", err)
			}
		})
	}
	defer flush()

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM)
	terminate := make(chan struct{}, 1)
	stopForward := make(chan struct{})
	forwarded := make(chan struct{})
	go func() {
		defer close(forwarded)
		for {
			select {
			case <-signals:
				select {
				case terminate <- struct{}{}:
				default: // one pending signal is enough
				}
			case <-stopForward:
				return
			}
		}
	}()

	stall, err := protocol.ParseSourceStallTimeout(os.Getenv(protocol.EnvSourceStallTimeout))
	if err != nil {
		log.Error("bad configuration", "err", err)
		return 2
	}
	width, height, err := protocol.ParseDecodeSize(os.Getenv(protocol.EnvDecodeSize))
	if err != nil {
		log.Error("bad configuration", "err", err)
		return 2
	}
	spawner := &grandchildren{log: log}
	err = Run(context.Background(), Config{
		StallTimeout: stall,
		DecodeWidth:  width,
		DecodeHeight: height,
		// Hiding Close keeps Run from waiting for a blocking read of
		// stdin that Close cannot interrupt; the exit ends it.
		In:              struct{ io.Reader }{os.Stdin},
		Out:             os.Stdout,
		Log:             log,
		Chaos:           os.Getenv(protocol.EnvWorkerChaos) == "1",
		Terminate:       terminate,
		Exit:            func(code int) { flush(); closeSink(); os.Exit(code) },
		SpawnGrandchild: spawner.spawn,
		Tracer:          o.Tracer,
	})
	// Flush while SIGTERM is still caught: the manager's stop sequence
	// sends one right after the terminate command this worker obeyed.
	flush()
	signal.Stop(signals)
	close(stopForward)
	<-forwarded
	spawner.release()

	var exit *ExitError
	switch {
	case err == nil:
		log.Info("worker exiting")
		return 0
	case errors.As(err, &exit):
		log.Error("worker exiting", "exit_code", exit.Code)
		return exit.Code
	default:
		log.Error("worker failed", "err", err)
		return 1
	}
}

// grandchildMain blocks until stdin reaches EOF. Its parent worker holds the
// write end, so the grandchild outlives the worker only briefly, unless the
// worker is killed along with a process group it has escaped: exactly the
// leak the manager must find.
func grandchildMain() int {
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// grandchildren starts and tracks the spawn_grandchild processes of a worker
// process.
type grandchildren struct {
	log     *slog.Logger
	mu      sync.Mutex
	writers []*os.File // write ends of the grandchildren's stdin
	wg      sync.WaitGroup
}

// spawn starts a grandchild in its own session, outside the worker's process
// group, with stdin a pipe the worker keeps open for its life. Stdout and
// stderr are not inherited: a grandchild holding the worker's stdout would
// keep the manager from ever seeing EOF.
func (g *grandchildren) spawn() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), protocol.EnvWorkerMode+"="+ModeGrandchild)
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		return fmt.Errorf("start grandchild: %w", err)
	}
	g.log.Warn("spawned grandchild (chaos spawn_grandchild)", "grandchild_pid", cmd.Process.Pid)
	g.mu.Lock()
	g.writers = append(g.writers, w)
	g.mu.Unlock()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		_ = cmd.Wait()
	}()
	return nil
}

// release closes the grandchildren's stdin and waits, boundedly, for them to
// exit, so a clean worker exit leaves nothing behind.
func (g *grandchildren) release() {
	g.mu.Lock()
	for _, w := range g.writers {
		w.Close()
	}
	g.writers = nil
	g.mu.Unlock()
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grandchildWait):
		g.log.Warn("grandchildren still running after their stdin closed")
	}
}
