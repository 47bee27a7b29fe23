// Command mutants proves the harness on source-level mutants of the
// manager: for each patch in testdata/mutants it copies the module to a
// temporary folder, applies the patch, builds corral, runs the scenario
// named in the patch's header with its seed, and requires the named
// checker to be invalid in report.json. The unpatched corral must be VALID
// on the same scenarios first. Mutants run one after another (the machine
// has 2 cores and each run times the manager).
//
// A Go program rather than a shell script: it reads report.json with the
// harness's own types, validates the headers with the harness's scenario
// and checker names (its test does that under make test), and bounds and
// kills each child process group; it needs no module beyond the main one.
//
// Usage (from the module root; make mutants runs it):
//
//	go run ./internal/mutants [-dir testdata/mutants] [-run REGEXP] [-keep] [-check]
//
// Output: one line per baseline run, then one line per mutant,
// "<name>: caught by <checker>" or "<name>: SURVIVED (...)". Exit status 1
// when a mutant survived, a patch did not apply or build, or a baseline
// run was not VALID; 2 on a usage error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/corral-dev/corral/scenarios"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	root    string
	dir     string
	filter  *regexp.Regexp
	keep    bool
	check   bool
	timeout time.Duration
	out     io.Writer
	log     io.Writer
}

func run(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("mutants", flag.ContinueOnError)
	fl.SetOutput(stderr)
	dir := fl.String("dir", "testdata/mutants", "folder of the mutant patches (and their scenario files)")
	filter := fl.String("run", "", "only mutants whose name matches this regexp")
	keep := fl.Bool("keep", false, "keep the temporary folder (module copies, run folders, logs)")
	timeout := fl.Duration("timeout", 5*time.Minute, "bound of one build or scenario run")
	check := fl.Bool("check", false, "only check that every patch applies to the module as it is (seconds)")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "mutants: unexpected argument %q (flags only)\n", fl.Arg(0))
		return 2
	}
	re, err := regexp.Compile(*filter)
	if err != nil {
		fmt.Fprintf(stderr, "mutants: -run: %v\n", err)
		return 2
	}
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintf(stderr, "mutants: %v\n", err)
		return 2
	}
	o := options{root: root, dir: *dir, filter: re, keep: *keep, timeout: *timeout, check: *check, out: stdout, log: stderr}
	if !filepath.IsAbs(o.dir) {
		o.dir = filepath.Join(root, o.dir)
	}
	ok, err := o.runAll(context.Background())
	if err != nil {
		fmt.Fprintf(stderr, "mutants: %v\n", err)
		return 1
	}
	if !ok {
		return 1
	}
	return 0
}

// moduleRoot finds the folder of Corral's go.mod from the working
// directory upwards.
func moduleRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && strings.HasPrefix(string(b), "module github.com/corral-dev/corral\n") {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", errors.New("run from inside the corral module (no go.mod of github.com/corral-dev/corral above the working directory)")
		}
		d = parent
	}
}

func isBuiltin(name string) bool { return slices.Contains(scenarios.BuiltinNames(), name) }

func (o options) runAll(ctx context.Context) (bool, error) {
	all, err := LoadMutants(o.dir, isBuiltin)
	if err != nil {
		return false, err
	}
	var ms []Mutant
	for _, m := range all {
		if o.filter.MatchString(m.Name) {
			ms = append(ms, m)
		}
	}
	if len(ms) == 0 {
		return false, fmt.Errorf("no mutant matches -run %q", o.filter)
	}
	if o.check {
		return o.checkApply(ctx, ms), nil
	}
	tmp, err := os.MkdirTemp("", "corral-mutants-")
	if err != nil {
		return false, err
	}
	if o.keep {
		fmt.Fprintf(o.log, "mutants: keeping %s\n", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}

	start := time.Now()
	ok := true
	base := filepath.Join(tmp, "baseline", "corral")
	if err := o.build(ctx, o.root, base, filepath.Join(tmp, "baseline-build.log")); err != nil {
		return false, fmt.Errorf("building the unpatched corral: %w", err)
	}
	var lines []string
	seen := map[string]bool{}
	for _, m := range ms {
		if seen[m.Key()] {
			continue
		}
		seen[m.Key()] = true
		rep, err := o.scenario(ctx, base, m, filepath.Join(tmp, "runs", "baseline-"+sanitize(m.Key())))
		switch {
		case err != nil:
			ok = false
			lines = append(lines, fmt.Sprintf("baseline %s: ERROR (%v)", m.Key(), err))
		case !rep.Valid:
			ok = false
			lines = append(lines, fmt.Sprintf("baseline %s: NOT VALID (%s; run folder %s)", m.Key(), notValid(rep), rep.Dir))
		default:
			lines = append(lines, fmt.Sprintf("baseline %s: VALID", m.Key()))
		}
		fmt.Fprintln(o.log, "... "+lines[len(lines)-1])
	}
	caught := 0
	for _, m := range ms {
		line := o.mutant(ctx, tmp, m)
		if strings.Contains(line, ": caught by ") {
			caught++
		} else {
			ok = false
		}
		lines = append(lines, line)
		fmt.Fprintln(o.log, "... "+line)
	}
	fmt.Fprintf(o.out, "\nmutants: %d of %d caught in %v\n", caught, len(ms), time.Since(start).Round(time.Second))
	for _, l := range lines {
		fmt.Fprintln(o.out, l)
	}
	return ok, nil
}

// checkApply reports, for each mutant, whether its patch applies to the
// module as it is (git apply --check, nothing is changed).
func (o options) checkApply(ctx context.Context, ms []Mutant) bool {
	ok := true
	for _, m := range ms {
		cmd := exec.CommandContext(ctx, "git", "apply", "--check", m.Path)
		cmd.Dir = o.root
		if out, err := cmd.CombinedOutput(); err != nil {
			ok = false
			fmt.Fprintf(o.out, "%s: does not apply (%s); redo the same slip on the new code\n", m.Name, strings.TrimSpace(string(out)))
			continue
		}
		fmt.Fprintf(o.out, "%s: applies\n", m.Name)
	}
	return ok
}

// mutant copies the module, applies m, builds, runs and judges it; it
// returns the mutant's result line.
func (o options) mutant(ctx context.Context, tmp string, m Mutant) string {
	src := filepath.Join(tmp, "src-"+m.Name)
	defer func() {
		if !o.keep {
			_ = os.RemoveAll(src)
		}
	}()
	if err := copyModule(o.root, src); err != nil {
		return fmt.Sprintf("%s: ERROR (copying the module: %v)", m.Name, err)
	}
	logPath := filepath.Join(tmp, m.Name+".log")
	if err := o.command(ctx, src, logPath, nil, "git", "apply", "--verbose", m.Path); err != nil {
		return fmt.Sprintf("%s: ERROR (patch does not apply: %v; see %s)", m.Name, err, tail(logPath))
	}
	bin := filepath.Join(tmp, "bin-"+m.Name, "corral")
	if err := o.build(ctx, src, bin, logPath); err != nil {
		return fmt.Sprintf("%s: ERROR (build failed: %v; %s)", m.Name, err, tail(logPath))
	}
	rep, err := o.scenario(ctx, bin, m, filepath.Join(tmp, "runs", m.Name))
	if err != nil {
		return fmt.Sprintf("%s: SURVIVED (the run failed: %v)", m.Name, err)
	}
	for _, r := range rep.Results {
		if r.Checker != m.Checker {
			continue
		}
		if r.Verdict == scenarios.Invalid {
			return fmt.Sprintf("%s: caught by %s", m.Name, m.Checker)
		}
		return fmt.Sprintf("%s: SURVIVED (%s is %s: %s; others: %s)", m.Name, m.Checker, r.Verdict, r.Summary, notValid(rep))
	}
	return fmt.Sprintf("%s: SURVIVED (no checker %s in report.json; others: %s)", m.Name, m.Checker, notValid(rep))
}

// notValid names the checkers that were not valid.
func notValid(rep *scenarios.Report) string {
	var out []string
	for _, r := range rep.Results {
		if r.Verdict != scenarios.Valid {
			out = append(out, r.Checker+" "+r.Verdict)
		}
	}
	if len(out) == 0 {
		return "every checker valid"
	}
	return strings.Join(out, ", ")
}

func (o options) build(ctx context.Context, dir, bin, logPath string) error {
	return o.command(ctx, dir, logPath, []string{"CGO_ENABLED=0", "GOWORK=off"},
		goCmd(), "build", "-o", bin, "./cmd/corral")
}

func goCmd() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}

// scenario runs m's scenario with bin and returns its report.
func (o options) scenario(ctx context.Context, bin string, m Mutant, out string) (*scenarios.Report, error) {
	args := []string{"run", m.Scenario, "--seed", fmt.Sprint(m.Seed), "--out", out}
	if m.Duration > 0 {
		args = append(args, "--duration", m.Duration.String())
	}
	logPath := out + ".log"
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, err
	}
	err := o.command(ctx, filepath.Dir(out), logPath, nil, bin, args...)
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) {
		return nil, fmt.Errorf("corral %s: %w (%s)", strings.Join(args, " "), err, tail(logPath))
	}
	b, rerr := os.ReadFile(filepath.Join(out, scenarios.ReportJSONFile))
	if rerr != nil {
		return nil, fmt.Errorf("no report: %w (%s)", rerr, tail(logPath))
	}
	var rep scenarios.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w", scenarios.ReportJSONFile, err)
	}
	if rep.Dir == "" {
		rep.Dir = out
	}
	return &rep, nil
}

// command runs name in dir, its output appended to logPath, in its own
// process group, killed as a group when o.timeout passes.
func (o options) command(ctx context.Context, dir, logPath string, env []string, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "$ %s %s\n", name, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, f, f
	// GIT_CEILING_DIRECTORIES: git apply must patch the copy in dir, never
	// a repository found above it.
	cmd.Env = append(append(os.Environ(), "GIT_CEILING_DIRECTORIES="+filepath.Dir(dir)), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("%s did not finish within %v", name, o.timeout)
	}
	return err
}

// tail returns the last lines of a log, for an error message.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "no log"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return "log " + path + ": " + strings.Join(lines[max(0, len(lines)-6):], " | ")
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func sanitize(s string) string { return unsafeChars.ReplaceAllString(s, "-") }

// skipTop are top-level entries of the module never copied: version
// control, built binaries and run folders.
var skipTop = []string{".git", "bin", "runs", "corral"}

// copyModule copies the module at root to dst, without skipTop.
func copyModule(root, dst string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		if rel != "." && !strings.Contains(rel, string(filepath.Separator)) && slices.Contains(skipTop, rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			return copyFile(path, target, info.Mode().Perm())
		}
		return nil // sockets, pipes: not part of the module
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
