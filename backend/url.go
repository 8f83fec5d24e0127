package backend

import (
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hishel-go/hishel/model"
)

// Query reads a store URL's query parameters into a backend's options,
// one typed parameter at a time, and [Query.Done] rejects the parameters
// nobody read, naming the ones the backend knows. The first error sticks:
// later reads do nothing, and Done returns it.
//
//	q := backend.NewQuery(u)
//	q.Settings(&s)              // ttl, refresh, sweep, retention, ...
//	q.Bool("nosync", &o.NoSync)
//	if err := q.Done(); err != nil { ... }
type Query struct {
	u     *url.URL
	vals  url.Values
	known []string
	err   error
}

// NewQuery returns the Query of u's parameters.
func NewQuery(u *url.URL) *Query { return &Query{u: u, vals: u.Query()} }

// take returns the single value of parameter name, and whether it is set.
func (q *Query) take(name string) (string, bool) {
	q.known = append(q.known, name)
	vs, ok := q.vals[name]
	if !ok || q.err != nil {
		return "", false
	}
	delete(q.vals, name)
	if len(vs) != 1 {
		q.fail(name, strings.Join(vs, ","), "given more than once")
		return "", false
	}
	return vs[0], true
}

func (q *Query) fail(name, value, why string) {
	if q.err == nil {
		q.err = fmt.Errorf("hishel: store URL %s: parameter %s=%q: %s: %w", Redacted(q.u), name, value, why, model.ErrInvalid)
	}
}

// String reads parameter name into *dst if it is set.
func (q *Query) String(name string, dst *string) {
	if v, ok := q.take(name); ok {
		*dst = v
	}
}

// Bool reads parameter name, a boolean as strconv.ParseBool reads it (an
// empty value is true: "?nosync" means nosync=true), into *dst.
func (q *Query) Bool(name string, dst *bool) {
	v, ok := q.take(name)
	if !ok {
		return
	}
	if v == "" {
		*dst = true
		return
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		q.fail(name, v, "want true or false")
		return
	}
	*dst = b
}

// Int reads parameter name into *dst, as Int64 does.
func (q *Query) Int(name string, dst *int) {
	n := int64(*dst)
	q.Int64(name, &n)
	if n != int64(int(n)) {
		q.fail(name, strconv.FormatInt(n, 10), "out of range")
		return
	}
	*dst = int(n)
}

// Int64 reads parameter name into *dst: a decimal integer, optionally with
// a binary unit suffix (KiB, MiB, GiB; "64MiB").
func (q *Query) Int64(name string, dst *int64) {
	v, ok := q.take(name)
	if !ok {
		return
	}
	num, mult := v, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if s, ok := strings.CutSuffix(v, u.suffix); ok {
			num, mult = s, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > (1<<62)/mult || n < -(1<<62)/mult {
		q.fail(name, v, "want an integer, optionally with KiB, MiB or GiB")
		return
	}
	*dst = n * mult
}

// Duration reads parameter name, as time.ParseDuration reads it ("90s",
// "1h"), into *dst. "none" means model.NoExpiry.
func (q *Query) Duration(name string, dst *time.Duration) {
	v, ok := q.take(name)
	if !ok {
		return
	}
	if v == "none" {
		*dst = model.NoExpiry
		return
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		q.fail(name, v, "want a duration such as 90s or 1h")
		return
	}
	*dst = d
}

// Settings reads the parameters every backend shares into s:
//
//	ttl=DURATION          DefaultTTL ("none": model.NoExpiry)
//	refresh=BOOL          RefreshTTLOnAccess (false: model.NoRefresh)
//	sweep=DURATION        SweepInterval (negative: no background sweep)
//	retention=DURATION    DeletedRetention
//	incomplete-age=DURATION IncompleteAge
//	max-bytes=N           MaxBytes (KiB, MiB, GiB suffixes allowed)
//	max-pairs=N           MaxPairs
//	max-variants=N        MaxVariants (negative: no cap)
//	chunk-size=N          ChunkSize
func (q *Query) Settings(s *Settings) {
	q.Duration("ttl", &s.DefaultTTL)
	if _, set := q.vals["refresh"]; set {
		refresh := true
		q.Bool("refresh", &refresh)
		s.RefreshTTLOnAccess = model.NoRefresh
		if refresh {
			s.RefreshTTLOnAccess = model.RefreshOnAccess
		}
	} else {
		q.known = append(q.known, "refresh")
	}
	q.Duration("sweep", &s.SweepInterval)
	q.Duration("retention", &s.DeletedRetention)
	q.Duration("incomplete-age", &s.IncompleteAge)
	q.Int64("max-bytes", &s.MaxBytes)
	q.Int("max-pairs", &s.MaxPairs)
	q.Int("max-variants", &s.MaxVariants)
	q.Int("chunk-size", &s.ChunkSize)
}

// Done returns the first error met, or an error naming the parameters
// that no read took, with those the backend knows.
func (q *Query) Done() error {
	if q.err != nil {
		return q.err
	}
	if len(q.vals) == 0 {
		return nil
	}
	var unknown []string
	for k := range q.vals {
		unknown = append(unknown, k)
	}
	slices.Sort(unknown)
	known := slices.Clone(q.known)
	slices.Sort(known)
	return fmt.Errorf("hishel: store URL %s: unknown parameter %s; %s URLs take %s: %w",
		Redacted(q.u), strings.Join(unknown, ", "), q.u.Scheme, strings.Join(slices.Compact(known), ", "), model.ErrInvalid)
}

// Rest returns the first error met, or else the parameters that no read
// took, without rejecting them as Done does: for a backend that hands the
// rest of its URL's parameters on to its driver (PostgreSQL's sslmode or
// application_name), which then judges them.
func (q *Query) Rest() (url.Values, error) {
	if q.err != nil {
		return nil, q.err
	}
	rest := make(url.Values, len(q.vals))
	for k, vs := range q.vals {
		rest[k] = vs
	}
	return rest, nil
}

// FilePath returns the file system path a store URL names, for backends
// that keep a file or a directory: scheme:///abs/path, scheme:rel/path
// (relative to the working directory), or "" for scheme:// and scheme:
// (the backend's default place). A URL with a host is an error: a path
// starts after the third slash.
func FilePath(u *url.URL) (string, error) {
	if u.Host != "" {
		return "", fmt.Errorf("hishel: store URL %s: %s URLs name a local path, not a host; write %s:///absolute/path or %s:relative/path: %w",
			Redacted(u), u.Scheme, u.Scheme, u.Scheme, model.ErrInvalid)
	}
	p := u.Opaque
	if p == "" {
		p = u.Path
	}
	if p == "" {
		return "", nil
	}
	// A Windows path written as scheme:///C:/dir comes as /C:/dir.
	if len(p) >= 3 && p[0] == '/' && p[2] == ':' && filepath.Separator == '\\' {
		p = p[1:]
	}
	return filepath.FromSlash(p), nil
}

// Redacted returns u as text with any password replaced by "xxxxx", for
// error messages.
func Redacted(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.Redacted()
}
