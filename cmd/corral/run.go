package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/corral-dev/corral/scenarios"
)

// runFlags are the flags of corral run (and replay).
type runFlags struct {
	seed      string
	duration  time.Duration
	out       string
	target    string
	targetPid int
	profile   string
	bounds    string
}

func (f *runFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.seed, "seed", "", "seed of the workload and the faults (default: the scenario's)")
	fs.DurationVar(&f.duration, "duration", 0, "length of the chaos phase, e.g. 30s or 10m (default: the scenario's)")
	fs.StringVar(&f.out, "out", "", "run folder (default runs/<time>-<scenario>-<seed>/)")
	fs.StringVar(&f.target, "target", "", "host:port of a manager to test (default: an embedded one)")
	fs.IntVar(&f.targetPid, "target-pid", 0, "pid of the --target manager, to shut it down and count its processes (it must own the target's listening port)")
	fs.StringVar(&f.profile, "profile", "", "what the --target is: "+strings.Join(scenarios.ProfileNames(), ", ")+" (default: detected from its answer to inspect)")
	fs.StringVar(&f.bounds, "bounds", "", "bounds the target is judged by, e.g. grace=5s,join=30s,crash_detection=2s (keys: grace, join, queue_timeout,\nhealth_interval, health_timeout, max_health_failures, crash_detection, epsilon; over the scenario's bounds: and manager:)")
}

// runCmd is `corral run [SCENARIO|FILE] [flags]`.
func runCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("corral run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f runFlags
	f.bind(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: corral run [SCENARIO|FILE] [flags]\n\nRuns a scenario (default smoke; see corral scenarios) against an embedded\nmanager or --target, and writes history, schedule and reports to the run\nfolder. Exit status: 0 valid, 1 invalid or unknown, 2 usage or configuration error.\n\n")
		fs.PrintDefaults()
	}
	pos, exit, ok := parseInterspersed(fs, args)
	if !ok {
		return exit
	}
	if len(pos) > 1 {
		fmt.Fprintf(stderr, "corral run: one scenario at a time (got %s)\n", strings.Join(pos, " "))
		return 2
	}
	source := "smoke"
	if len(pos) == 1 {
		source = pos[0]
	}
	sc, err := loadScenario(source)
	if err != nil {
		fmt.Fprintf(stderr, "corral run: %v\n", err)
		return 2
	}
	return execute(sc, source, f, stdout, stderr)
}

// loadScenario reads a built-in by name, or a file when the argument
// names one (a path separator or a .yaml/.yml suffix).
func loadScenario(source string) (*scenarios.Scenario, error) {
	if strings.ContainsRune(source, filepath.Separator) || strings.HasSuffix(source, ".yaml") || strings.HasSuffix(source, ".yml") {
		return scenarios.LoadFile(source)
	}
	return scenarios.Builtin(source)
}

// execute runs sc with the flags and prints the summary.
func execute(sc *scenarios.Scenario, source string, f runFlags, stdout, stderr io.Writer) int {
	o := scenarios.Options{Source: source, Out: f.out, Target: f.target, TargetPid: f.targetPid, Profile: f.profile, Progress: stdout}
	if f.profile != "" {
		if f.target == "" {
			fmt.Fprintln(stderr, "corral run: --profile needs --target (the embedded manager is always corral)")
			return 2
		}
		if _, err := scenarios.ProfileByName(f.profile); err != nil {
			fmt.Fprintf(stderr, "corral run: --profile %q is invalid: want one of %s\n", f.profile, strings.Join(scenarios.ProfileNames(), ", "))
			return 2
		}
	}
	b, err := scenarios.ParseBounds(f.bounds)
	if err != nil {
		fmt.Fprintf(stderr, "corral run: %v\n", err)
		return 2
	}
	o.Bounds = b
	if f.seed != "" {
		seed, err := strconv.ParseInt(f.seed, 10, 64)
		if err != nil {
			fmt.Fprintf(stderr, "corral run: --seed %q is invalid: must be an integer\n", f.seed)
			return 2
		}
		o.Seed = &seed
	}
	if f.duration < 0 {
		fmt.Fprintf(stderr, "corral run: --duration %s is invalid: must be positive\n", f.duration)
		return 2
	}
	o.Duration = f.duration
	if f.targetPid < 0 {
		fmt.Fprintf(stderr, "corral run: --target-pid %d is invalid: must be a pid\n", f.targetPid)
		return 2
	}
	if f.targetPid != 0 && f.target == "" {
		fmt.Fprintln(stderr, "corral run: --target-pid needs --target")
		return 2
	}
	// The first interrupt ends the run early (it still shuts the manager
	// down and writes its report); a second one is the default action.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()
	rep, err := scenarios.Run(ctx, sc, o)
	if rep == nil {
		fmt.Fprintf(stderr, "corral run: %v\n", err)
		if errors.Is(err, scenarios.ErrInvalidScenario) {
			return 2
		}
		return 1
	}
	fmt.Fprintln(stdout)
	scenarios.PrintSummary(stdout, rep)
	if err != nil {
		fmt.Fprintf(stderr, "corral run: %v\n", err)
	}
	// One greppable line last, for scripts (make nightly): the run's one
	// verdict, as the header, report.json and junit.xml say it.
	fmt.Fprintf(stdout, "RESULT %s seed=%d %s replay=%q dir=%s\n", rep.Scenario, rep.Seed, rep.Verdict, rep.Replay, rep.Dir)
	if rep.Valid && err == nil {
		return 0
	}
	return 1
}

// scenariosCmd is `corral scenarios`: the built-ins with their descriptions.
func scenariosCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "corral scenarios: unexpected argument %q\n", args[0])
		return 2
	}
	for _, sc := range scenarios.Builtins() {
		fmt.Fprintf(stdout, "%-20s %s\n", sc.Name, strings.Join(strings.Fields(sc.Description), " "))
	}
	return 0
}

// replayCmd is `corral replay DIR`: the run folder's scenario.yaml with
// the seed it ran with.
func replayCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("corral replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f runFlags
	fs.StringVar(&f.out, "out", "", "run folder of the replay (default runs/<time>-<scenario>-<seed>/)")
	fs.StringVar(&f.target, "target", "", "host:port of a manager to test (default: an embedded one)")
	fs.IntVar(&f.targetPid, "target-pid", 0, "pid of the --target manager")
	fs.StringVar(&f.profile, "profile", "", "what the --target is (default: detected)")
	fs.StringVar(&f.bounds, "bounds", "", "bounds the target is judged by (see corral run -h)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: corral replay DIR [flags]\n\nReruns a run folder's scenario (DIR/scenario.yaml) with its seed (DIR/seed).\n\n")
		fs.PrintDefaults()
	}
	pos, exit, ok := parseInterspersed(fs, args)
	if !ok {
		return exit
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "corral replay: want exactly one run folder (DIR)")
		return 2
	}
	dir := pos[0]
	sc, err := scenarios.LoadFile(filepath.Join(dir, "scenario.yaml"))
	if err != nil {
		fmt.Fprintf(stderr, "corral replay: %v\n", err)
		return 2
	}
	f.seed = strconv.FormatInt(sc.Seed, 10)
	if b, err := os.ReadFile(filepath.Join(dir, "seed")); err == nil {
		f.seed = strings.TrimSpace(string(b))
	}
	return execute(sc, filepath.Join(dir, "scenario.yaml"), f, stdout, stderr)
}
