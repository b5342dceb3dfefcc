package freeze

import (
	"testing"
	"time"
)

func TestActive(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skipf("no time zone database on this machine: %v", err)
	}
	evenings := Window{Name: "evenings", Days: []time.Weekday{time.Friday}, From: 16 * 60, To: 9 * 60, Loc: berlin}
	weekend := Window{Name: "weekend", Days: []time.Weekday{time.Saturday, time.Sunday}, From: 0, To: 24 * 60, Loc: berlin}
	holidays := Window{Name: "holidays", Start: time.Date(2026, 12, 24, 0, 0, 0, 0, berlin), End: time.Date(2027, 1, 2, 0, 0, 0, 0, berlin)}
	s := Schedule{evenings, weekend, holidays}
	at := func(y int, m time.Month, d, h, min int) time.Time { return time.Date(y, m, d, h, min, 0, 0, berlin) }
	tests := []struct {
		name   string
		t      time.Time
		active bool
		window string
		until  time.Time
	}{
		{"thursday noon", at(2026, 11, 26, 12, 0), false, "", time.Time{}},
		{"friday 15:59", at(2026, 11, 27, 15, 59), false, "", time.Time{}},
		{"friday 16:00 runs through the weekend", at(2026, 11, 27, 16, 0), true, "evenings", at(2026, 11, 30, 0, 0)},
		{"sunday night", at(2026, 11, 29, 23, 0), true, "weekend", at(2026, 11, 30, 0, 0)},
		{"monday morning", at(2026, 11, 30, 8, 0), false, "", time.Time{}},
		{"christmas eve", at(2026, 12, 24, 10, 0), true, "holidays", at(2027, 1, 4, 0, 0)},
		{"new year's day 2027 is a friday", at(2027, 1, 1, 10, 0), true, "holidays", at(2027, 1, 4, 0, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, until, ok := s.Active(tt.t)
			if ok != tt.active || w.Name != tt.window || (ok && !until.Equal(tt.until)) {
				t.Errorf("Active(%s) = %q until %s, %v; want %q until %s, %v", tt.t, w.Name, until, ok, tt.window, tt.until, tt.active)
			}
		})
	}
}

func TestOvernightFromSaturdayEndsSunday(t *testing.T) {
	w := Window{Days: []time.Weekday{time.Saturday}, From: 22 * 60, To: 6 * 60}
	sun := time.Date(2026, 11, 29, 5, 0, 0, 0, time.UTC)
	if end, ok := w.Active(sun); !ok || !end.Equal(time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)) {
		t.Errorf("sunday 05:00 = %s, %v; want held until 06:00", end, ok)
	}
	if _, ok := w.Active(sun.Add(time.Hour)); ok {
		t.Errorf("sunday 06:00 is held; want open")
	}
}

func TestParse(t *testing.T) {
	if _, err := ParseClock("25:00"); err == nil {
		t.Error("ParseClock(25:00) = nil error")
	}
	if m, err := ParseClock("24:00"); err != nil || m != 24*60 {
		t.Errorf("ParseClock(24:00) = %d, %v", m, err)
	}
	if m, err := ParseClock("09:30"); err != nil || m != 570 {
		t.Errorf("ParseClock(09:30) = %d, %v", m, err)
	}
	if _, err := ParseDay("frieday"); err == nil {
		t.Error("ParseDay(frieday) = nil error")
	}
	end, err := ParseDate("2026-12-31", time.UTC, true)
	if err != nil || !end.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("ParseDate(2026-12-31, end) = %s, %v; want the midnight after", end, err)
	}
	if _, err := ParseDate("31/12/2026", time.UTC, false); err == nil {
		t.Error("ParseDate(31/12/2026) = nil error")
	}
}
