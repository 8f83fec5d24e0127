package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/hishel-go/hishel/cache"
)

// storeFlags are the flags that choose a store: -store URL, any backend
// registered with cache.Open, or -db PATH, the shorthand for a bbolt file
// (bolt:///PATH).
type storeFlags struct {
	db, store *string
}

func addStoreFlags(fs *flag.FlagSet, dbUsage string) storeFlags {
	return storeFlags{
		db:    fs.String("db", "", dbUsage),
		store: fs.String("store", "", "the store `URL`: "+schemeList()+" (see README's backend table)"),
	}
}

// schemeList names the registered schemes, as a user writes them.
func schemeList() string {
	s := cache.Schemes()
	for i := range s {
		s[i] += "://…"
	}
	return strings.Join(s, ", ")
}

// storeURL returns the URL the flags name, with the parameters params
// gives for its scheme set where the URL does not set them already, and
// the name to show for it in messages; a nil URL when neither flag is
// given. name is the command, for errors.
func (f storeFlags) storeURL(name string, params func(scheme string) url.Values) (u *url.URL, shown string, err error) {
	switch {
	case *f.db != "" && *f.store != "":
		return nil, "", &usageError{cmd: name, msg: "-db and -store both name a store; give one"}
	case *f.db != "":
		abs, err := filepath.Abs(*f.db)
		if err != nil {
			return nil, "", fmt.Errorf("%s %s: %w", programName, name, err)
		}
		p := filepath.ToSlash(abs)
		if !strings.HasPrefix(p, "/") {
			p = "/" + p // a Windows drive: bolt:///C:/dir/c.db
		}
		u, shown = &url.URL{Scheme: "bolt", Path: p}, *f.db
	case *f.store != "":
		u, err = url.Parse(*f.store)
		if err != nil || u.Scheme == "" {
			return nil, "", &usageError{cmd: name, msg: fmt.Sprintf("bad -store URL: want scheme://…, one of %s", schemeList())}
		}
		shown = u.Redacted()
	default:
		return nil, "", nil
	}
	q := u.Query()
	for k, vs := range params(u.Scheme) {
		if _, set := q[k]; !set {
			q[k] = vs
		}
	}
	u.RawQuery = q.Encode()
	return u, shown, nil
}

// openStore opens the store that the flags name for command name, with
// params as default URL parameters (see storeURL). A missing store is a
// usage error; a store that is in use by another process, an inUseError.
func (f storeFlags) openStore(ctx context.Context, name string, params func(scheme string) url.Values) (cache.Store, string, error) {
	u, shown, err := f.storeURL(name, params)
	if err != nil {
		return nil, "", err
	}
	if u == nil {
		return nil, "", &usageError{cmd: name, msg: "-store URL or -db PATH is required: the cache to inspect (the proxy's -store or -db)"}
	}
	if *f.db != "" {
		if err := requireDB(name, *f.db); err != nil {
			return nil, "", err
		}
	}
	s, err := cache.Open(ctx, u.String())
	if err != nil {
		return nil, "", dbError(shown, err)
	}
	return s, shown, nil
}

// inspectParams returns the parameters an inspection command opens a store
// of scheme with, unless its URL says otherwise: no background sweep, and
// a short wait for a bbolt file held by another process; then extra.
func inspectParams(extra url.Values) func(scheme string) url.Values {
	return func(scheme string) url.Values {
		v := url.Values{"sweep": {"-1s"}}
		if scheme == "bolt" {
			v.Set("open-timeout", inspectOpenTimeout.String())
		}
		for k, vs := range extra {
			v[k] = vs
		}
		return v
	}
}

// requireDB checks that -db names an existing file.
func requireDB(name, path string) error {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s %s: no cache file at %s; check the -db path", programName, name, path)
	case err != nil:
		return fmt.Errorf("%s %s: %w", programName, name, err)
	case st.IsDir():
		return fmt.Errorf("%s %s: %s is a directory; -db names the cache file itself", programName, name, path)
	}
	return nil
}

// flagText is the flag that named the store, as the user gave it, for
// hints.
func (f storeFlags) flagText() string {
	if *f.db != "" {
		return "-db " + *f.db
	}
	return "-store " + *f.store
}

// fileSize returns the size of the store's file, when the store is one
// file (-db, or a bolt: or sqlite: URL).
func (f storeFlags) fileSize() (int64, bool) {
	path := *f.db
	if path == "" {
		u, err := url.Parse(*f.store)
		if err != nil || (u.Scheme != "bolt" && u.Scheme != "sqlite") || u.Host != "" {
			return 0, false
		}
		if path = u.Opaque; path == "" {
			path = filepath.FromSlash(u.Path)
		}
	}
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return 0, false
	}
	return fi.Size(), true
}
