package bench

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/procfs"

	"github.com/corral-dev/corral/manager/protocol"
)

// server is a `corral serve` child of this binary.
type server struct {
	*child
	addr   string
	client *protocol.Client
}

// benchVideo is the source every bench pipeline plays: small and slow, so
// 64 of them leave the machine to the measurement.
const benchVideo = "synthetic://64x48?fps=2"

// startServe runs `corral serve` on a free port with args added (chaos on,
// grace and join of 1 s unless args say otherwise) and waits for its
// listening line.
func startServe(command func(args ...string) *exec.Cmd, args ...string) (*server, error) {
	base := []string{"serve", "--port", "0", "--chaos", "--log-level", "error",
		"--termination-grace-period", "1s", "--process-join-timeout", "1s",
		"--max-queued-per-pipeline", "256"}
	c, err := startChild(command, append(base, args...)...)
	if err != nil {
		return nil, err
	}
	line, err := readLine(c.stdout, 20*time.Second)
	if err != nil {
		c.kill()
		return nil, fmt.Errorf("bench: corral serve did not start: %w", err)
	}
	// "corral serve: listening on 127.0.0.1:PORT (pid N)"
	f := strings.Fields(line)
	if len(f) < 5 || f[3] != "on" {
		c.kill()
		return nil, fmt.Errorf("bench: unexpected first line from corral serve: %q", line)
	}
	return &server{child: c, addr: f[4], client: &protocol.Client{Addr: f[4], Timeout: 30 * time.Second}}, nil
}

func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
}

// pid is the manager's process id.
func (s *server) pid() int { return s.cmd.Process.Pid }

// shutdown sends SIGTERM and returns how long the manager took to exit; it
// kills the manager after bound.
func (s *server) shutdown(bound time.Duration) (time.Duration, error) {
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case err := <-done:
		took := time.Since(start)
		_ = s.stdin.Close()
		return took, err
	case <-t.C:
		_ = s.cmd.Process.Kill()
		<-done
		return 0, fmt.Errorf("bench: corral serve still running %s after SIGTERM", bound)
	}
}

// initN starts n pipelines and returns their ids.
func (s *server) initN(ctx context.Context, n int) ([]string, error) {
	ids := make([]string, 0, n)
	fps := 2.0
	for range n {
		id, err := s.client.Init(ctx, protocol.InitConfig{VideoConfiguration: protocol.VideoConfiguration{
			VideoReference: benchVideo, MaxFPS: &fps}})
		if err != nil {
			return ids, fmt.Errorf("bench: init: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// inspect returns the manager's table.
func (s *server) inspect(ctx context.Context) ([]protocol.PipelineInfo, error) {
	resp, err := s.client.Inspect(ctx)
	if err != nil {
		return nil, err
	}
	var in protocol.Inspect
	if err := decodeFields(resp.Fields, &in); err != nil {
		return nil, err
	}
	return in.Pipelines, nil
}

// workerPids maps pipeline id to worker pid for the listed (non-idle)
// pipelines, and counts idle (pool) workers.
func (s *server) workerPids(ctx context.Context) (map[string]int, int, error) {
	ps, err := s.inspect(ctx)
	if err != nil {
		return nil, 0, err
	}
	out, idle := map[string]int{}, 0
	for _, p := range ps {
		if p.Idle {
			idle++
			continue
		}
		if !p.MarkedForRemoval {
			out[p.PipelineID] = p.Pid
		}
	}
	return out, idle, nil
}

// procStat reads /proc/<pid>/stat.
func procStat(pid int) (procfs.ProcStat, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return procfs.ProcStat{}, err
	}
	return p.Stat()
}

// rssMB returns a process's resident set in MiB.
func rssMB(pid int) (float64, error) {
	st, err := procStat(pid)
	return float64(st.ResidentMemory()) / (1 << 20), err
}

// cpuSeconds returns a process's user+system CPU time.
func cpuSeconds(pid int) (float64, error) {
	st, err := procStat(pid)
	return st.CPUTime(), err
}

// waitFor polls cond every step until it holds or bound passes.
func waitFor(ctx context.Context, bound, step time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(bound)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: condition not met within %s", bound)
		}
		t := time.NewTimer(step)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
