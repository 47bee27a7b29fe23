package scenarios_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/corral-dev/corral/scenarios"
)

// Run a built-in scenario against the embedded reference manager, shorter
// than written, and print its verdict. In a test, pass the report to
// scenarios.Require instead; see the package's api.go for the TestMain a
// test binary needs to play the workers.
func Example() {
	sc, err := scenarios.Builtin("hung-queue")
	if err != nil {
		fmt.Println(err)
		return
	}
	seed := int64(42)
	rep, err := scenarios.Run(context.Background(), sc, scenarios.Options{
		Seed:          &seed,
		Duration:      20 * time.Second,
		Out:           os.TempDir() + "/corral-example",
		WorkerCommand: []string{os.Args[0]},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rep.Valid, rep.Replay)
}

// The planned schedule depends only on the scenario and the seed.
func ExamplePlanRun() {
	sc, _ := scenarios.Builtin("smoke")
	plan := scenarios.PlanRun(sc, 1)
	first, last := plan[0], plan[len(plan)-1]
	fmt.Println(first.Process, first.F, first.Target)
	fmt.Println(last.Kind)
	// Output:
	// client-1 init 1
	// command
}
