package scenarios

import (
	"context"
	"os"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.uber.org/goleak"

	"github.com/corral-dev/corral/manager/protocol"
	"github.com/corral-dev/corral/manager/worker"
	corralotel "github.com/corral-dev/corral/otel"
)

// TestMain lets the embedded manager's launcher re-execute this test binary
// as a worker process (Options.WorkerCommand = os.Args[0]), and checks for
// leaked goroutines after every test.
func TestMain(m *testing.M) {
	if os.Getenv(protocol.EnvWorkerMode) != "" {
		os.Exit(testWorkerMain())
	}
	goleak.VerifyTestMain(m)
}

// testWorkerMain is the worker program, traced as corral-worker when the
// run asks for traces (CORRAL_TRACE_FILE), as `corral worker` does.
func testWorkerMain() int {
	if os.Getenv(protocol.EnvWorkerMode) != worker.ModeWorker || !corralotel.Configured(os.LookupEnv) {
		return worker.Main()
	}
	shutdown, err := corralotel.Setup(context.Background(),
		corralotel.WithServiceName("corral-worker"),
		corralotel.WithResourceAttributes(attribute.String("pipeline.id", os.Getenv(protocol.EnvPipelineID))),
		corralotel.WithBatchTimeout(500*time.Millisecond))
	if err != nil {
		return worker.Main()
	}
	return worker.MainWith(worker.MainOptions{Tracer: corralotel.WorkerTracer(), Flush: shutdown})
}

// testWorkers are the options that make this test binary the workers.
func testWorkers(o Options) Options {
	o.WorkerCommand = []string{os.Args[0]}
	o.WorkerEnv = append(o.WorkerEnv, "GORACE=atexit_sleep_ms=0")
	return o
}
