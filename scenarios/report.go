package scenarios

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Report file names inside a run folder.
const (
	ReportJSONFile  = "report.json"
	ReportHTMLFile  = "report.html"
	ReportJUnitFile = "junit.xml"
)

// WriteReports writes report.json, report.html and junit.xml into
// rep.Dir, creating it if needed. It writes every file it can and returns
// the errors of those it could not.
func WriteReports(rep *Report) error {
	if rep.Dir == "" {
		return errors.New("scenarios: report has no run folder (Report.Dir)")
	}
	if err := os.MkdirAll(rep.Dir, 0o755); err != nil {
		return fmt.Errorf("scenarios: %w", err)
	}
	var errs []error
	write := func(name string, render func() ([]byte, error)) {
		b, err := render()
		if err == nil {
			err = os.WriteFile(filepath.Join(rep.Dir, name), b, 0o644)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("scenarios: write %s: %w", name, err))
		}
	}
	write(ReportJSONFile, func() ([]byte, error) { return reportJSON(rep) })
	write(ReportJUnitFile, func() ([]byte, error) { return reportJUnit(rep) })
	write(ReportHTMLFile, func() ([]byte, error) { return reportHTML(rep) })
	return errors.Join(errs...)
}

func reportJSON(rep *Report) ([]byte, error) {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// JUnit XML, as CI systems read it: one suite "corral", one test case per
// checker.
type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Skipped   *junitProblem `xml:"skipped,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// reportJUnit renders the checkers as JUnit test cases. An invalid checker
// is a failure; an unknown one is an error rather than a skip, because
// unknown is never a pass and CI must not go green on it.
func reportJUnit(rep *Report) ([]byte, error) {
	suite := junitSuite{Name: "corral", Tests: len(rep.Results), Time: "0"}
	if d := rep.Data; d != nil {
		suite.Time = fmt.Sprintf("%.3f", time.Duration(runEnd(d)).Seconds())
		if !d.Start.IsZero() {
			suite.Timestamp = d.Start.UTC().Format("2006-01-02T15:04:05")
		}
	}
	suite.Properties = []junitProperty{
		{"scenario", rep.Scenario},
		{"seed", fmt.Sprint(rep.Seed)},
		{"replay", rep.Replay},
		{"dir", rep.Dir},
		{"verdict", rep.Verdict},
		{"profile", rep.Target.Profile.Name},
	}
	class := "corral." + rep.Scenario
	for _, r := range rep.Results {
		c := junitCase{Name: r.Checker, Classname: class, Time: "0"}
		text := strings.Join(append([]string{r.Summary}, r.Details...), "\n")
		text += fmt.Sprintf("\nseed %d; replay: %s", rep.Seed, rep.Replay)
		switch r.Verdict {
		case Valid:
			c.SystemOut = strings.Join(append([]string{r.Summary}, r.Details...), "\n")
		case Invalid:
			suite.Failures++
			c.Failure = &junitProblem{Message: r.Summary, Type: Invalid, Text: text}
		default:
			suite.Errors++
			c.Error = &junitProblem{Message: "unknown: " + r.Summary, Type: Unknown, Text: text}
		}
		suite.Cases = append(suite.Cases, c)
	}
	// Faults the target could not take are skipped cases: visible in CI,
	// neither a pass nor a failure of the target.
	for _, f := range rep.NotApplicable {
		suite.Tests++
		suite.Skipped++
		name := fmt.Sprintf("fault %s at %s", f.Fault, f.At.D())
		if f.Target != 0 {
			name += fmt.Sprintf(" on pipeline #%d", f.Target)
		}
		suite.Cases = append(suite.Cases, junitCase{Name: name, Classname: class + ".faults", Time: "0",
			Skipped: &junitProblem{Message: "not applicable: " + f.Reason, Type: "not_applicable"}})
	}
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(&buf)
	enc.Indent("", "  ")
	if err := enc.Encode(junitSuites{Suites: []junitSuite{suite}}); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}
