package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// floorAnswer is the floor server's one answer, encoded once.
var floorAnswer = protocol.AppendFrame(nil, []byte(`{"request_id":"floor","response":{"status":"success","pipelines":[]},"pipeline_id":null}`))

// ServeFloor is the floor: a framed-JSON server with no work behind it. Per
// connection it reads one request frame, decodes its type (the least a
// server of this protocol must do) and writes a fixed success envelope. It
// returns when ln is closed.
func ServeFloor(ln net.Listener) error {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			body, err := protocol.ReadFrame(conn, 0)
			if err != nil {
				return
			}
			var req struct {
				Type string `json:"type"`
			}
			if json.Unmarshal(body, &req) != nil || req.Type == "" {
				return
			}
			_, _ = conn.Write(floorAnswer)
		}()
	}
}

// FloorMain runs the floor server as a child: it prints its address on
// stdout and serves until stdin closes (the parent went away).
func FloorMain(stdin io.Reader, stdout io.Writer) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "corral bench floor:", err)
		return 1
	}
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		_ = ln.Close()
	}()
	fmt.Fprintln(stdout, ln.Addr().String())
	_ = ServeFloor(ln)
	return 0
}

// EchoMain copies frames from stdin back to stdout until stdin closes: the
// other end of the raw pipe round trip.
func EchoMain(stdin io.Reader, stdout io.Writer) int {
	r := bufio.NewReader(stdin)
	for {
		body, err := protocol.ReadFrame(r, 0)
		if err != nil {
			return 0
		}
		if err := protocol.WriteFrame(stdout, body); err != nil {
			return 1
		}
	}
}

// child is a process of this binary started in one of its modes.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
}

// startChild runs the corral program with args (through cmd); its stdin
// and stdout are pipes, its stderr discarded.
func startChild(command func(args ...string) *exec.Cmd, args ...string) (*child, error) {
	cmd := command(args...)
	cmd.Stderr = nil
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start corral %v: %w", args, err)
	}
	return &child{cmd: cmd, stdin: in, stdout: bufio.NewReader(out)}, nil
}

// stop closes the child's stdin and waits for it, killing it after bound.
func (c *child) stop(bound time.Duration) {
	_ = c.stdin.Close()
	done := make(chan struct{})
	go func() {
		_ = c.cmd.Wait()
		close(done)
	}()
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// startFloor starts the floor server child and returns it with its address.
func startFloor(command func(args ...string) *exec.Cmd) (*child, string, error) {
	c, err := startChild(command, "bench", "--mode=floor")
	if err != nil {
		return nil, "", err
	}
	line, err := readLine(c.stdout, 10*time.Second)
	if err != nil {
		c.stop(time.Second)
		return nil, "", fmt.Errorf("bench: floor server: %w", err)
	}
	return c, line, nil
}

// readLine reads one line within bound.
func readLine(r *bufio.Reader, bound time.Duration) (string, error) {
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := r.ReadString('\n')
		ch <- res{s, err}
	}()
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case x := <-ch:
		if x.err != nil {
			return "", x.err
		}
		return x.s[:len(x.s)-1], nil
	case <-t.C:
		return "", fmt.Errorf("no line within %s", bound)
	}
}

// pipeRoundTrip measures n round trips of a status-sized frame through a
// child that echoes its stdin to its stdout: the cost of the manager's
// worker channel with no work on either side. It returns the median.
func pipeRoundTrip(ctx context.Context, command func(args ...string) *exec.Cmd, n int) (time.Duration, error) {
	c, err := startChild(command, "bench", "--mode=echo")
	if err != nil {
		return 0, err
	}
	defer c.stop(5 * time.Second)
	frame := protocol.AppendFrame(nil, []byte(`{"request_id":"c1","type":"status"}`))
	lat := make([]time.Duration, 0, n)
	for range n {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		t0 := time.Now()
		if _, err := c.stdin.Write(frame); err != nil {
			return 0, err
		}
		if _, err := protocol.ReadFrame(c.stdout, 0); err != nil {
			return 0, err
		}
		lat = append(lat, time.Since(t0))
	}
	return median(lat), nil
}
