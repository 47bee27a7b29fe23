package manager_test

import (
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/corral-dev/corral/internal/testkit"
)

// BenchmarkStatusRoundTrip is one status command over TCP to an in-memory
// worker: the cost of the server, the table and the worker channel.
func BenchmarkStatusRoundTrip(b *testing.B) {
	cfg := testConfig()
	cfg.HealthCheckInterval = time.Hour
	r := testkit.StartManager(b, cfg, memory(b))
	id := r.Init(b)
	b.ResetTimer()
	for b.Loop() {
		if _, err := r.Client.Status(b.Context(), id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHungNeighbour measures a healthy pipeline's status latency
// without and then with a SIGSTOPped neighbour that has a status in flight,
// in the same run, and reports the ratio of the medians. Upstream's
// answer is "forever"; the goal here is a ratio near 1.
func BenchmarkHungNeighbour(b *testing.B) {
	cfg := testConfig()
	cfg.HealthCheckInterval = time.Hour
	cfg.QueueTimeout = time.Minute // the stopped worker's command stays in flight
	r := testkit.StartManager(b, cfg, testkit.ProcessLauncher(b))
	healthy, hung := r.Init(b), r.Init(b)
	measure := func(n int) []time.Duration {
		out := make([]time.Duration, 0, n)
		for range n {
			begin := time.Now()
			if _, err := r.Client.Status(b.Context(), healthy); err != nil {
				b.Fatal(err)
			}
			out = append(out, time.Since(begin))
		}
		return out
	}
	const n = 200
	before := measure(n)
	pid := r.Pid(b, hung)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		b.Fatal(err)
	}
	inflight := make(chan struct{})
	go func() {
		defer close(inflight)
		_, _ = r.Client.Status(b.Context(), hung)
	}()
	b.ResetTimer()
	var during []time.Duration
	for b.Loop() {
		during = append(during, measure(1)...)
	}
	b.StopTimer()
	if len(during) < n {
		during = append(during, measure(n-len(during))...)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL) // let the in-flight status end
	<-inflight
	base, hungMedian := median(before), median(during)
	b.ReportMetric(float64(base.Microseconds()), "healthy-µs")
	b.ReportMetric(float64(hungMedian.Microseconds()), "beside-hung-µs")
	b.ReportMetric(float64(hungMedian)/float64(base), "ratio")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
