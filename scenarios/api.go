package scenarios

import (
	"fmt"
	"strings"
	"testing"
)

// This file is the Go API for users' own tests. The whole API is:
//
//	sc, err := scenarios.Builtin("smoke")          // or LoadFile, Parse, or a literal Scenario
//	rep, err := scenarios.Run(ctx, sc, scenarios.Options{...})
//	scenarios.Require(t, rep)                       // fail the test unless the run is valid
//
// Against a manager at an address, set Options.Target (and TargetPid to
// let the run shut it down and count its processes). Against the embedded
// reference manager, the workers are processes, and in a test binary they
// must be the test binary itself: TestMain runs the worker program when the
// launcher asks for it, and the run is told to start os.Args[0]:
//
//	func TestMain(m *testing.M) {
//		if os.Getenv(protocol.EnvWorkerMode) != "" {
//			os.Exit(worker.Main())
//		}
//		os.Exit(m.Run())
//	}
//
//	func TestManagerSurvivesChaos(t *testing.T) {
//		sc, _ := scenarios.Builtin("hung-queue")
//		rep, err := scenarios.Run(t.Context(), sc, scenarios.Options{
//			WorkerCommand: []string{os.Args[0]},
//			// The race detector sleeps 1 s when a process exits; workers
//			// exit on purpose, often.
//			WorkerEnv: []string{"GORACE=atexit_sleep_ms=0"},
//			Out:       t.TempDir(),
//		})
//		if err != nil {
//			t.Fatal(err)
//		}
//		scenarios.Require(t, rep)
//	}

// Require fails t unless rep is valid, reporting each checker that was not
// valid with its verdict, summary and first details, then the seed, the
// replay command and the run folder. A nil report fails too.
func Require(t testing.TB, rep *Report) {
	t.Helper()
	if rep == nil {
		t.Fatal("scenarios: no report (the run did not happen)")
		return
	}
	if rep.Valid {
		return
	}
	t.Error(FailureText(rep))
}

// FailureText describes a report that is not valid: every checker whose
// verdict is invalid or unknown, the seed and the replay command.
func FailureText(rep *Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "scenario %s (seed %d) is not valid:\n", rep.Scenario, rep.Seed)
	for _, r := range rep.Results {
		if r.Verdict == Valid {
			continue
		}
		fmt.Fprintf(&b, "  %s: %s: %s\n", r.Checker, r.Verdict, r.Summary)
		for i, d := range r.Details {
			if i == 5 {
				fmt.Fprintf(&b, "      ... %d more (see report.json)\n", len(r.Details)-i)
				break
			}
			fmt.Fprintf(&b, "      %s\n", d)
		}
	}
	fmt.Fprintf(&b, "  seed:   %d\n  replay: %s\n  run:    %s\n", rep.Seed, rep.Replay, rep.Dir)
	return b.String()
}
