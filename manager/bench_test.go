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
// while its neighbour alternates, every 25 commands, between running and
// SIGSTOPped with a status in flight, and reports the ratio of the medians
// beside the hung neighbour and beside the running one, interleaved in the
// same run. Upstream's answer is "forever"; the goal here is a ratio near 1.
func BenchmarkHungNeighbour(b *testing.B) {
	cfg := testConfig()
	cfg.HealthCheckInterval = time.Hour
	cfg.QueueTimeout = time.Minute // the stopped worker's command stays in flight
	r := testkit.StartManager(b, cfg, testkit.ProcessLauncher(b))
	healthy, hung := r.Init(b), r.Init(b)
	pid := r.Pid(b, hung)

	stopped := false
	var inflight chan struct{}
	toggle := func() {
		b.StopTimer()
		defer b.StartTimer()
		if !stopped {
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				b.Fatal(err)
			}
			inflight = make(chan struct{})
			go func(done chan struct{}) {
				defer close(done)
				_, _ = r.Client.Status(b.Context(), hung)
			}(inflight)
		} else {
			_ = syscall.Kill(pid, syscall.SIGCONT)
			<-inflight // answered once the worker runs again (bounded by QueueTimeout)
		}
		stopped = !stopped
	}
	var calm, beside []time.Duration
	i := 0
	for b.Loop() {
		if i%25 == 0 && i > 0 {
			toggle()
		}
		i++
		begin := time.Now()
		if _, err := r.Client.Status(b.Context(), healthy); err != nil {
			b.Fatal(err)
		}
		if stopped {
			beside = append(beside, time.Since(begin))
		} else {
			calm = append(calm, time.Since(begin))
		}
	}
	if stopped {
		toggle()
	}
	if len(calm) == 0 || len(beside) == 0 {
		return // too few iterations to compare (run with -benchtime >= 50x)
	}
	base, hungMedian := median(calm), median(beside)
	b.ReportMetric(float64(base.Microseconds()), "healthy-µs")
	b.ReportMetric(float64(hungMedian.Microseconds()), "beside-hung-µs")
	b.ReportMetric(float64(hungMedian)/float64(base), "ratio")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkListRoundTrip is one list_pipelines over TCP, a new connection
// each: the server's per-connection cost with no worker behind it.
func BenchmarkListRoundTrip(b *testing.B) {
	cfg := testConfig()
	cfg.HealthCheckInterval = time.Hour
	r := testkit.StartManager(b, cfg, memory(b))
	r.Init(b)
	b.ResetTimer()
	for b.Loop() {
		if _, err := r.Client.List(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}
