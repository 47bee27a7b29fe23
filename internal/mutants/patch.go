package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Mutant is one patch file of testdata/mutants and what its header asks.
//
// A header is the run of "# key: value" lines before the first
// "diff --git" line (git apply and patch skip it); a line "#   more" goes
// on the previous value. Keys:
//
//	scenario  a built-in scenario name, or a .yaml file next to the patch
//	seed      the seed to run it with (an integer)
//	checker   the checker that must be invalid on the mutant
//	duration  optional --duration for the run (a Go duration)
//	models    the real failure the slip is modelled on
type Mutant struct {
	Name     string // file name without .patch
	Path     string // absolute path of the patch
	Scenario string // built-in name, or absolute path of a scenario file
	Seed     int64
	Checker  string
	Duration time.Duration // 0: the scenario's own
	Models   string
	Files    []string // files the patch changes
}

// Key names the baseline run the mutant is compared with: the unpatched
// manager must be valid on the same scenario, seed and duration.
func (m Mutant) Key() string {
	k := fmt.Sprintf("%s seed %d", filepath.Base(m.Scenario), m.Seed)
	if m.Duration > 0 {
		k += " duration " + m.Duration.String()
	}
	return k
}

var headerLine = regexp.MustCompile(`^#\s*([a-z_]+):\s*(.*)$`)

// ParseMutant reads the header of the patch at path. A builtin reports
// whether a name is a built-in scenario. Errors name the file and the key.
func ParseMutant(path string, builtin func(string) bool) (Mutant, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Mutant{}, err
	}
	b, err := os.ReadFile(abs)
	if err != nil {
		return Mutant{}, err
	}
	m := Mutant{Name: strings.TrimSuffix(filepath.Base(abs), ".patch"), Path: abs}
	fields := map[string]string{}
	last := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	inHeader := true
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "diff --git ") {
			inHeader = false
			if f := strings.Fields(line); len(f) == 4 {
				m.Files = append(m.Files, strings.TrimPrefix(f[3], "b/"))
			}
			continue
		}
		if !inHeader {
			continue
		}
		if g := headerLine.FindStringSubmatch(line); g != nil {
			last = g[1]
			if _, dup := fields[last]; dup {
				return Mutant{}, fmt.Errorf("%s: header key %q given twice", path, last)
			}
			fields[last] = strings.TrimSpace(g[2])
			continue
		}
		if more, ok := strings.CutPrefix(line, "#"); ok && last != "" && strings.TrimSpace(more) != "" {
			fields[last] += " " + strings.TrimSpace(more)
		}
	}
	if err := sc.Err(); err != nil {
		return Mutant{}, fmt.Errorf("%s: %w", path, err)
	}
	if len(m.Files) == 0 {
		return Mutant{}, fmt.Errorf("%s: no \"diff --git\" section: not a patch", path)
	}
	for _, f := range m.Files {
		if !strings.HasPrefix(f, "manager/") {
			return Mutant{}, fmt.Errorf("%s: changes %s; a mutant changes only manager/...", path, f)
		}
	}
	for _, k := range []string{"scenario", "seed", "checker", "models"} {
		if fields[k] == "" {
			return Mutant{}, fmt.Errorf("%s: header lacks %q (want lines \"# %s: ...\" before the diff)", path, k, k)
		}
	}
	for k := range fields {
		switch k {
		case "scenario", "seed", "checker", "models", "duration":
		default:
			return Mutant{}, fmt.Errorf("%s: unknown header key %q (known: scenario, seed, checker, duration, models)", path, k)
		}
	}
	m.Checker, m.Models = fields["checker"], fields["models"]
	if m.Seed, err = strconv.ParseInt(fields["seed"], 10, 64); err != nil {
		return Mutant{}, fmt.Errorf("%s: seed %q is not an integer", path, fields["seed"])
	}
	if d := fields["duration"]; d != "" {
		if m.Duration, err = time.ParseDuration(d); err != nil || m.Duration <= 0 {
			return Mutant{}, fmt.Errorf("%s: duration %q is not a positive Go duration (e.g. 12s)", path, d)
		}
	}
	sc2 := fields["scenario"]
	if strings.HasSuffix(sc2, ".yaml") || strings.HasSuffix(sc2, ".yml") {
		if strings.ContainsRune(sc2, '/') {
			return Mutant{}, fmt.Errorf("%s: scenario file %q must sit next to the patch (a bare file name)", path, sc2)
		}
		m.Scenario = filepath.Join(filepath.Dir(abs), sc2)
		if _, err := os.Stat(m.Scenario); err != nil {
			return Mutant{}, fmt.Errorf("%s: scenario file: %w", path, err)
		}
	} else {
		if !builtin(sc2) {
			return Mutant{}, fmt.Errorf("%s: scenario %q is neither a built-in nor a .yaml file next to the patch", path, sc2)
		}
		m.Scenario = sc2
	}
	return m, nil
}

// LoadMutants parses every *.patch in dir, sorted by name.
func LoadMutants(dir string, builtin func(string) bool) ([]Mutant, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.patch"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no *.patch file in %s", dir)
	}
	var out []Mutant
	for _, p := range paths {
		m, err := ParseMutant(p, builtin)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}
