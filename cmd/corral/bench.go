package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/corral-dev/corral/internal/bench"
)

const benchUsage = `Usage: corral bench [--json] [--quick] [--cell D]

Measures corral serve against its physical floor in one run: a no-work
framed-JSON server (same binary, one connection per request) and a raw pipe
round trip to a child; then list and status at 1, 8 and 64 clients over 1
and 16 pipelines, the tracing overhead, shutdown with workers that ignore
SIGTERM, crash and hang detection, init cold and warm, memory and probe CPU
with 64 pipelines. Every target is a ratio to something measured in the
same run. A full run takes about two minutes; --quick about 30 s.

Flags:
  --json      print one JSON object instead of the table
  --quick     short cells and few samples: a smoke run, not a measurement
  --cell D    duration of each load cell (default 2s, 300ms with --quick)
`

func benchCmd(args []string, stdout, stderr io.Writer) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "corral bench: %v\n", err)
		return 1
	}
	return benchWith(args, stdout, stderr, func(args ...string) *exec.Cmd { return exec.Command(exe, args...) })
}

// benchWith is benchCmd with the command that runs corral's children
// (tests run the test binary).
func benchWith(args []string, stdout, stderr io.Writer, command func(args ...string) *exec.Cmd) int {
	fs := flag.NewFlagSet("corral bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), benchUsage) }
	asJSON := fs.Bool("json", false, "")
	quick := fs.Bool("quick", false, "")
	cell := fs.Duration("cell", 0, "")
	mode := fs.String("mode", "", "") // hidden: the children of a run (floor, echo)
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout)
		}
	}
	pos, exit, ok := parseInterspersed(fs, args)
	if !ok {
		return exit
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "corral bench: unexpected argument %q\n", pos[0])
		return 2
	}
	switch *mode {
	case "":
	case "floor":
		return bench.FloorMain(os.Stdin, stdout)
	case "echo":
		return bench.EchoMain(os.Stdin, stdout)
	default:
		fmt.Fprintf(stderr, "corral bench: --mode %q is invalid: must be floor or echo\n", *mode)
		return 2
	}
	if *cell < 0 {
		fmt.Fprintf(stderr, "corral bench: --cell %s is invalid: must be a positive duration\n", *cell)
		return 2
	}
	if *cell == 0 {
		*cell = 2 * time.Second
		if *quick {
			*cell = 300 * time.Millisecond
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := bench.Run(ctx, bench.Options{Command: command, Cell: *cell, Quick: *quick,
		Progress: func(s string) { fmt.Fprintf(stderr, "corral bench: %s\n", s) }})
	if err != nil {
		fmt.Fprintf(stderr, "corral bench: %v\n", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			fmt.Fprintf(stderr, "corral bench: %v\n", err)
			return 1
		}
		return 0
	}
	bench.PrintTable(stdout, r)
	return 0
}
