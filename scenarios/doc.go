// Package scenarios is Corral's reliability harness: scenario files and
// built-ins, a seeded planner that turns a scenario into a schedule of
// commands and faults, a runner that plays the schedule against a stream
// manager (embedded or at an address) while recording a Jepsen-style
// history, invariant checkers over that history and a process census, and
// reports (terminal, JSON, HTML, JUnit).
package scenarios
