package worker

import (
	"context"
	"math"
	"time"
)

// motionThreshold is the luma difference above which a pixel counts as
// moving; small differences are sensor noise in real video.
const motionThreshold = 16

// analysis is the model's output for one frame.
type analysis struct {
	brightness     float64 // mean luma, 0..255
	contrast       float64 // standard deviation of luma
	motion         float64 // mean absolute difference to the previous frame
	motionFraction float64 // share of pixels whose difference exceeds motionThreshold
}

// analyse measures luma, and motion against prev when prev has the same size
// (the first frame has no motion).
func analyse(luma, prev []byte) analysis {
	if len(luma) == 0 {
		return analysis{}
	}
	var sum, sumSq uint64
	for _, v := range luma {
		sum += uint64(v)
		sumSq += uint64(v) * uint64(v)
	}
	n := float64(len(luma))
	mean := float64(sum) / n
	a := analysis{brightness: mean, contrast: math.Sqrt(max(0, float64(sumSq)/n-mean*mean))}
	if len(prev) == len(luma) {
		var diff uint64
		var moving int
		for i, v := range luma {
			d := int(v) - int(prev[i])
			if d < 0 {
				d = -d
			}
			diff += uint64(d)
			if d > motionThreshold {
				moving++
			}
		}
		a.motion = float64(diff) / n
		a.motionFraction = float64(moving) / n
	}
	return a
}

// burn does busy work over luma for d (workflows_parameters.cost_ms), so a
// pipeline can be made as slow as a real model without sleeping. It stops
// early when ctx ends and returns a value so the work cannot be elided.
func burn(ctx context.Context, luma []byte, d time.Duration) uint32 {
	var h uint32 = 2166136261
	if d <= 0 || len(luma) == 0 {
		return h
	}
	deadline := time.Now().Add(d)
	for i := 0; ; i++ {
		h = (h ^ uint32(luma[i%len(luma)])) * 16777619
		if i%4096 == 0 && (time.Now().After(deadline) || ctx.Err() != nil) {
			return h
		}
	}
}
