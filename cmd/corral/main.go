// Command corral is Corral's single binary: the reference stream manager
// (serve), a protocol client (client), a short demo (demo) and the hidden
// worker program that the manager starts once per pipeline.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/corral-dev/corral/manager/logsink"
	"github.com/corral-dev/corral/manager/protocol"
)

const usage = `corral — a stream manager that never hangs, and the tools to prove it

Usage:
  corral serve [flags]            run the reference stream manager (see corral serve --help)
  corral client COMMAND [args]    send one protocol command and print the JSON answer
  corral demo [flags]             start a manager, drive one pipeline through its life, stop
  corral run [SCENARIO|FILE] [flags]
                                  run a seeded workload + fault schedule, check it, write a report
  corral scenarios                list the built-in scenarios
  corral replay DIR               rerun a run folder's scenario with its seed
  corral bench [--json] [--quick] measure corral serve against its floor (see corral bench --help)
  corral help                     this text

Exit status: 0 success, 1 failure (a failure response, a run that did not finish
cleanly), 2 usage or configuration error.
`

func main() { os.Exit(corral(os.Args[1:])) }

// corral is the whole program, minus the exit (tests re-execute it).
func corral(args []string) int {
	// A reader of our output that goes away (`corral serve | tee log`,
	// then tee dies) must not kill the manager and, through their
	// parent-death signal, every worker: writes fail with EPIPE instead,
	// and the log sink counts them.
	logsink.SurviveSIGPIPE()
	// Workers (and the grandchildren the chaos fault spawns) are this same
	// binary started with a mode in the environment.
	if os.Getenv(protocol.EnvWorkerMode) != "" {
		return workerMain()
	}
	return run(args, os.Stdout, os.Stderr)
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stdout, stderr)
	case "client":
		return client(args[1:], stdout, stderr)
	case "demo":
		return demo(args[1:], stdout, stderr)
	case "run":
		return runCmd(args[1:], stdout, stderr)
	case "scenarios":
		return scenariosCmd(args[1:], stdout, stderr)
	case "replay":
		return replayCmd(args[1:], stdout, stderr)
	case "bench":
		return benchCmd(args[1:], stdout, stderr)
	case "worker":
		return workerMain()
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "corral: unknown command %q\n\n%s", args[0], usage)
	return 2
}
