package main

import (
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/corral-dev/corral/manager/protocol"
)

// envArgs, when set, makes the test binary the corral program with these
// arguments (separated by newlines); its workers are the test binary too.
const envArgs = "CORRAL_TEST_ARGS"

func TestMain(m *testing.M) {
	if os.Getenv(protocol.EnvWorkerMode) != "" {
		os.Exit(corral(nil))
	}
	if args, ok := os.LookupEnv(envArgs); ok {
		os.Exit(corral(strings.Split(args, "\n")))
	}
	goleak.VerifyTestMain(m)
}
