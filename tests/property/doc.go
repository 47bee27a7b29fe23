// Package property holds Corral's property-based tests of the manager: rapid
// state machines that drive a Manager through its Handler with random
// command and fault sequences and check its invariants after every step,
// against a plain-Go model. Two tiers share one machine: in-memory workers
// (fast, many checks) and real worker processes (fewer, slower checks, plus
// SIGSTOP, SIGCONT and SIGKILL of worker pids and a process census at the
// end). The package has no API; everything is in its tests.
//
// The virtual-time tier (virtual_test.go) runs the same machine with the
// manager and its in-memory workers inside a testing/synctest bubble, driven
// through the Handler: every timer of the manager, the worker loops and
// net.Pipe runs on the bubble's clock, so bounds are asserted exactly (a
// steady worker answers in zero virtual time, a crash is seen at the instant
// of exit, shutdown ends within grace + join) at thousands of cases a
// minute; bounds_test.go checks the hang-detection, shutdown and adaptive
// deadline bounds over drawn configurations, pure_test.go the pure parts
// (frames, request parsing, configuration errors, the scenario planner), and
// planted_test.go runs the tier against deliberately broken managers, which
// it must catch and shrink to a short sequence.
//
// Counts: -rapid.checks and -rapid.steps when given; otherwise
// CORRAL_PROPERTY_CHECKS (in-memory tier, default 40) and
// CORRAL_PROPERTY_PROCESS_CHECKS (real-process tier, default 10, or a tenth
// of CORRAL_PROPERTY_CHECKS when that is set), CORRAL_VIRTUAL_CHECKS
// (virtual-time tier, default 1000), CORRAL_BOUND_CHECKS and
// CORRAL_PURE_CHECKS. `make stress` runs the long tier, `make sim` the
// virtual-time tier once per rapid seed. A failing case is shrunk and saved
// by rapid under testdata/rapid/<TestName>/ and replayed first by every
// later run.
package property
