package birthday

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func date(s string) Date {
	d, err := ParseDate(s)
	if err != nil {
		panic(err)
	}
	return d
}

func mustLoad(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("load time zone %s: %v", name, err)
	}
	return loc
}

func TestGreeting(t *testing.T) {
	tests := []struct {
		name  string
		today string
		born  string
		want  string
	}{
		{"birthday today", "2024-06-15", "1990-06-15", "Hello, Ann! Happy birthday!"},
		{"birthday tomorrow", "2024-06-15", "1990-06-16", "Hello, Ann! Your birthday is in 1 day"},
		{"birthday yesterday, leap year ahead", "2023-06-15", "1990-06-14", "Hello, Ann! Your birthday is in 365 days"},
		{"birthday yesterday, no leap day ahead", "2024-06-15", "1990-06-14", "Hello, Ann! Your birthday is in 364 days"},
		{"birthday yesterday across Feb 29", "2024-02-01", "1990-01-31", "Hello, Ann! Your birthday is in 365 days"},
		{"Dec 31 to Jan 1", "2024-12-31", "1990-01-01", "Hello, Ann! Your birthday is in 1 day"},
		{"Jan 1 on Dec 31's next day", "2025-01-01", "1990-12-31", "Hello, Ann! Your birthday is in 364 days"},
		{"later this year", "2025-01-01", "1990-03-01", "Hello, Ann! Your birthday is in 59 days"},
		{"later this leap year", "2024-01-01", "1990-03-01", "Hello, Ann! Your birthday is in 60 days"},
		{"Feb 29 born, leap year, on the day", "2024-02-29", "2000-02-29", "Hello, Ann! Happy birthday!"},
		{"Feb 29 born, leap year, day before", "2024-02-28", "2000-02-29", "Hello, Ann! Your birthday is in 1 day"},
		{"Feb 29 born, non-leap year, celebrated Feb 28", "2025-02-28", "2000-02-29", "Hello, Ann! Happy birthday!"},
		{"Feb 29 born, non-leap year, day before", "2025-02-27", "2000-02-29", "Hello, Ann! Your birthday is in 1 day"},
		{"Feb 29 born, Mar 1 before a leap year", "2027-03-01", "2000-02-29", "Hello, Ann! Your birthday is in 365 days"},
		{"Feb 29 born, Mar 1 of a non-leap year", "2025-03-01", "2000-02-29", "Hello, Ann! Your birthday is in 364 days"},
		{"Feb 29 born, 1900 is not a leap year", "1900-02-28", "1896-02-29", "Hello, Ann! Happy birthday!"},
		{"Feb 29 born, 2000 is a leap year", "2000-02-28", "1996-02-29", "Hello, Ann! Your birthday is in 1 day"},
		{"Feb 28 born, leap year", "2024-02-29", "1990-02-28", "Hello, Ann! Your birthday is in 365 days"},
		{"Mar 1 born, leap year", "2024-02-28", "1990-03-01", "Hello, Ann! Your birthday is in 2 days"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Greeting("Ann", date(tt.today), date(tt.born))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Greeting(today %s, born %s) mismatch (-want +got):\n%s", tt.today, tt.born, diff)
			}
		})
	}
}

func TestTodayAroundMidnight(t *testing.T) {
	tests := []struct {
		name string
		now  time.Time
		zone string
		want string
	}{
		{"UTC just before midnight", time.Date(2024, 12, 31, 23, 59, 59, 999999999, time.UTC), "UTC", "2024-12-31"},
		{"UTC at midnight", time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), "UTC", "2025-01-01"},
		{"east of UTC is already tomorrow", time.Date(2024, 12, 31, 23, 30, 0, 0, time.UTC), "Europe/Berlin", "2025-01-01"},
		{"west of UTC is still yesterday", time.Date(2025, 1, 1, 3, 0, 0, 0, time.UTC), "America/New_York", "2024-12-31"},
		{"UTC+14", time.Date(2024, 2, 28, 10, 0, 0, 0, time.UTC), "Pacific/Kiritimati", "2024-02-29"},
		{"UTC-11", time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC), "Pacific/Pago_Pago", "2024-02-29"},
		{"half-hour offset", time.Date(2024, 6, 14, 18, 29, 0, 0, time.UTC), "Asia/Kolkata", "2024-06-14"},
		{"half-hour offset past midnight", time.Date(2024, 6, 14, 18, 30, 0, 0, time.UTC), "Asia/Kolkata", "2024-06-15"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Today(tt.now, mustLoad(t, tt.zone)).String()
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Today(%s, %s) mismatch (-want +got):\n%s", tt.now, tt.zone, diff)
			}
		})
	}
}

// The same instant is a birthday in one zone and not yet in another.
func TestGreetingDependsOnZone(t *testing.T) {
	now := time.Date(2024, 6, 14, 22, 0, 0, 0, time.UTC)
	born := date("1990-06-15")
	tests := []struct {
		zone string
		want string
	}{
		{"UTC", "Hello, Bo! Your birthday is in 1 day"},
		{"Asia/Tokyo", "Hello, Bo! Happy birthday!"},
		{"America/Los_Angeles", "Hello, Bo! Your birthday is in 1 day"},
	}
	for _, tt := range tests {
		got := Greeting("Bo", Today(now, mustLoad(t, tt.zone)), born)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("zone %s: mismatch (-want +got):\n%s", tt.zone, diff)
		}
	}
}

func TestDaysUntilEveryDayOfTheYear(t *testing.T) {
	// Walking a whole leap year day by day from a birthday, the count goes
	// down by one each day and is never negative or above 365.
	born := date("1990-07-04")
	today := date("2023-07-05")
	prev := DaysUntil(today, born)
	for i := 1; i < 366*2; i++ {
		today = today.AddDays(1)
		n := DaysUntil(today, born)
		if n < 0 || n > 365 {
			t.Fatalf("DaysUntil(%s) = %d, want 0..365", today, n)
		}
		if prev != 0 && n != prev-1 {
			t.Fatalf("DaysUntil(%s) = %d after %d the day before", today, n, prev)
		}
		if prev == 0 && today.AddDays(-1) != Anniversary(born, today.AddDays(-1).Year) {
			t.Fatalf("0 days reported on %s, which is not the birthday", today.AddDays(-1))
		}
		prev = n
	}
}

func TestValidateUsername(t *testing.T) {
	long := make([]byte, MaxUsernameLen+1)
	for i := range long {
		long[i] = 'a'
	}
	tests := []struct {
		name string
		want string // error message, "" for valid
	}{
		{"Ann", ""},
		{"a", ""},
		{"McDonald", ""},
		{string(long[:MaxUsernameLen]), ""},
		{string(long), "username must be at most 256 letters long"},
		{"", "username is required"},
		{"ann1", "username must contain only letters (A-Z, a-z)"},
		{"ann-marie", "username must contain only letters (A-Z, a-z)"},
		{"Jörg", "username must contain only letters (A-Z, a-z)"},
		{"an n", "username must contain only letters (A-Z, a-z)"},
	}
	for _, tt := range tests {
		got := ""
		if err := ValidateUsername(tt.name); err != nil {
			got = err.Error()
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ValidateUsername(%q) mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestDecodeRequest(t *testing.T) {
	today := date("2024-03-01")
	tests := []struct {
		body    string
		want    string // parsed date
		wantErr string
	}{
		{`{"dateOfBirth":"2000-02-29"}`, "2000-02-29", ""},
		{`{"dateOfBirth":"2024-02-29"}`, "2024-02-29", ""},
		{` { "name": "x", "dateOfBirth" : "0001-01-01", "extra": [1, {"a": null}] } `, "0001-01-01", ""},
		{`{"dateOfBirth":"2024-03-01"}`, "", "dateOfBirth must be a date before today (2024-03-01)"},
		{`{"dateOfBirth":"2030-01-01"}`, "", "dateOfBirth must be a date before today (2024-03-01)"},
		{`{"dateOfBirth":"2023-02-29"}`, "", "dateOfBirth must be a real calendar date, 2023-02-29 does not exist"},
		{`{"dateOfBirth":"2000-13-01"}`, "", "dateOfBirth must be a real calendar date, 2000-13-01 does not exist"},
		{`{"dateOfBirth":"2000-04-31"}`, "", "dateOfBirth must be a real calendar date, 2000-04-31 does not exist"},
		{`{"dateOfBirth":"0000-01-01"}`, "", "dateOfBirth must be a real calendar date, 0000-01-01 does not exist"},
		{`{"dateOfBirth":"2000-1-01"}`, "", "dateOfBirth must be a date in the form YYYY-MM-DD"},
		{`{"dateOfBirth":"2000-01-01T00:00:00Z"}`, "", "dateOfBirth must be a date in the form YYYY-MM-DD"},
		{`{"dateOfBirth":"+200-01-01"}`, "", "dateOfBirth must be a date in the form YYYY-MM-DD"},
		{`{"dateOfBirth":""}`, "", "dateOfBirth must be a date in the form YYYY-MM-DD"},
		{`{"dateOfBirth":20000101}`, "", "dateOfBirth must be a string in the form YYYY-MM-DD"},
		{`{"dateOfBirth":null}`, "", "dateOfBirth is required"},
		{`{"dateofbirth":"2000-01-01"}`, "", "dateOfBirth is required"},
		{`{}`, "", "dateOfBirth is required"},
		{`null`, "", `body must be a JSON object such as {"dateOfBirth":"2000-01-31"}`},
		{`["2000-01-01"]`, "", `body must be a JSON object such as {"dateOfBirth":"2000-01-31"}`},
		{``, "", `body must be a JSON object such as {"dateOfBirth":"2000-01-31"}`},
		{`{"dateOfBirth":"2000-01-01"} {}`, "", `body must be a JSON object such as {"dateOfBirth":"2000-01-31"}`},
		{`{"dateOfBirth":"2000-01-01"`, "", `body must be a JSON object such as {"dateOfBirth":"2000-01-31"}`},
	}
	for _, tt := range tests {
		d, err := DecodeRequest([]byte(tt.body), today)
		got, gotErr := "", ""
		if err != nil {
			gotErr = err.Error()
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("DecodeRequest(%s) error %v is not a *FieldError", tt.body, err)
			}
		} else {
			got = d.String()
		}
		if diff := cmp.Diff(tt.wantErr, gotErr); diff != "" {
			t.Errorf("DecodeRequest(%s) error mismatch (-want +got):\n%s", tt.body, diff)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("DecodeRequest(%s) date mismatch (-want +got):\n%s", tt.body, diff)
		}
	}
}
