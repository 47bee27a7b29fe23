package testkit

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/corral-dev/corral/manager/protocol"
	"github.com/corral-dev/corral/manager/worker"
)

// WorkerTestMain is a TestMain for packages whose tests start this test
// binary as their worker (see ProcessLauncher): run with protocol.EnvWorkerMode set,
// the binary is the worker program; otherwise it runs the tests and then
// checks for leaked goroutines, ignoring what opts say to.
func WorkerTestMain(m *testing.M, opts ...goleak.Option) {
	if os.Getenv(protocol.EnvWorkerMode) != "" {
		os.Exit(worker.Main())
	}
	goleak.VerifyTestMain(m, opts...)
}
