package backend

import (
	"errors"
	"testing"
	"time"

	"github.com/hishel-go/hishel/bolt"
	"github.com/hishel-go/hishel/model"
)

func TestChecks(t *testing.T) {
	consumed := model.StringBody("x")
	_, _ = consumed.Read(make([]byte, 1))
	id := model.NewPairID()
	ok := model.CompletePair{ID: id, Request: model.Request{Method: "GET"}, Response: model.Response{Status: 200}}
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"request ok", CheckRequest(model.Request{Method: "GET"}), nil},
		{"request without method", CheckRequest(model.Request{}), model.ErrInvalid},
		{"request body consumed", CheckRequest(model.Request{Method: "GET", Body: consumed}), model.ErrBodyConsumed},
		{"response ok", CheckResponse(model.Response{Status: 999}), nil},
		{"response status 99", CheckResponse(model.Response{Status: 99}), model.ErrInvalid},
		{"response status 1000", CheckResponse(model.Response{Status: 1000}), model.ErrInvalid},
		{"update ok", CheckUpdate(id, ok), nil},
		{"update other id", CheckUpdate(model.NewPairID(), ok), model.ErrIDChanged},
		{"update negative ttl", CheckUpdate(id, model.CompletePair{ID: id, Request: ok.Request, Response: ok.Response,
			Meta: model.PairMeta{TTL: -time.Second}}), model.ErrInvalid},
	}
	for _, tt := range tests {
		if tt.want == nil && tt.err != nil || tt.want != nil && !errors.Is(tt.err, tt.want) {
			t.Errorf("%s: error = %v; want %v", tt.name, tt.err, tt.want)
		}
	}
}

func TestSettleAndExpiry(t *testing.T) {
	rec := &bolt.Record{TTL: int64(time.Hour), Refresh: true, Flags: bolt.FlagRequestDone | bolt.FlagHasResponse}
	if Settle(rec, 100) {
		t.Fatalf("Settle of a pair whose response body is not stored = true; want false")
	}
	rec.Flags |= bolt.FlagResponseDone
	if !Settle(rec, 100) || rec.Completed != 100 || rec.LastAccess != 100 || rec.Expires != 100+int64(time.Hour) {
		t.Fatalf("Settle = %+v; want completed at 100, expiring an hour later", rec)
	}
	if Settle(rec, 200) || rec.Completed != 100 {
		t.Errorf("Settle of a complete pair changed it: %+v", rec)
	}
	if got := Expiry(rec, 50); got != rec.Expires {
		t.Errorf("Expiry(access before the last) = %d; want %d", got, rec.Expires)
	}
	if got, want := Expiry(rec, 1000), 1000+int64(time.Hour); got != want {
		t.Errorf("Expiry(later access) = %d; want %d", got, want)
	}
	rec.Refresh = false
	if got := Expiry(rec, 1000); got != rec.Expires {
		t.Errorf("Expiry without refresh = %d; want %d", got, rec.Expires)
	}
}
