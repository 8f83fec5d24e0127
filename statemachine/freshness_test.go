package statemachine

import (
	"net/http"
	"testing"
	"time"
)

// RFC 9111 §4.2.3: request_time and response_time of a stored pair, by
// this package's convention (see the package documentation).
func TestPairTimes(t *testing.T) {
	created, completed := t0.Add(-time.Minute), t0.Add(-50*time.Second)
	rfc := func(t time.Time) string { return t.Format(time.RFC3339Nano) }
	tests := []struct {
		name                string
		created, completed  time.Time
		h                   http.Header
		wantReqT, wantRespT time.Time
	}{
		{"Meta", created, completed, nil, created, completed},
		{"Completed zero uses Created", created, time.Time{}, nil, created, created},
		{"Created zero uses Completed", time.Time{}, completed, nil, completed, completed},
		{"later freshening times win", created, completed,
			hdr(HeaderRequestTime, rfc(t0.Add(-2*time.Second)), HeaderResponseTime, rfc(t0.Add(-time.Second))),
			t0.Add(-2 * time.Second), t0.Add(-time.Second)},
		{"earlier header times win too (a slow exchange, a combined pair)", created, completed,
			hdr(HeaderRequestTime, rfc(t0.Add(-2*time.Hour)), HeaderResponseTime, rfc(t0.Add(-time.Hour))),
			t0.Add(-2 * time.Hour), t0.Add(-time.Hour)},
		{"missing request time uses the response time", created, completed,
			hdr(HeaderResponseTime, rfc(t0.Add(-time.Second))), t0.Add(-time.Second), t0.Add(-time.Second)},
		{"request time after response time", created, completed,
			hdr(HeaderRequestTime, rfc(t0), HeaderResponseTime, rfc(t0.Add(-time.Second))), t0.Add(-time.Second), t0.Add(-time.Second)},
		{"malformed header times are ignored", created, completed,
			hdr(HeaderRequestTime, "soon", HeaderResponseTime, "later"), created, completed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reqT, respT := pairTimes(reqRespTimes{tt.created, tt.completed}, tt.h)
			if !reqT.Equal(tt.wantReqT) || !respT.Equal(tt.wantRespT) {
				t.Errorf("pairTimes(%v, %v, %v) = %v, %v; want %v, %v", tt.created, tt.completed, tt.h, reqT, respT, tt.wantReqT, tt.wantRespT)
			}
		})
	}
}

// RFC 9111 §4.2.3: the age calculation, step by step.
func TestCurrentAge(t *testing.T) {
	reqT, respT := t0.Add(-100*time.Second), t0.Add(-90*time.Second)
	tests := []struct {
		name string
		h    http.Header
		date time.Time
		want time.Duration
	}{
		// resident 90s + max(apparent 0, age 0 + delay 10s)
		{"delay only", hdr(), respT, 100 * time.Second},
		// apparent age 30s beats corrected age 10s
		{"apparent age", hdr(), respT.Add(-30 * time.Second), 120 * time.Second},
		// corrected age 5s + 10s beats apparent 0
		{"Age plus delay", hdr("Age", "5"), respT, 105 * time.Second},
		{"invalid Age ignored", hdr("Age", "5s"), respT, 100 * time.Second},
		{"Date after response time", hdr(), respT.Add(time.Hour), 100 * time.Second},
	}
	for _, tt := range tests {
		if got := currentAge(tt.h, reqT, respT, tt.date, t0); got != tt.want {
			t.Errorf("%s: currentAge(%v) = %v; want %v", tt.name, tt.h, got, tt.want)
		}
	}
}

func TestReasonString(t *testing.T) {
	for _, tt := range []struct {
		r    Reason
		want string
	}{
		{why("fresh", "RFC 9111 §4.2"), "fresh (RFC 9111 §4.2)"},
		{why("always revalidate", ""), "always revalidate"},
	} {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("%#v.String() = %q; want %q", tt.r, got, tt.want)
		}
	}
}
