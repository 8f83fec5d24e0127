package backend

import (
	"errors"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hishel-go/hishel/model"
)

func TestQuerySettings(t *testing.T) {
	tests := []struct {
		query   string
		want    Settings
		wantErr bool
	}{
		{"", Settings{}, false},
		{"ttl=1h&refresh=false&sweep=-1s&retention=48h&incomplete-age=5m&max-bytes=64MiB&max-pairs=128&chunk-size=16KiB",
			Settings{DefaultTTL: time.Hour, RefreshTTLOnAccess: model.NoRefresh, SweepInterval: -time.Second,
				DeletedRetention: 48 * time.Hour, IncompleteAge: 5 * time.Minute, MaxBytes: 64 << 20, MaxPairs: 128, ChunkSize: 16 << 10}, false},
		{"ttl=none&refresh", Settings{DefaultTTL: model.NoExpiry, RefreshTTLOnAccess: model.RefreshOnAccess}, false},
		{"max-bytes=1GiB", Settings{MaxBytes: 1 << 30}, false},
		{"max-bytes=9999999999GiB", Settings{}, true},
		{"max-pairs=1.5", Settings{}, true},
		{"ttl=1h&ttl=2h", Settings{}, true},
		{"ttl=1h&what=1", Settings{DefaultTTL: time.Hour}, true},
	}
	for _, tt := range tests {
		u := &url.URL{Scheme: "x", RawQuery: tt.query}
		q := NewQuery(u)
		var got Settings
		q.Settings(&got)
		err := q.Done()
		if (err != nil) != tt.wantErr || err != nil && !errors.Is(err, model.ErrInvalid) {
			t.Errorf("Settings(%q) error = %v; want error %v wrapping ErrInvalid", tt.query, err, tt.wantErr)
		}
		if !tt.wantErr {
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b func() time.Time) bool { return a == nil && b == nil })); diff != "" {
				t.Errorf("Settings(%q) mismatch (-want +got):\n%s", tt.query, diff)
			}
		}
	}
}

func TestQueryRest(t *testing.T) {
	u := &url.URL{Scheme: "x", RawQuery: "ttl=1h&sslmode=disable&application_name=a&application_name=b"}
	q := NewQuery(u)
	var s Settings
	q.Settings(&s)
	rest, err := q.Rest()
	want := url.Values{"sslmode": {"disable"}, "application_name": {"a", "b"}}
	if err != nil || s.DefaultTTL != time.Hour || !cmp.Equal(rest, want) {
		t.Errorf("Rest() = %v, %v, ttl %v; want %v, nil, 1h", rest, err, s.DefaultTTL, want)
	}
	q = NewQuery(&url.URL{Scheme: "x", RawQuery: "ttl=soon&sslmode=disable"})
	q.Settings(&s)
	if _, err := q.Rest(); !errors.Is(err, model.ErrInvalid) {
		t.Errorf("Rest() after a bad value = %v; want ErrInvalid", err)
	}
}

func TestFilePath(t *testing.T) {
	tests := []struct {
		url, want string
		wantErr   bool
	}{
		{"bolt:///var/cache/c.db", filepath.FromSlash("/var/cache/c.db"), false},
		{"bolt:rel/c.db", filepath.FromSlash("rel/c.db"), false},
		{"bolt://", "", false},
		{"bolt:", "", false},
		{"bolt://host/c.db", "", true},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.url)
		if err != nil {
			t.Fatal(err)
		}
		got, err := FilePath(u)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("FilePath(%q) = %q, %v; want %q, error %v", tt.url, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestNewPolicy(t *testing.T) {
	tests := []struct {
		name    string
		s       Settings
		wantErr bool
	}{
		{"defaults", Settings{}, false},
		{"no expiry", Settings{DefaultTTL: model.NoExpiry}, false},
		{"negative ttl", Settings{DefaultTTL: -time.Second}, true},
		{"negative max bytes", Settings{MaxBytes: -1}, true},
		{"negative max pairs", Settings{MaxPairs: -1}, true},
		{"chunk too large", Settings{ChunkSize: MaxChunkSize + 1}, true},
	}
	for _, tt := range tests {
		p, err := NewPolicy(tt.s)
		if (err != nil) != tt.wantErr || err != nil && !errors.Is(err, model.ErrInvalid) {
			t.Errorf("NewPolicy(%s) error = %v; want error %v wrapping ErrInvalid", tt.name, err, tt.wantErr)
		}
		if err == nil && (p.ChunkSize != DefaultChunkSize || p.Retention != DefaultDeletedRetention || p.DefaultTTL < 0 || p.Now == nil) {
			t.Errorf("NewPolicy(%s) = %+v; want the defaults applied", tt.name, p)
		}
	}
	p, _ := NewPolicy(Settings{DefaultTTL: time.Hour})
	for _, tt := range []struct {
		in      model.RequestOptions
		ttl     time.Duration
		refresh bool
		wantErr bool
	}{
		{model.RequestOptions{}, time.Hour, true, false},
		{model.RequestOptions{TTL: time.Minute, Refresh: model.NoRefresh}, time.Minute, false, false},
		{model.RequestOptions{TTL: model.NoExpiry}, 0, true, false},
		{model.RequestOptions{TTL: -2 * time.Second}, 0, false, true},
	} {
		ttl, refresh, err := p.TTLFor(tt.in)
		if ttl != tt.ttl || refresh != tt.refresh || (err != nil) != tt.wantErr {
			t.Errorf("TTLFor(%+v) = %v, %v, %v; want %v, %v, error %v", tt.in, ttl, refresh, err, tt.ttl, tt.refresh, tt.wantErr)
		}
	}
}

func TestChecksum(t *testing.T) {
	// The CRC-32C check value of RFC 3720 (iSCSI), B.4.
	if got := Checksum([]byte("123456789")); got != 0xe3069283 {
		t.Errorf("Checksum(123456789) = %#x; want 0xe3069283", got)
	}
	if got := UpdateChecksum(Checksum([]byte("1234")), []byte("56789")); got != 0xe3069283 {
		t.Errorf("UpdateChecksum in two parts = %#x; want 0xe3069283", got)
	}
}
