package capture

import (
	"strings"
	"testing"
	"time"
)

func TestLostRange(t *testing.T) {
	t.Parallel()
	at := func(min int) time.Time { return time.Date(2026, 1, 1, 10, min, 0, 0, time.UTC) }
	ptr := func(t time.Time) *time.Time { return &t }
	parts := func(lasts ...time.Time) []partitionWindow {
		out := make([]partitionWindow, len(lasts))
		for i, l := range lasts {
			out[i].last = l
		}
		return out
	}
	now := at(59)
	tests := []struct {
		name     string
		windows  map[string][]partitionWindow
		oldest   *time.Time
		from, to time.Time
	}{
		{"rows older than every last record are left", map[string][]partitionWindow{"t": parts(at(20), at(21))}, ptr(at(5)), time.Time{}, time.Time{}},
		{"the oldest row is newer than one partition's last record",
			map[string][]partitionWindow{"t": parts(at(20), at(30))}, ptr(at(25)), at(20), at(25)},
		{"the earliest last record over topics starts the range",
			map[string][]partitionWindow{"a": parts(at(20), at(30)), "b": parts(at(15))}, ptr(at(40)), at(15), at(40)},
		{"an empty partition has no last record to start from",
			map[string][]partitionWindow{"t": parts(time.Time{}, at(30))}, ptr(at(40)), at(30), at(40)},
		{"an empty table lost everything up to the snapshot",
			map[string][]partitionWindow{"t": parts(at(20))}, nil, at(20), now},
		{"nothing was ever published", map[string][]partitionWindow{"t": parts(time.Time{})}, nil, time.Time{}, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			from, to := lostRange(tt.windows, tt.oldest, now)
			if !from.Equal(tt.from) || !to.Equal(tt.to) {
				t.Errorf("lostRange = [%v, %v), want [%v, %v)", from, to, tt.from, tt.to)
			}
		})
	}
}

func TestRebuildSlotName(t *testing.T) {
	t.Parallel()
	if got := rebuildSlotName("orderflow_capture"); got != "orderflow_capture_rebuild" {
		t.Errorf("rebuildSlotName = %q", got)
	}
	long := strings.Repeat("s", 63)
	if got := rebuildSlotName(long); len(got) != 63 || !strings.HasSuffix(got, "_rebuild") || !validSlotName(got) {
		t.Errorf("rebuildSlotName(63 chars) = %q (%d bytes)", got, len(got))
	}
	for name, want := range map[string]bool{"orderflow_capture": true, "a1_b": true, "": false, "Upper": false, "with-dash": false, "x; DROP": false, long + "x": false} {
		if validSlotName(name) != want {
			t.Errorf("validSlotName(%q) = %v, want %v", name, !want, want)
		}
	}
}
