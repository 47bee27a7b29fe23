package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/corral-dev/corral/manager"
	"github.com/corral-dev/corral/manager/launch"
	"github.com/corral-dev/corral/manager/protocol"
)

// demo starts an embedded manager on a free loopback port with real worker
// processes, drives one pipeline through init, status, consume, pause,
// resume and terminate with the Go client, shuts down and counts leftover
// worker processes: a minute's tour of the manager for a new user. It
// checks nothing under faults; that is `corral run` (the harness: seeded
// workloads and nemeses, checkers, reports).
func demo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("corral demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	video := fs.String("video", "synthetic://320x240?fps=30", "video_reference of the demo pipeline")
	run := fs.Duration("run", 2*time.Second, "how long the pipeline runs before results are read")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *run <= 0 || *run > time.Minute {
		fmt.Fprintf(stderr, "corral demo: --run %s is invalid: must be in (0, 1m]\n", *run)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := manager.DefaultConfig()
	cfg.Port = 0
	cfg.TerminationGracePeriod = 2 * time.Second
	cfg.ProcessJoinTimeout = 5 * time.Second
	cfg.PreloadedProcesses = 1

	launcher, err := launch.NewProcesses(launch.ProcessConfig{Subreaper: true, Log: log})
	if err != nil {
		fmt.Fprintf(stderr, "corral demo: %v\n", err)
		return 1
	}
	var events atomic.Int64
	svc, err := manager.StartService(cfg, manager.Options{Launcher: launcher, Log: log,
		Hook: func(manager.Event) { events.Add(1) }})
	if err != nil {
		fmt.Fprintf(stderr, "corral demo: %v\n", err)
		return 1
	}
	addr := svc.Addr()
	c := &protocol.Client{Addr: addr, Timeout: 15 * time.Second}
	ctx := context.Background()

	failed := false
	step := func(name string, f func() (any, error)) {
		if failed {
			return
		}
		start := time.Now()
		v, err := f()
		if err != nil {
			fmt.Fprintf(stdout, "  %-10s FAILED after %s: %v\n", name, time.Since(start).Round(time.Millisecond), err)
			failed = true
			return
		}
		line := ""
		if v != nil {
			b, _ := json.Marshal(v)
			line = string(b)
			if len(line) > 160 {
				line = line[:160] + "..."
			}
		}
		fmt.Fprintf(stdout, "  %-10s ok in %-7s %s\n", name, time.Since(start).Round(time.Millisecond), line)
	}
	fmt.Fprintf(stdout, "corral demo: manager on %s, one pipeline on %s\n", addr, *video)
	var id string
	step("init", func() (any, error) {
		var err error
		id, err = c.Init(ctx, protocol.InitConfig{VideoConfiguration: protocol.VideoConfiguration{VideoReference: *video}})
		return map[string]string{"pipeline_id": id}, err
	})
	step("list", func() (any, error) { return c.List(ctx) })
	time.Sleep(*run) // let the pipeline produce results; this is the demo's point, not synchronisation
	step("status", func() (any, error) {
		r, err := c.Status(ctx, id)
		rep, _ := r.Fields["report"].(map[string]any)
		return map[string]any{"inference_throughput": rep["inference_throughput"], "latency_reports": rep["latency_reports"]}, err
	})
	step("consume", func() (any, error) {
		r, err := c.Consume(ctx, id)
		return map[string]any{"outputs": r.Fields["outputs"], "frames_metadata": r.Fields["frames_metadata"]}, err
	})
	step("pause", func() (any, error) { return nil, c.Pause(ctx, id) })
	step("resume", func() (any, error) { return nil, c.Resume(ctx, id) })
	step("inspect", func() (any, error) { r, err := c.Inspect(ctx); return r.Fields["pipelines"], err })
	step("terminate", func() (any, error) { return nil, c.Terminate(ctx, id) })

	start := time.Now()
	if err := svc.Shutdown(ctx); err != nil {
		fmt.Fprintf(stdout, "  shutdown   FAILED: %v\n", err)
		failed = true
	} else {
		fmt.Fprintf(stdout, "  shutdown   ok in %s (%d manager events)\n", time.Since(start).Round(time.Millisecond), events.Load())
	}
	if census, err := launch.Census(launcher.Marker()); err == nil {
		fmt.Fprintf(stdout, "  leftover worker processes: %d\n", len(census))
		if len(census) > 0 {
			failed = true
		}
	}
	if failed {
		fmt.Fprintln(stdout, "corral demo: FAILED")
		return 1
	}
	fmt.Fprintln(stdout, "corral demo: ok")
	return 0
}
