package chaos

import (
	"encoding/json"
	"math"
	"time"
)

// number reads a numeric parameter. Scenario files give ints, JSON gives
// float64; both are accepted. ok is false when the key is absent or null.
func number(fault string, params map[string]any, key string) (v float64, ok bool, err error) {
	raw, present := params[key]
	if !present || raw == nil {
		return 0, false, nil
	}
	switch n := raw.(type) {
	case int:
		v = float64(n)
	case int32:
		v = float64(n)
	case int64:
		v = float64(n)
	case uint:
		v = float64(n)
	case uint32:
		v = float64(n)
	case uint64:
		v = float64(n)
	case float32:
		v = float64(n)
	case float64:
		v = n
	case json.Number:
		if v, err = n.Float64(); err != nil {
			return 0, false, errorf(fault, ErrBadParam, nil, "%s = %q is not a number", key, n)
		}
	default:
		return 0, false, errorf(fault, ErrBadParam, nil, "%s = %v (%T) is not a number", key, raw, raw)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0, false, errorf(fault, ErrBadParam, nil, "%s = %v must be a finite number >= 0", key, v)
	}
	return v, true, nil
}

// intParam reads a non-negative integer parameter, or def when absent.
func intParam(fault string, params map[string]any, key string, def int) (int, error) {
	v, ok, err := number(fault, params, key)
	if err != nil || !ok {
		return def, err
	}
	if v != math.Trunc(v) || v > math.MaxInt32 {
		return 0, errorf(fault, ErrBadParam, nil, "%s = %v must be a whole number", key, v)
	}
	return int(v), nil
}

// secondsParam reads a duration given in seconds, or def when absent.
func secondsParam(fault string, params map[string]any, key string, def time.Duration) (time.Duration, error) {
	v, ok, err := number(fault, params, key)
	if err != nil || !ok {
		return def, err
	}
	if v > 1e6 {
		return 0, errorf(fault, ErrBadParam, nil, "%s = %v is more than 10^6 seconds", key, v)
	}
	return time.Duration(v * float64(time.Second)), nil
}

// countParam reads a whole number in lo..hi, or def when absent.
func countParam(fault string, params map[string]any, key string, def, lo, hi int) (int, error) {
	n, err := intParam(fault, params, key, def)
	if err == nil && (n < lo || n > hi) {
		err = errorf(fault, ErrBadParam, nil, "%s = %d must be in %d..%d", key, n, lo, hi)
	}
	return n, err
}
