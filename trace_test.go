package hishel_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/statemachine"
)

// traceLog records what a Trace reports.
type traceLog struct {
	mu        sync.Mutex
	lookups   []hishel.LookupInfo
	stores    []hishel.StoreInfo
	responses []hishel.ResponseInfo
}

func (l *traceLog) trace() *hishel.Trace {
	return &hishel.Trace{
		Lookup: func(_ context.Context, i hishel.LookupInfo) {
			l.mu.Lock()
			l.lookups = append(l.lookups, i)
			l.mu.Unlock()
		},
		Stored: func(_ context.Context, i hishel.StoreInfo) {
			l.mu.Lock()
			l.stores = append(l.stores, i)
			l.mu.Unlock()
		},
		Response: func(_ context.Context, i hishel.ResponseInfo) {
			l.mu.Lock()
			l.responses = append(l.responses, i)
			l.mu.Unlock()
		},
	}
}

// last returns the last response reported and the number of stores.
func (l *traceLog) last() (hishel.ResponseInfo, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.responses[len(l.responses)-1], len(l.stores)
}

// The Trace hooks see every lookup, every store and the outcome of every
// response: miss, hit, revalidation, stale, pass and error.
func TestTransportTrace(t *testing.T) {
	var log traceLog
	var fail bool
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if fail {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Cache-Control", "max-age=60, stale-if-error=600")
		io.WriteString(w, "hello")
	})
	f := newFixture(t, statemachine.Options{}, &hishel.Options{Trace: log.trace()})
	steps := []struct {
		name        string
		do          func()
		want        hishel.Outcome
		revalidated bool
		stored      bool
	}{
		{"miss", func() { f.get(t, o.URL+"/a") }, hishel.OutcomeMiss, false, true},
		{"hit", func() { f.get(t, o.URL+"/a") }, hishel.OutcomeHit, false, false},
		{"revalidated", func() { f.clock.Advance(61 * time.Second); f.get(t, o.URL+"/a") }, hishel.OutcomeRevalidated, true, false},
		{"stale", func() { f.clock.Advance(61 * time.Second); fail = true; f.get(t, o.URL+"/a") }, hishel.OutcomeStale, true, false},
		{"pass", func() {
			resp, err := f.cl.Post(o.URL+"/b", "text/plain", strings.NewReader("x"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}, hishel.OutcomePass, false, false},
		{"error", func() {
			if _, err := f.cl.Get("http://127.0.0.1:1/"); err == nil {
				t.Fatal("GET of a closed port succeeded")
			}
		}, hishel.OutcomeError, false, false},
	}
	for _, st := range steps {
		st.do()
		got, _ := log.last()
		if got.Outcome != st.want || got.Revalidation != st.revalidated || got.Stored != st.stored {
			t.Errorf("%s: Response(Outcome %v, Revalidation %v, Stored %v); want %v, %v, %v",
				st.name, got.Outcome, got.Revalidation, got.Stored, st.want, st.revalidated, st.stored)
		}
		if got.Request == nil || got.Duration <= 0 {
			t.Errorf("%s: Response(Request %v, Duration %v); want both set", st.name, got.Request, got.Duration)
		}
		if (got.Outcome == hishel.OutcomeError) != (got.Err != nil) {
			t.Errorf("%s: Response(Outcome %v, Err %v): an error exactly with OutcomeError", st.name, got.Outcome, got.Err)
		}
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.stores) != 1 || log.stores[0].Err != nil || log.stores[0].Bytes != 5 || log.stores[0].Key == "" {
		t.Errorf("Stored = %+v; want one store of 5 bytes, no error", log.stores)
	}
	// GET /a four times, POST /b (invalidation looks its target up), the
	// closed port once.
	var found int
	for _, l := range log.lookups {
		if strings.HasSuffix(l.Key, "/a") && l.Pairs == 1 {
			found++
		}
		if l.Duration <= 0 || l.Err != nil {
			t.Errorf("Lookup = %+v; want a duration and no error", l)
		}
	}
	if found != 3 {
		t.Errorf("lookups of /a finding its pair: %d; want 3 (%+v)", found, log.lookups)
	}
}

// A body the caller closes before its end is reported as not stored.
func TestTransportTraceAbandonedStore(t *testing.T) {
	var log traceLog
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write(make([]byte, 1<<20))
	})
	f := newFixture(t, statemachine.Options{}, &hishel.Options{Trace: log.trace()})
	resp, err := f.cl.Get(o.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The fetch's goroutine stores the body: it sees the caller go, stops
	// and reports, after Close returns.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		log.mu.Lock()
		n := len(log.stores)
		log.mu.Unlock()
		if n > 0 {
			break
		}
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.stores) != 1 || !errors.Is(log.stores[0].Err, model.ErrAborted) {
		t.Errorf("Stored = %+v; want one, with an error wrapping ErrAborted", log.stores)
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[hishel.Outcome]string{hishel.OutcomeHit: "hit", hishel.OutcomeStale: "stale",
		hishel.OutcomeRevalidated: "revalidated", hishel.OutcomeMiss: "miss", hishel.OutcomePass: "pass",
		hishel.OutcomeError: "error", 0: "Outcome(0)"} {
		if got := o.String(); got != want {
			t.Errorf("Outcome(%d).String() = %q; want %q", o, got, want)
		}
	}
}
