package gitsource

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// FirstAuthorTime returns the earliest author time among the commits
// reachable from include and not from exclude: when the oldest work of a
// change was written. ok is false when there are no such commits.
func (s *Source) FirstAuthorTime(ctx context.Context, exclude, include string) (t time.Time, ok bool, err error) {
	args := []string{"log", "--format=%at", include}
	if exclude != "" {
		args = append(args, "^"+exclude)
	}
	out, err := s.Git(ctx, append(args, "--")...)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("first commit of %s..%s: %w", short(exclude), short(include), err)
	}
	var first int64
	for _, line := range strings.Fields(out) {
		sec, err := strconv.ParseInt(line, 10, 64)
		if err != nil {
			return time.Time{}, false, fmt.Errorf("first commit of %s..%s: unexpected git output %q", short(exclude), short(include), line)
		}
		if !ok || sec < first {
			first, ok = sec, true
		}
	}
	if !ok {
		return time.Time{}, false, nil
	}
	return time.Unix(first, 0).UTC(), true, nil
}
