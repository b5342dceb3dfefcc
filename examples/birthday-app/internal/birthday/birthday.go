// Package birthday holds the service's domain rules: which usernames and dates
// of birth are valid, and how many days remain until a birthday.
package birthday

import (
	"fmt"
	"time"
)

// Date is a calendar date without a time of day or a time zone.
type Date struct {
	Year  int
	Month time.Month
	Day   int
}

// DateOf returns the calendar date of t in t's own location.
func DateOf(t time.Time) Date {
	y, m, d := t.Date()
	return Date{Year: y, Month: m, Day: d}
}

// Today returns the date it is at instant now in the time zone loc.
func Today(now time.Time, loc *time.Location) Date {
	return DateOf(now.In(loc))
}

// String formats d as YYYY-MM-DD.
func (d Date) String() string {
	return fmt.Sprintf("%04d-%02d-%02d", d.Year, int(d.Month), d.Day)
}

// Before reports whether d comes before other.
func (d Date) Before(other Date) bool {
	if d.Year != other.Year {
		return d.Year < other.Year
	}
	if d.Month != other.Month {
		return d.Month < other.Month
	}
	return d.Day < other.Day
}

// AddDays returns the date n days after d (before it when n is negative).
func (d Date) AddDays(n int) Date {
	return DateOf(d.midnight().AddDate(0, 0, n))
}

func (d Date) midnight() time.Time {
	return time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, time.UTC)
}

func isLeap(year int) bool {
	return year%4 == 0 && (year%100 != 0 || year%400 == 0)
}

func daysIn(month time.Month, year int) int {
	switch month {
	case time.February:
		if isLeap(year) {
			return 29
		}
		return 28
	case time.April, time.June, time.September, time.November:
		return 30
	default:
		return 31
	}
}

// Anniversary returns the day on which someone born on born celebrates in the
// given year. A birthday on February 29 falls on February 28 in years that
// are not leap years.
func Anniversary(born Date, year int) Date {
	if born.Month == time.February && born.Day == 29 && !isLeap(year) {
		return Date{Year: year, Month: time.February, Day: 28}
	}
	return Date{Year: year, Month: born.Month, Day: born.Day}
}

// DaysUntil returns how many days there are from today until the next
// birthday of someone born on born: 0 when today is the birthday.
func DaysUntil(today, born Date) int {
	next := Anniversary(born, today.Year)
	if next.Before(today) {
		next = Anniversary(born, today.Year+1)
	}
	// Both instants are UTC midnights, so the difference is a whole number of days.
	return int(next.midnight().Sub(today.midnight()) / (24 * time.Hour))
}

// Greeting returns the message the service answers for username.
func Greeting(username string, today, born Date) string {
	switch n := DaysUntil(today, born); n {
	case 0:
		return "Hello, " + username + "! Happy birthday!"
	case 1:
		return "Hello, " + username + "! Your birthday is in 1 day"
	default:
		return fmt.Sprintf("Hello, %s! Your birthday is in %d days", username, n)
	}
}
