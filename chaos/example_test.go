package chaos_test

import (
	"fmt"
	"time"

	"github.com/corral-dev/corral/chaos"
	"github.com/corral-dev/corral/manager/protocol"
)

func ExamplePlanFaults() {
	menu := []chaos.Choice{
		{Fault: protocol.FaultCrash, Weight: 1},
		{Fault: protocol.FaultHangProcess, Weight: 2},
		{Fault: protocol.FaultOversizedFrame, Weight: 1},
	}
	// The same seed always gives this schedule.
	for _, p := range chaos.PlanFaults(1, menu, 5*time.Second, 30*time.Second, 3) {
		fmt.Printf("%-8s %-15s pipeline %d for %s\n", p.At, p.Fault, p.Target, p.For)
	}
	// Output:
	// 2.336s   hang_process    pipeline 1 for 3s
	// 17.808s  oversized_frame pipeline 0 for 0s
	// 18.801s  oversized_frame pipeline 0 for 0s
	// 21.744s  hang_process    pipeline 1 for 3s
	// 24.441s  crash           pipeline 2 for 0s
}
