package worker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ffmpegStopWait bounds the wait for a killed ffmpeg child and its stderr.
const ffmpegStopWait = 2 * time.Second

// stderrTail is how many of ffmpeg's last log lines a failure quotes.
const stderrTail = 4

var (
	fpsPattern      = regexp.MustCompile(`Video: .*?([0-9]+(?:\.[0-9]+)?) (?:fps|tbr)`)
	durationPattern = regexp.MustCompile(`Duration: ([0-9]+):([0-9]{2}):([0-9]{2}(?:\.[0-9]+)?)`)
)

// ffmpegSource decodes any input ffmpeg can open into grey frames of a fixed
// size, read as raw bytes from the child's stdout. The child runs in the
// worker's process group (the default of exec), so the manager's group
// kill covers it; the worker kills and reaps it on close.
type ffmpegSource struct {
	cmd    *exec.Cmd
	stdout io.ReadCloser
	r      *bufio.Reader
	first  []byte // the frame open read to prove the input connected
	logs   chan struct{}

	stopKill func() bool
	waitOnce sync.Once
	waitErr  error

	mu   sync.Mutex
	p    sourceProps
	tail []string
}

// openFFmpeg starts ffmpeg on input (with inputArgs before -i) and waits for
// its first frame or its exit. The error of an input that cannot be opened
// quotes ffmpeg's last log lines; a missing ffmpeg says so.
func openFFmpeg(ctx context.Context, dec decoding, inputArgs []string, input string, isFile bool) (source, error) {
	bin := dec.ffmpeg
	if bin == "" {
		bin = "ffmpeg"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("cannot decode %q: ffmpeg is not installed (%v); Debian: apt-get install ffmpeg", clipText(input), err)
	}
	args := []string{"-hide_banner", "-nostdin", "-loglevel", "info"}
	args = append(args, inputArgs...)
	args = append(args, "-i", input, "-an", "-sn", "-dn",
		"-vf", fmt.Sprintf("scale=%d:%d,format=gray", dec.width, dec.height),
		"-f", "rawvideo", "-pix_fmt", "gray", "pipe:1")
	// No Pdeathsig: it fires when the forking OS thread exits, which Go
	// does not promise to outlive the child; a killed worker's child dies
	// with its process group, which the manager kills.
	cmd := exec.Command(path, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start ffmpeg for %q: %v", clipText(input), err)
	}
	s := &ffmpegSource{
		cmd: cmd, stdout: stdout, r: bufio.NewReaderSize(stdout, dec.width*dec.height),
		logs: make(chan struct{}),
		p:    sourceProps{width: dec.width, height: dec.height, fps: defaultFPS, total: -1, isFile: isFile},
	}
	go s.readLog(stderr)
	// ctx ending (the pipeline stops, or the watchdog gives up on this
	// connection) kills the child, which ends any read with EOF.
	s.stopKill = context.AfterFunc(ctx, func() { _ = cmd.Process.Kill() })
	// The first frame proves the input is open.
	first := make([]byte, dec.width*dec.height)
	if _, err := io.ReadFull(s.r, first); err != nil {
		if cause := context.Cause(ctx); cause != nil {
			err = cause
		}
		reason := s.reason(err)
		if ctx.Err() != nil {
			reason = context.Cause(ctx).Error()
		}
		s.close()
		return nil, fmt.Errorf("cannot open %q: %s", clipText(input), reason)
	}
	s.first = first
	return s, nil
}

// readLog keeps ffmpeg's last log lines and learns the input's frame rate
// and duration from them.
func (s *ffmpegSource) readLog(r io.Reader) {
	defer close(s.logs)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	var duration float64
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		s.mu.Lock()
		if m := durationPattern.FindStringSubmatch(line); m != nil {
			h, _ := strconv.Atoi(m[1])
			mi, _ := strconv.Atoi(m[2])
			sec, _ := strconv.ParseFloat(m[3], 64)
			duration = float64(h*3600+mi*60) + sec
		}
		if m := fpsPattern.FindStringSubmatch(line); m != nil && strings.Contains(line, "Stream #0") {
			if fps, err := strconv.ParseFloat(m[1], 64); err == nil && fps > 0 && fps <= 1000 {
				s.p.fps = fps
				if s.p.isFile && duration > 0 {
					s.p.total = int(duration*fps + 0.5)
				}
			}
		}
		if line != "" {
			if len(s.tail) == stderrTail {
				s.tail = append(s.tail[:0], s.tail[1:]...)
			}
			s.tail = append(s.tail, clipLine(line))
		}
		s.mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r)
}

// reason describes why reading stopped: ffmpeg's own last words if any.
func (s *ffmpegSource) reason(err error) string {
	s.waitExit()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.tail) > 0 {
		return "ffmpeg: " + strings.Join(s.tail, " | ")
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "ffmpeg ended without a frame"
	}
	return err.Error()
}

func (s *ffmpegSource) props() sourceProps {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p
}

func (s *ffmpegSource) live() bool { return true }

// read returns the next frame; io.EOF when ffmpeg ended cleanly at the end
// of its input, an error quoting ffmpeg when it failed.
func (s *ffmpegSource) read(luma []byte, _ int) error {
	if s.first != nil {
		copy(luma, s.first)
		s.first = nil
		return nil
	}
	if _, err := io.ReadFull(s.r, luma); err != nil {
		if errors.Is(err, io.EOF) && s.waitExit() == nil {
			return io.EOF
		}
		return errors.New(s.reason(err))
	}
	return nil
}

// waitExit reaps the child once and returns its exit error. The stderr
// reader is waited for first (Wait closes its pipe), boundedly; a child that
// outlives the bound is killed.
func (s *ffmpegSource) waitExit() error {
	s.waitOnce.Do(func() {
		select {
		case <-s.logs:
		case <-time.After(ffmpegStopWait):
			_ = s.cmd.Process.Kill()
		}
		s.waitErr = s.cmd.Wait()
	})
	return s.waitErr
}

// close kills and reaps the child.
func (s *ffmpegSource) close() error {
	s.stopKill()
	_ = s.cmd.Process.Kill()
	_ = s.stdout.Close()
	s.waitExit()
	return nil
}

// clipLine shortens one ffmpeg log line quoted in an error.
func clipLine(s string) string {
	const max = 240
	if len(s) <= max {
		return s
	}
	return strings.ToValidUTF8(s[:max], "") + "..."
}
