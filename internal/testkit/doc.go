// Package testkit is the rig the manager's test packages share: a
// recorder of manager events with bounded waits, a TestMain that doubles as
// the worker program, a launcher of real worker processes, and a manager
// served on a loopback port that cleanup shuts down, and the planted bugs
// (broken middleware and launchers) that prove the oracles.
//
// It is for tests only, and imports nothing above the manager (no otel,
// chaos or scenarios), so that any of those packages' tests can use it.
// Every wait it makes is bounded; reaching a bound fails the test.
package testkit
