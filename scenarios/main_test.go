package scenarios

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/corral-dev/corral/manager/worker"
)

// TestMain lets the embedded manager's launcher re-execute this test binary
// as a worker process (Options.WorkerCommand = os.Args[0]), and checks for
// leaked goroutines after every test.
func TestMain(m *testing.M) {
	if os.Getenv(worker.EnvMode) != "" {
		os.Exit(worker.Main())
	}
	goleak.VerifyTestMain(m)
}

// testWorkers are the options that make this test binary the workers.
func testWorkers(o Options) Options {
	o.WorkerCommand = []string{os.Args[0]}
	o.WorkerEnv = append(o.WorkerEnv, "GORACE=atexit_sleep_ms=0")
	return o
}
