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

// TestPairSteps checks the record steps every backend shares: what each
// refuses, and what it returns.
func TestPairSteps(t *testing.T) {
	id := model.NewPairID()
	incomplete := &bolt.Record{ID: id, Nonce: 5, Method: "GET"}
	responded := &bolt.Record{ID: id, Nonce: 5, Method: "GET", Flags: bolt.FlagHasResponse}
	deleted := &bolt.Record{ID: id, Nonce: 5, Flags: bolt.FlagDeleted}
	complete := &bolt.Record{ID: id, Nonce: 5, Method: "GET", Status: 200, Key: "k",
		Flags:     bolt.FlagComplete | bolt.FlagHasResponse | bolt.FlagRequestDone | bolt.FlagResponseDone,
		ReqHeader: map[string][]string{"A": {"1"}}, RespHeader: map[string][]string{"B": {"2"}}}
	resp := model.Response{Status: 204}
	errOf := func(_ any, err error) error { return err }
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"respond", errOf(Respond(id, incomplete, resp, "k")), nil},
		{"respond missing", errOf(Respond(id, nil, resp, "k")), model.ErrNotFound},
		{"respond deleted", errOf(Respond(id, deleted, resp, "k")), model.ErrNotFound},
		{"respond twice", errOf(Respond(id, responded, resp, "k")), model.ErrInvalid},
		{"body stored", errOf(BodyStored(id, 5, incomplete, bolt.KindRequest, 3)), nil},
		{"body stored, pair missing", errOf(BodyStored(id, 5, nil, bolt.KindRequest, 3)), model.ErrNotFound},
		{"body stored, pair deleted", errOf(BodyStored(id, 5, deleted, bolt.KindRequest, 3)), model.ErrNotFound},
		{"body stored, other nonce", errOf(BodyStored(id, 6, incomplete, bolt.KindRequest, 3)), model.ErrNotFound},
		{"current", errOf(Current(id, complete)), nil},
		{"current missing", errOf(Current(id, nil)), model.ErrNotFound},
		{"current incomplete", errOf(Current(id, incomplete)), model.ErrNotFound},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, tt.want) || (tt.want == nil) != (tt.err == nil) {
			t.Errorf("%s: %v; want %v", tt.name, tt.err, tt.want)
		}
	}

	rec, _ := Respond(id, incomplete, model.Response{Status: 204, Header: map[string][]string{"C": {"3"}}}, "k")
	if !rec.Has(bolt.FlagHasResponse|bolt.FlagResponseDone) || rec.Key != "k" || rec.Status != 204 || incomplete.Has(bolt.FlagHasResponse) {
		t.Errorf("Respond = flags %b key %q status %d (old flags %b); want a response, done, under k, old unchanged",
			rec.Flags, rec.Key, rec.Status, incomplete.Flags)
	}
	req, _ := BodyStored(id, 5, incomplete, bolt.KindRequest, 3)
	body, _ := BodyStored(id, 5, incomplete, bolt.KindResponse, 4)
	if !req.Has(bolt.FlagRequestDone) || req.ReqSize != 3 || !body.Has(bolt.FlagResponseDone) || body.RespSize != 4 {
		t.Errorf("BodyStored: request %b/%d, response %b/%d; want each done with its size", req.Flags, req.ReqSize, body.Flags, body.RespSize)
	}
	cur, _ := Current(id, complete)
	cur.Request.Header.Set("A", "changed")
	if cur.Request.Body != nil || cur.Response.Body != nil || complete.ReqHeader.Get("A") != "1" || cur.Key != "k" {
		t.Errorf("Current shares the record's header or has bodies: %+v", cur)
	}
}

func TestNewRecord(t *testing.T) {
	at := time.Unix(100, 0)
	p, err := NewPolicy(Settings{DefaultTTL: time.Minute, Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	id := model.NewPairID()
	rec, err := p.NewRecord(model.Request{Method: "GET", URL: "http://x/"}, []model.CreateOption{model.WithID(id)}, 9)
	if err != nil {
		t.Fatal(err)
	}
	if rec.ID != id || rec.Nonce != 9 || rec.Created != at.UnixNano() || rec.TTL != int64(time.Minute) || !rec.Has(bolt.FlagRequestDone) {
		t.Errorf("NewRecord = %+v; want id, nonce 9, created at 100s, TTL 1m, request done", rec)
	}
	if rec, _ := p.NewRecord(model.Request{Method: "GET"}, nil, 1); rec.ID.IsZero() {
		t.Errorf("NewRecord without WithID: zero ID")
	}
	if _, err := p.NewRecord(model.Request{}, nil, 1); !errors.Is(err, model.ErrInvalid) {
		t.Errorf("NewRecord without method = %v; want ErrInvalid", err)
	}
	if _, err := p.NewRecord(model.Request{Method: "GET", Options: model.RequestOptions{TTL: -2 * time.Hour}}, nil, 1); !errors.Is(err, model.ErrInvalid) {
		t.Errorf("NewRecord with a negative TTL = %v; want ErrInvalid", err)
	}
}
