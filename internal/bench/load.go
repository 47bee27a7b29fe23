// Package bench measures Corral against its physical floor: a framed-JSON
// server that does no work and a raw pipe round trip to a child, both
// measured in the same run as the manager, so every target is a ratio that
// holds on a loaded or a fast machine alike. `corral bench` drives it.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/corral-dev/corral/manager/protocol"
)

// Cell is one load measurement: Clients goroutines each sending one request
// per connection (the protocol's model) for the cell's duration.
type Cell struct {
	Clients   int     `json:"clients"`
	Pipelines int     `json:"pipelines,omitempty"`
	Ops       int     `json:"ops"`       // successful round trips
	Errors    int     `json:"errors"`    // transport errors and failure answers
	OpsPerSec float64 `json:"ops_per_s"` // successful round trips per second
	P50us     float64 `json:"p50_us"`    // median round trip, µs
	P99us     float64 `json:"p99_us"`    // 99th percentile, µs
	FloorP50  float64 `json:"p50_ratio"` // P50us / floor P50us at the same client count (0 for the floor)
	FloorOps  float64 `json:"ops_ratio"` // OpsPerSec / floor OpsPerSec at the same client count
	FirstErr  string  `json:"first_error,omitempty"`
}

// request returns one pre-encoded request frame.
func request(typ, pipelineID string) []byte {
	fields := map[string]any{"type": typ}
	if pipelineID != "" {
		fields["pipeline_id"] = pipelineID
	}
	body, err := json.Marshal(fields)
	if err != nil {
		panic(err) // strings only: cannot fail
	}
	return protocol.AppendFrame(nil, body)
}

// successMark is how a load client recognises a success answer without
// decoding it: the envelope's response carries "status":"success" and a
// failure never does.
var successMark = []byte(`"status":"success"`)

// roundTrip sends one pre-encoded frame on a new connection and reads the
// answer; ok is false for a failure answer.
func roundTrip(ctx context.Context, addr string, frame []byte, timeout time.Duration) (ok bool, err error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write(frame); err != nil {
		return false, err
	}
	body, err := protocol.ReadFrame(conn, 0)
	if err != nil {
		return false, err
	}
	if !bytes.Contains(body, successMark) {
		return false, fmt.Errorf("failure answer: %.200s", body)
	}
	return true, nil
}

// load runs clients goroutines for d; client i sends frames[i%len(frames)].
func load(ctx context.Context, addr string, frames [][]byte, clients int, d, timeout time.Duration) Cell {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		mu       sync.Mutex
		lat      []time.Duration
		errs     int
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	for i := range clients {
		frame := frames[i%len(frames)]
		wg.Go(func() {
			var mine []time.Duration
			var bad int
			var first error
			for ctx.Err() == nil {
				t0 := time.Now()
				ok, err := roundTrip(context.Background(), addr, frame, timeout)
				if ok {
					mine = append(mine, time.Since(t0))
					continue
				}
				bad++
				if first == nil {
					first = err
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += bad
			if firstErr == nil {
				firstErr = first
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	c := Cell{Clients: clients, Ops: len(lat), Errors: errs, OpsPerSec: float64(len(lat)) / elapsed.Seconds()}
	if firstErr != nil {
		c.FirstErr = firstErr.Error()
	}
	c.P50us, c.P99us = quantileUS(lat, 0.50), quantileUS(lat, 0.99)
	return c
}

// quantileUS returns the q quantile of d in microseconds (0 when empty).
func quantileUS(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := min(int(float64(len(s))*q), len(s)-1)
	return float64(s[i].Nanoseconds()) / 1e3
}

// median returns the median of d (0 when empty).
func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// ratioTo fills c's ratios against the floor cell f.
func (c *Cell) ratioTo(f Cell) {
	if f.P50us > 0 && f.OpsPerSec > 0 {
		c.FloorP50 = c.P50us / f.P50us
		c.FloorOps = c.OpsPerSec / f.OpsPerSec
	}
}

var errNoAnswer = errors.New("bench: no answer")
