// Package property holds Corral's property-based tests of the manager: rapid
// state machines that drive a Manager through its Handler with random
// command and fault sequences and check its invariants after every step,
// against a plain-Go model. Two tiers share one machine: in-memory workers
// (fast, many checks) and real worker processes (fewer, slower checks, plus
// SIGSTOP, SIGCONT and SIGKILL of worker pids and a process census at the
// end). The package has no API; everything is in its tests.
//
// Counts: -rapid.checks and -rapid.steps when given; otherwise
// CORRAL_PROPERTY_CHECKS (in-memory tier, default 40) and
// CORRAL_PROPERTY_PROCESS_CHECKS (real-process tier, default 10, or a tenth
// of CORRAL_PROPERTY_CHECKS when that is set). `make stress` runs the long
// tier. A failing case is shrunk and saved by rapid under
// testdata/rapid/<TestName>/ and replayed first by every later run.
package property
