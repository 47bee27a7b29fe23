package protocol

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Keys Corral adds to a status report (the "report" object of a status
// answer), beside upstream's keys; the upstream client ignores them
// (PROTOCOL.md, "Corral extensions").
const (
	// ReportKeyState is the pipeline's state as one source state (the
	// liveliest source's: RUNNING over MUTED over RESTARTING ... over
	// ENDED).
	ReportKeyState = "state"
	// ReportKeyStalled is true while a source that cannot reconnect has
	// delivered no frame within its stall timeout; the manager's health
	// probe counts such an answer as a failure.
	ReportKeyStalled = "stalled"
	// ReportKeyFinished is true once every source ended (ENDED or ERROR),
	// the inference stage finished and every result was consumed; the
	// manager's health pass then removes the pipeline and reaps its
	// worker, as upstream's does.
	ReportKeyFinished = "finished"
)

// Event types of a status report's video_source_status_updates that
// Corral's worker adds to upstream's, for harnesses that look for them.
const (
	// EventSourceStalled: a source delivered no frame within
	// STREAM_MANAGER_SOURCE_STALL_TIMEOUT (scaled by its fps); payload
	// source_id, seconds_without_frame.
	EventSourceStalled = "SOURCE_STALLED"
	// EventSourceStallRecovered: a stalled source delivered a frame again.
	EventSourceStallRecovered = "SOURCE_STALL_RECOVERED"
)

// EnvSourceStallTimeout is the variable that sets the frame watchdog's
// base timeout in seconds (worker and manager read it; default
// DefaultSourceStallTimeoutSeconds).
const (
	EnvSourceStallTimeout            = "STREAM_MANAGER_SOURCE_STALL_TIMEOUT"
	DefaultSourceStallTimeoutSeconds = 5.0
	// EnvDecodeSize sets the WxH ffmpeg scales decoded media to (default
	// DefaultDecodeSize).
	EnvDecodeSize     = "STREAM_MANAGER_DECODE_SIZE"
	DefaultDecodeSize = "320x240"
)

// ParseSourceStallTimeout reads EnvSourceStallTimeout's value: seconds,
// fractional allowed; "" is the default, "0" turns the watchdog off. The
// error names the variable.
func ParseSourceStallTimeout(v string) (time.Duration, error) {
	if v == "" {
		return time.Duration(DefaultSourceStallTimeoutSeconds * float64(time.Second)), nil
	}
	s, err := strconv.ParseFloat(v, 64)
	if err != nil || !(s >= 0) || s > 86400 {
		return 0, fmt.Errorf("%s=%q: want seconds in 0..86400 (0 turns the frame watchdog off)", EnvSourceStallTimeout, v)
	}
	return time.Duration(s * float64(time.Second)), nil
}

// ParseDecodeSize reads EnvDecodeSize's value "WxH" (both 16..4096); ""
// is DefaultDecodeSize. The error names the variable.
func ParseDecodeSize(v string) (width, height int, err error) {
	if v == "" {
		v = DefaultDecodeSize
	}
	ws, hs, ok := strings.Cut(v, "x")
	w, err1 := strconv.Atoi(ws)
	h, err2 := strconv.Atoi(hs)
	if !ok || err1 != nil || err2 != nil || w < 16 || w > 4096 || h < 16 || h > 4096 {
		return 0, 0, fmt.Errorf("%s=%q: want WxH with both in 16..4096", EnvDecodeSize, v)
	}
	return w, h, nil
}

// WorkerSettings are the variables a worker reads from the environment it
// inherits (no manager flag sets them): `corral serve` checks them at start,
// and a scenario's manager: section passes them to its workers.
var WorkerSettings = []string{EnvSourceStallTimeout, EnvDecodeSize}
