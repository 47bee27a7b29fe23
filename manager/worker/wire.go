package worker

import (
	"math"
	"strconv"
	"time"
)

// pyTimeLayout is what Python's datetime.isoformat() writes for a naive
// datetime with microseconds, the form upstream sends in reports and
// frames_metadata (PROTOCOL.md): no zone, always six fractional digits, so
// datetime.fromisoformat parses it on every Python from 3.7 on.
const pyTimeLayout = "2006-01-02T15:04:05.000000"

// pyTime formats t as upstream's clients parse it: naive local time (the
// worker's TZ, as upstream's datetime.now()) with microseconds.
func pyTime(t time.Time) string { return t.Local().Format(pyTimeLayout) }

// pyFloat is a number upstream sends as a Python float: it always encodes
// with a fraction or exponent (25.0, not 25), so json.loads gives a float
// where the client's models declare one. Non-finite values, which JSON
// cannot carry, encode as null.
type pyFloat float64

// MarshalJSON writes f as a JSON number that Python decodes to a float.
func (f pyFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return []byte("null"), nil
	}
	b := strconv.AppendFloat(nil, v, 'g', -1, 64)
	for _, c := range b {
		if c == '.' || c == 'e' || c == 'E' {
			return b, nil
		}
	}
	return append(b, '.', '0'), nil
}

// optSeconds is a latency in seconds as a Python float, or null (nil) when
// nothing has been measured yet, as upstream's Optional[float] fields.
func optSeconds(d time.Duration, n int) any {
	if n == 0 {
		return nil
	}
	return pyFloat(d.Seconds() / float64(n))
}
