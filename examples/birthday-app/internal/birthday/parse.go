package birthday

import (
	"encoding/json"
	"time"
)

// MaxUsernameLen is the longest username accepted, in letters.
const MaxUsernameLen = 256

// FieldError says which part of a request is invalid and why. Its message
// names the field first: "dateOfBirth must be a date before today".
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + " " + e.Problem }

// ValidateUsername checks that name is 1 to MaxUsernameLen ASCII letters.
func ValidateUsername(name string) error {
	if name == "" {
		return &FieldError{Field: "username", Problem: "is required"}
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			return &FieldError{Field: "username", Problem: "must contain only letters (A-Z, a-z)"}
		}
	}
	if len(name) > MaxUsernameLen {
		return &FieldError{Field: "username", Problem: "must be at most 256 letters long"}
	}
	return nil
}

// ParseDate parses s, which must be exactly YYYY-MM-DD and name a real
// calendar date (years 0001 to 9999).
func ParseDate(s string) (Date, error) {
	if len(s) != 10 || s[4] != '-' || s[7] != '-' {
		return Date{}, &FieldError{Field: "dateOfBirth", Problem: "must be a date in the form YYYY-MM-DD"}
	}
	year, ok1 := digits(s[0:4])
	month, ok2 := digits(s[5:7])
	day, ok3 := digits(s[8:10])
	if !ok1 || !ok2 || !ok3 {
		return Date{}, &FieldError{Field: "dateOfBirth", Problem: "must be a date in the form YYYY-MM-DD"}
	}
	if year < 1 || month < 1 || month > 12 || day < 1 || day > daysIn(time.Month(month), year) {
		return Date{}, &FieldError{Field: "dateOfBirth", Problem: "must be a real calendar date, " + s + " does not exist"}
	}
	return Date{Year: year, Month: time.Month(month), Day: day}, nil
}

func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// ParseDateOfBirth parses s as ParseDate does and also requires the date to
// be strictly before today.
func ParseDateOfBirth(s string, today Date) (Date, error) {
	d, err := ParseDate(s)
	if err != nil {
		return Date{}, err
	}
	if !d.Before(today) {
		return Date{}, &FieldError{Field: "dateOfBirth", Problem: "must be a date before today (" + today.String() + ")"}
	}
	return d, nil
}

// DecodeRequest reads the body of a PUT /hello/<username> request: a JSON
// object with a "dateOfBirth" string. Other fields are ignored. The caller
// limits the size of body.
func DecodeRequest(body []byte, today Date) (Date, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return Date{}, &FieldError{Field: "body", Problem: `must be a JSON object such as {"dateOfBirth":"2000-01-31"}`}
	}
	raw, ok := fields["dateOfBirth"]
	if !ok || string(raw) == "null" {
		return Date{}, &FieldError{Field: "dateOfBirth", Problem: "is required"}
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return Date{}, &FieldError{Field: "dateOfBirth", Problem: "must be a string in the form YYYY-MM-DD"}
	}
	return ParseDateOfBirth(s, today)
}
