package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/statemachine"
)

// inspectOpenTimeout is how long the inspection commands wait for the
// cache file's lock before reporting it in use.
const inspectOpenTimeout = 200 * time.Millisecond

// addInspectFlags adds the flags that name the store to inspect.
func addInspectFlags(fs *flag.FlagSet) storeFlags {
	return addStoreFlags(fs, "the bbolt cache file `PATH` to inspect, as given to 'hishel proxy -db' (shorthand for -store bolt:///PATH)")
}

// dbError maps a storage error opening path to the error hishel reports.
func dbError(path string, err error) error {
	switch {
	case errors.Is(err, model.ErrLocked):
		return &inUseError{path: path, err: err}
	case errors.Is(err, model.ErrCorrupt):
		return fmt.Errorf("%s: %s is not a hishel cache file (or is damaged): %w; move it aside or delete it (hishel proxy does this itself unless -rebuild=false)", programName, path, err)
	case errors.Is(err, model.ErrFormatVersion):
		return fmt.Errorf("%s: %s was written by a newer hishel; use that version: %w", programName, path, err)
	}
	return err
}

// runError is the error command name reports when the store named shown
// failed: a damaged one says so, and what to do.
func runError(name, path string, err error) error {
	if errors.Is(err, model.ErrCorrupt) {
		return fmt.Errorf("%s %s: the cache %s is damaged (%w); move it aside or delete it: a cache is rebuilt as it is used, and 'hishel proxy -rebuild' (the default) does this itself",
			programName, name, path, err)
	}
	return fmt.Errorf("%s %s: %w", programName, name, err)
}

// parseID parses a pair ID argument of command name.
func parseID(name string, pos []string) (model.PairID, error) {
	if len(pos) == 0 {
		return model.PairID{}, &usageError{cmd: name, msg: "missing pair ID; 'hishel ls -db PATH' lists them"}
	}
	id, err := model.ParsePairID(pos[0])
	if err != nil {
		return model.PairID{}, &usageError{cmd: name, msg: fmt.Sprintf("bad pair ID %q: want a UUID such as 0123abcd-4567-4def-89ab-cdef01234567, as printed by 'hishel ls'", pos[0])}
	}
	return id, nil
}

// findPair returns the PairInfo of id, in any state, or ok false.
func findPair(ctx context.Context, s cache.Store, id model.PairID) (info model.PairInfo, ok bool, err error) {
	for pi, err := range s.Pairs(ctx, model.Filter{Func: func(pi model.PairInfo) bool { return pi.ID == id }}) {
		if err != nil {
			return model.PairInfo{}, false, err
		}
		return pi, true, nil
	}
	return model.PairInfo{}, false, nil
}

// filterFlags are the flags of ls and rm that select pairs by a
// model.Filter.
type filterFlags struct {
	url, urlPrefix, key, keyPrefix *string
	expired                        *bool
	olderThan                      *time.Duration
}

func addFilterFlags(fs *flag.FlagSet) filterFlags {
	return filterFlags{
		url:       fs.String("url", "", "only the pairs of request `URL`, every method and variant (scheme and host in any case, default port or not)"),
		urlPrefix: fs.String("url-prefix", "", "only the pairs whose request URL starts with `URL`"),
		key:       fs.String("key", "", "only the complete pairs stored under cache `KEY`"),
		keyPrefix: fs.String("key-prefix", "", "only the pairs whose cache key starts with `PREFIX`"),
		expired:   fs.Bool("expired", false, "only the complete pairs whose TTL has run out"),
		olderThan: fs.Duration("older-than", 0, "only the pairs created more than `D` ago (such as 24h)"),
	}
}

// filter returns the filter the flags set, and whether any is set. A bad
// value is a usage error of command name.
func (f filterFlags) filter(name string) (model.Filter, bool, error) {
	mf := model.Filter{URL: *f.url, URLPrefix: *f.urlPrefix, KeyPrefix: *f.keyPrefix, Expired: *f.expired, OlderThan: *f.olderThan}
	if *f.key != "" {
		mf.Keys = []string{*f.key}
	}
	if *f.olderThan < 0 {
		return mf, false, &usageError{cmd: name, msg: "-older-than must not be negative"}
	}
	for flagName, u := range map[string]string{"-url": *f.url, "-url-prefix": *f.urlPrefix} {
		if pu, err := url.Parse(u); u != "" && (err != nil || pu.Scheme == "" || pu.Host == "") {
			return mf, false, &usageError{cmd: name, msg: fmt.Sprintf("bad %s %q: want an absolute URL such as https://example.com/path", flagName, u)}
		}
	}
	return mf, !mf.IsZero(), nil
}

func cmdLs(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("ls")
	sf := addInspectFlags(fs)
	shared := fs.Bool("shared", false, "judge HTTP freshness as a shared cache does (s-maxage), as 'hishel proxy -shared'")
	ff := addFilterFlags(fs)
	asJSON := fs.Bool("json", false, "print one JSON object per pair and line (sizes in bytes, times in RFC 3339), for scripts")
	if _, err := parseFlags(fs, "ls", args, 0, stdout); err != nil {
		return err
	}
	filter, _, err := ff.filter("ls")
	if err != nil {
		return err
	}
	s, shown, err := sf.openStore(ctx, "ls", inspectParams(nil))
	if err != nil {
		return err
	}
	defer s.Close()
	if *asJSON {
		err = listPairs(ctx, s, filter, func(pi model.PairInfo) error { return writeJSON(stdout, newPairJSON(pi, false)) })
	} else {
		now := time.Now()
		machine := &statemachine.Options{Shared: *shared}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATE\tSTATUS\tMETHOD\tURL\tSIZE\tFRESHNESS\tEXPIRES")
		err = listPairs(ctx, s, filter, func(pi model.PairInfo) error {
			status := "-"
			if pi.Response.Status != 0 {
				status = strconv.Itoa(pi.Response.Status)
			}
			_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", pi.ID, pi.State, status,
				printable(pi.Request.Method), printable(pi.Request.URL), humanSize(pi.Meta.ResponseSize),
				formatFreshness(machine, pi), humanExpiry(pi.Meta.Expires, now))
			return err
		})
		if ferr := tw.Flush(); err == nil {
			err = ferr
		}
	}
	if err != nil {
		return runError("ls", shown, err)
	}
	return s.Close()
}

// formatFreshness says how fresh a pair's response is by HTTP's rules
// (RFC 9111 §4.2), as the cache judges it now: fresh until a time, or
// stale since one; "-" for a pair without a response.
func formatFreshness(o *statemachine.Options, pi model.PairInfo) string {
	if pi.State == model.StateIncomplete || pi.Response.Status == 0 {
		return "-"
	}
	p := model.CompletePair{ID: pi.ID, Request: pi.Request, Response: pi.Response, Key: pi.Key, Meta: pi.Meta}
	f := o.Freshness(&p)
	at := f.FreshUntil.UTC().Truncate(time.Second).Format(time.RFC3339)
	if f.Fresh() {
		return "fresh-until=" + at
	}
	return "stale-since=" + at
}

// listPairs calls fn for each pair f matches, and stops at the first error.
func listPairs(ctx context.Context, s cache.Store, f model.Filter, fn func(model.PairInfo) error) error {
	for pi, err := range s.Pairs(ctx, f) {
		if err == nil {
			err = fn(pi)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func cmdShow(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("show")
	sf := addInspectFlags(fs)
	n := fs.Int64("n", -1, "print only the first `N` bytes of the response body (0: none, negative: all)")
	raw := fs.Bool("raw", false, "write the body as stored even to a terminal (by default a terminal gets a hex dump of a body that is not text)")
	asJSON := fs.Bool("json", false, "print the pair as one JSON object (heads, metadata, the body in base64), for scripts")
	s, info, shown, err := openPair(ctx, "show", fs, sf, args, stdout)
	if err != nil {
		return err
	}
	defer s.Close()
	id := info.ID
	var body *model.Body
	if info.State == model.StateComplete && *n != 0 {
		cp, err := s.GetPair(ctx, id)
		switch {
		case err == nil:
			_ = cp.Request.Body.Close()
			body = cp.Response.Body
			defer body.Close()
		case errors.Is(err, model.ErrNotFound):
			// Expired: heads and metadata only.
		default:
			return runError("show", shown, err)
		}
	}
	var r io.Reader = body
	if body != nil && *n > 0 {
		r = io.LimitReader(body, *n)
	}
	if *asJSON {
		p := newPairJSON(info, true)
		if *n != 0 {
			available := body != nil
			p.BodyAvailable = &available
		}
		if body != nil {
			if p.Body, err = io.ReadAll(r); err != nil {
				return runError("show", shown, fmt.Errorf("reading the body: %w", err))
			}
		}
		if err := writeJSON(stdout, p); err != nil {
			return err
		}
		return s.Close()
	}
	writePairHead(stdout, info, time.Now())
	switch {
	case *n == 0:
	case body == nil:
		fmt.Fprintf(stdout, "\n(no response body available: the pair is %s)\n", bodyless(info))
	default:
		fmt.Fprintln(stdout)
		if err := writeBody(stdout, r, *raw); err != nil {
			return runError("show", shown, fmt.Errorf("reading the body: %w", err))
		}
	}
	return s.Close()
}

// openPair does what show and rm share: it parses the flags (fs has sf)
// and the pair ID, opens the store and finds the pair. The caller closes
// the store.
func openPair(ctx context.Context, name string, fs *flag.FlagSet, sf storeFlags, args []string, stdout io.Writer) (s cache.Store, info model.PairInfo, shown string, err error) {
	pos, err := parseFlags(fs, name, args, 1, stdout)
	if err != nil {
		return nil, info, "", err
	}
	id, err := parseID(name, pos)
	if err != nil {
		return nil, info, "", err
	}
	s, shown, err = sf.openStore(ctx, name, inspectParams(nil))
	if err != nil {
		return nil, info, "", err
	}
	info, ok, err := findPair(ctx, s, id)
	switch {
	case err != nil:
		s.Close()
		return nil, info, "", runError(name, shown, err)
	case !ok:
		s.Close()
		return nil, info, "", fmt.Errorf("%s %s: no pair %s in %s; 'hishel ls %s' lists the pairs", programName, name, id, shown, sf.flagText())
	}
	return s, info, shown, nil
}

func bodyless(info model.PairInfo) string {
	if info.State == model.StateComplete {
		return "expired"
	}
	return info.State.String()
}

// writePairHead prints a pair's metadata and heads, for people: sizes and
// times readable, and nothing a terminal would act on (see printable).
func writePairHead(w io.Writer, pi model.PairInfo, now time.Time) {
	m := pi.Meta
	fmt.Fprintf(w, "id:            %s\n", pi.ID)
	fmt.Fprintf(w, "state:         %s\n", pi.State)
	fmt.Fprintf(w, "key:           %s\n", printable(pi.Key))
	fmt.Fprintf(w, "created:       %s\n", humanTime(m.Created, now))
	fmt.Fprintf(w, "completed:     %s\n", humanTime(m.Completed, now))
	fmt.Fprintf(w, "last access:   %s\n", humanTime(m.LastAccess, now))
	expires := "never"
	if !m.Expires.IsZero() {
		expires = humanTime(m.Expires, now)
	}
	fmt.Fprintf(w, "expires:       %s\n", expires)
	if !m.Deleted.IsZero() {
		fmt.Fprintf(w, "deleted:       %s\n", humanTime(m.Deleted, now))
	}
	ttl := "none"
	if m.TTL > 0 {
		ttl = shortDuration(m.TTL)
	}
	fmt.Fprintf(w, "ttl:           %s (refresh on access: %t)\n", ttl, m.Refresh)
	fmt.Fprintf(w, "request size:  %s\n", humanSizeExact(m.RequestSize))
	fmt.Fprintf(w, "response size: %s\n", humanSizeExact(m.ResponseSize))
	fmt.Fprintf(w, "\n> %s %s\n", printable(pi.Request.Method), printable(pi.Request.URL))
	writeHeader(w, "> ", pi.Request.Header)
	if pi.Response.Status != 0 {
		fmt.Fprintf(w, "\n< %d %s\n", pi.Response.Status, http.StatusText(pi.Response.Status))
		writeHeader(w, "< ", pi.Response.Header)
	}
}

func writeHeader(w io.Writer, prefix string, h http.Header) {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		for _, v := range h[k] {
			fmt.Fprintf(w, "%s%s: %s\n", prefix, printable(k), printable(v))
		}
	}
}

func cmdRm(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("rm")
	sf := addInspectFlags(fs)
	ff := addFilterFlags(fs)
	dryRun := fs.Bool("dry-run", false, "list the pairs the filter flags select, and remove nothing")
	pos, err := parseFlags(fs, "rm", args, 1, stdout)
	if err != nil {
		return err
	}
	filter, filtered, err := ff.filter("rm")
	switch {
	case err != nil:
		return err
	case filtered && len(pos) > 0:
		return &usageError{cmd: "rm", msg: "give a pair ID or filter flags (-url, -expired, ...), not both"}
	case !filtered && *dryRun:
		return &usageError{cmd: "rm", msg: "-dry-run lists what filter flags (-url, -expired, ...) select; give some"}
	case !filtered:
		return rmOne(ctx, fs, sf, args, stdout)
	}
	s, shown, err := sf.openStore(ctx, "rm", inspectParams(nil))
	if err != nil {
		return err
	}
	defer s.Close()
	if *dryRun {
		n := 0
		err := listPairs(ctx, s, filter, func(pi model.PairInfo) error {
			if pi.State == model.StateDeleted {
				return nil
			}
			n++
			_, err := fmt.Fprintf(stdout, "%s\t%s\t%s %s\n", pi.ID, pi.State, printable(pi.Request.Method), printable(pi.Request.URL))
			return err
		})
		if err != nil {
			return runError("rm", shown, err)
		}
		fmt.Fprintf(stdout, "would remove %d %s\n", n, plural(n, "pair", "pairs"))
		return s.Close()
	}
	n, err := s.Delete(ctx, filter)
	if err != nil {
		return runError("rm", shown, fmt.Errorf("removed %d %s, then: %w", n, plural(n, "pair", "pairs"), err))
	}
	fmt.Fprintf(stdout, "removed %d %s (soft delete: gc reclaims their data after the retention period)\n", n, plural(n, "pair", "pairs"))
	return s.Close()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// rmOne removes the pair whose ID args name.
func rmOne(ctx context.Context, fs *flag.FlagSet, sf storeFlags, args []string, stdout io.Writer) error {
	s, info, shown, err := openPair(ctx, "rm", fs, sf, args, stdout)
	if err != nil {
		return err
	}
	defer s.Close()
	id := info.ID
	if info.State == model.StateDeleted {
		fmt.Fprintf(stdout, "%s was already deleted\n", id)
		return s.Close()
	}
	if err := s.Remove(ctx, id); err != nil {
		return runError("rm", shown, err)
	}
	fmt.Fprintf(stdout, "removed %s (soft delete: gc reclaims its data after the retention period)\n", id)
	return s.Close()
}

func cmdGc(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("gc")
	sf := addInspectFlags(fs)
	retention := fs.Duration("retention", 0, "reclaim soft-deleted pairs older than `D` (0: the store's default, 7 days)")
	incomplete := fs.Duration("incomplete-age", 0, "remove incomplete pairs older than `D` (0: the store's default, 1 hour)")
	maxBytes := fs.Int64("max-bytes", 0, "evict least recently used pairs beyond `N` stored bytes: keys, URLs, heads and bodies (0: no budget)")
	if _, err := parseFlags(fs, "gc", args, 0, stdout); err != nil {
		return err
	}
	switch {
	case *retention < 0:
		return &usageError{cmd: "gc", msg: "-retention must not be negative"}
	case *incomplete < 0:
		return &usageError{cmd: "gc", msg: "-incomplete-age must not be negative"}
	case *maxBytes < 0:
		return &usageError{cmd: "gc", msg: "-max-bytes must not be negative"}
	}
	params := url.Values{}
	if *retention > 0 {
		params.Set("retention", retention.String())
	}
	if *incomplete > 0 {
		params.Set("incomplete-age", incomplete.String())
	}
	if *maxBytes > 0 {
		params.Set("max-bytes", strconv.FormatInt(*maxBytes, 10))
	}
	s, shown, err := sf.openStore(ctx, "gc", inspectParams(params))
	if err != nil {
		return err
	}
	defer s.Close()
	start := time.Now()
	r, err := s.Cleanup(ctx)
	if err != nil {
		return runError("gc", shown, err)
	}
	fmt.Fprintf(stdout, "expired: %d\npurged: %d\nabandoned: %d\nevicted: %d\ncorrupt: %d\ntook: %v\n",
		r.Expired, r.Purged, r.Abandoned, r.Evicted, r.Corrupt, time.Since(start).Round(time.Microsecond))
	return s.Close()
}

func cmdStats(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("stats")
	sf := addInspectFlags(fs)
	asJSON := fs.Bool("json", false, "print the counters as one JSON object (sizes in bytes), for scripts")
	if _, err := parseFlags(fs, "stats", args, 0, stdout); err != nil {
		return err
	}
	s, shown, err := sf.openStore(ctx, "stats", inspectParams(nil))
	if err != nil {
		return err
	}
	defer s.Close()
	st, err := s.Stats(ctx)
	if err != nil {
		return runError("stats", shown, err)
	}
	size, hasFile := sf.fileSize()
	if *asJSON {
		out := struct {
			Pairs      int    `json:"pairs"`
			Incomplete int    `json:"incomplete"`
			Deleted    int    `json:"deleted"`
			Bytes      int64  `json:"bytes"`
			FileBytes  *int64 `json:"file_bytes,omitempty"`
		}{Pairs: st.Pairs, Incomplete: st.Incomplete, Deleted: st.Deleted, Bytes: st.Bytes}
		if hasFile {
			out.FileBytes = &size
		}
		if err := writeJSON(stdout, out); err != nil {
			return err
		}
		return s.Close()
	}
	fmt.Fprintf(stdout, "pairs: %d\nincomplete: %d\ndeleted: %d\nstored bytes: %s\n",
		st.Pairs, st.Incomplete, st.Deleted, humanSizeExact(st.Bytes))
	if hasFile {
		fmt.Fprintf(stdout, "file bytes: %s\n", humanSizeExact(size))
	}
	return s.Close()
}
