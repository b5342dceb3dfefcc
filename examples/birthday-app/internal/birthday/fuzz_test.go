package birthday

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func FuzzValidateUsername(f *testing.F) {
	for _, s := range []string{"Ann", "", "a1", "Jörg", strings.Repeat("z", 256), strings.Repeat("z", 257), "a b", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateUsername(name)
		letters := name != "" && len(name) <= MaxUsernameLen && strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") == ""
		if (err == nil) != letters {
			t.Fatalf("ValidateUsername(%q) = %v, but letters-only 1..256 is %v", name, err, letters)
		}
		var fe *FieldError
		if err != nil && (!errors.As(err, &fe) || fe.Field != "username") {
			t.Fatalf("ValidateUsername(%q) error %v does not name the username field", name, err)
		}
	})
}

func FuzzParseDate(f *testing.F) {
	for _, s := range []string{"2000-02-29", "1900-02-29", "2024-12-31", "0001-01-01", "9999-12-31", "0000-01-01", "2000-1-1", "", "２０００-01-01", "2000-01-01x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDate(s)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "dateOfBirth" {
				t.Fatalf("ParseDate(%q) error %v does not name the dateOfBirth field", s, err)
			}
			return
		}
		// A parsed date formats back to exactly the input and survives a
		// round trip through the calendar arithmetic of package time.
		if d.String() != s {
			t.Fatalf("ParseDate(%q) = %s, which formats differently", s, d)
		}
		if d.AddDays(1).AddDays(-1) != d {
			t.Fatalf("ParseDate(%q) = %+v is not a normalized calendar date", s, d)
		}
		if n := DaysUntil(d, d); n != 0 {
			t.Fatalf("DaysUntil(%s, %s) = %d, want 0", d, d, n)
		}
	})
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"dateOfBirth":"2000-02-29"}`, `{"dateOfBirth":null}`, `{}`, `null`, `[]`, `{"dateOfBirth":1}`,
		`{"dateOfBirth":"2999-01-01"}`, `{"a":{"b":[1,2,3]},"dateOfBirth":"1999-12-31"}`, `{"dateOfBirth":"1999-12-31"`, "",
	} {
		f.Add([]byte(s))
	}
	today := Date{Year: 2024, Month: 3, Day: 1}
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := DecodeRequest(body, today)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("DecodeRequest(%q) error %v is not a *FieldError", body, err)
			}
			return
		}
		if !d.Before(today) {
			t.Fatalf("DecodeRequest(%q) accepted %s, which is not before %s", body, d, today)
		}
		var m map[string]any
		if json.Unmarshal(body, &m) != nil || m["dateOfBirth"] != d.String() {
			t.Fatalf("DecodeRequest(%q) = %s, but the body's dateOfBirth is %v", body, d, m["dateOfBirth"])
		}
	})
}
