package analysis

import (
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/common/model"
)

// PromDuration formats d as a PromQL duration in its largest exact unit: 30s, 1m, 90s
// (1m30s), 2h, 1500ms. d is rounded to the millisecond, PromQL's resolution; it must be
// positive.
func PromDuration(d time.Duration) (string, error) {
	d = d.Round(time.Millisecond)
	if d <= 0 {
		return "", fmt.Errorf("duration %s is not a positive PromQL range", d)
	}
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"}} {
		if d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + u.name, nil
		}
	}
	panic("unreachable: d is a multiple of 1ms")
}

// ValidPromDuration reports whether s is a positive PromQL duration (such as 1m or 1m30s).
func ValidPromDuration(s string) error {
	d, err := model.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a PromQL duration: %w", s, err)
	}
	if d <= 0 {
		return fmt.Errorf("%q is not a positive PromQL duration", s)
	}
	return nil
}
