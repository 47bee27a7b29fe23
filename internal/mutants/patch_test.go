package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/corral-dev/corral/scenarios"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestCatalogue checks every patch of testdata/mutants without running
// it (make mutants does that): its header names a known checker, a
// built-in or a loadable scenario file next to it, and a seed; it changes
// manager/... only; and at least 12 mutants exist.
func TestCatalogue(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	ms, err := LoadMutants(filepath.Join(root, "testdata", "mutants"), isBuiltin)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 12 {
		t.Errorf("%d mutants in testdata/mutants, want at least 12", len(ms))
	}
	for _, m := range ms {
		if !slices.Contains(scenarios.CheckerNames(), m.Checker) {
			t.Errorf("%s: checker %q is not one of %v", m.Name, m.Checker, scenarios.CheckerNames())
		}
		if filepath.IsAbs(m.Scenario) {
			sc, err := scenarios.LoadFile(m.Scenario)
			if err != nil {
				t.Errorf("%s: %v", m.Name, err)
			} else if sc.Duration.D() > 20*time.Second {
				t.Errorf("%s: scenario %s runs %v; keep mutant runs short (make mutants runs them all in sequence)",
					m.Name, filepath.Base(m.Scenario), sc.Duration.D())
			}
		}
		if len(strings.Fields(m.Models)) < 8 {
			t.Errorf("%s: models %q: say which real failure the slip is modelled on", m.Name, m.Models)
		}
	}
}

func TestParseMutantErrors(t *testing.T) {
	dir := t.TempDir()
	diff := "diff --git a/manager/x.go b/manager/x.go\n--- a/manager/x.go\n+++ b/manager/x.go\n"
	never := func(string) bool { return false }
	smoke := func(s string) bool { return s == "smoke" }
	if err := os.WriteFile(filepath.Join(dir, "s.yaml"), []byte("name: s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, text, want string
		builtin          func(string) bool
	}{
		{"ok builtin", "# scenario: smoke\n# seed: 3\n# checker: c\n# models: a b\n#   continued\n" + diff, "", smoke},
		{"ok file", "# scenario: s.yaml\n# seed: 3\n# duration: 5s\n# checker: c\n# models: m\n" + diff, "", never},
		{"no diff", "# scenario: smoke\n# seed: 1\n# checker: c\n# models: m\n", "not a patch", smoke},
		{"no seed", "# scenario: smoke\n# checker: c\n# models: m\n" + diff, `lacks "seed"`, smoke},
		{"bad seed", "# scenario: smoke\n# seed: x\n# checker: c\n# models: m\n" + diff, "not an integer", smoke},
		{"bad duration", "# scenario: smoke\n# seed: 1\n# duration: 5\n# checker: c\n# models: m\n" + diff, "duration", smoke},
		{"unknown key", "# scenario: smoke\n# seed: 1\n# checker: c\n# models: m\n# chekcer: d\n" + diff, "unknown header key", smoke},
		{"twice", "# scenario: smoke\n# seed: 1\n# seed: 2\n# checker: c\n# models: m\n" + diff, "given twice", smoke},
		{"unknown scenario", "# scenario: nope\n# seed: 1\n# checker: c\n# models: m\n" + diff, "neither a built-in", never},
		{"missing file", "# scenario: gone.yaml\n# seed: 1\n# checker: c\n# models: m\n" + diff, "scenario file", never},
		{"file elsewhere", "# scenario: ../s.yaml\n# seed: 1\n# checker: c\n# models: m\n" + diff, "next to the patch", never},
		{"outside manager", "# scenario: smoke\n# seed: 1\n# checker: c\n# models: m\n" +
			strings.ReplaceAll(diff, "manager/x.go", "scenarios/x.go"), "only manager/", smoke},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".patch")
			if err := os.WriteFile(p, []byte(tc.text), 0o644); err != nil {
				t.Fatal(err)
			}
			m, err := ParseMutant(p, tc.builtin)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("ParseMutant: %v", err)
				}
				if m.Seed != 3 || m.Checker != "c" || len(m.Files) != 1 || m.Files[0] != "manager/x.go" {
					t.Errorf("ParseMutant = %+v", m)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseMutant error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	m, err := ParseMutant(filepath.Join(dir, "ok-builtin.patch"), smoke)
	if err != nil || m.Models != "a b continued" || m.Key() != "smoke seed 3" {
		t.Errorf("continued models / key: %+v, %v", m, err)
	}
}
