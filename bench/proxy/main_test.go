package main

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	out := []byte(`Running 5s test @ http://127.0.0.1:41000/hit/1024
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.10ms    1.20ms  30.00ms   80.00%
    Req/Sec    10.00k     1.00k   12.00k    70.00%
  Latency Distribution
     50%    2.95ms
     75%    3.50ms
     90%    4.00ms
     99%    8.00ms
  100000 requests in 5.00s, 120.00MB read
  Non-2xx or 3xx responses: 3
Requests/sec:  20000.50
Transfer/sec:     24.00MB
`)
	s, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if s.rps != 20000.5 || s.p50 != 2950*time.Microsecond || s.p99 != 8*time.Millisecond || s.errs != "Non-2xx or 3xx responses: 3" {
		t.Errorf("parseWrk = %+v; want 20000.5 req/s, p50 2.95ms, p99 8ms, the non-2xx count", s)
	}
	timedOut := []byte(`  Latency Distribution
     50%    0.00us
  29 requests in 5.13s, 78.14MB read
  Socket errors: connect 0, read 0, write 0, timeout 29
Requests/sec:      5.65
`)
	if s, err := parseWrk(timedOut); err != nil || s.rps != 5.65 || s.p50 != 0 {
		t.Errorf("parseWrk of a run whose requests all timed out = %+v, %v; want 5.65 req/s, no p50", s, err)
	}
	if _, err := parseWrk([]byte("unable to connect")); err == nil {
		t.Error("parseWrk of no numbers: no error")
	}
}

func TestParseWrkDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"123.00us", 123 * time.Microsecond},
		{"4.56ms", 4560 * time.Microsecond},
		{"1.20s", 1200 * time.Millisecond},
		{"2.00m", 2 * time.Minute},
	} {
		if got, err := parseWrkDuration(tc.in); err != nil || got != tc.want {
			t.Errorf("parseWrkDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if _, err := parseWrkDuration("fast"); err == nil {
		t.Error(`parseWrkDuration("fast"): no error`)
	}
}

func TestPickServersExtra(t *testing.T) {
	tests := []struct {
		in      string
		wantErr bool
		args    []string // the command's arguments after "proxy ... -max-bytes 0"; {dir}: the server's directory
		path    string
	}{
		{in: "old=/bin/hishel-old", path: "/bin/hishel-old", args: []string{"-db", "{dir}/cache.db"}},
		{in: "nosync=. -store bolt:x.db?nosync=true", path: "/built/hishel", args: []string{"-store", "bolt:x.db?nosync=true"}},
		{in: "fresh=. -store=bolt://{dir}/c.db?nosync=true -v", path: "/built/hishel", args: []string{"-store=bolt://{dir}/c.db?nosync=true", "-v"}},
		{in: "=x", wantErr: true},
		{in: "label=", wantErr: true},
		{in: "label", wantErr: true},
	}
	for _, tt := range tests {
		ks, err := pickServers("hishel", "/built/hishel", []string{tt.in})
		if tt.wantErr {
			if err == nil {
				t.Errorf("pickServers(-hishel %q) = nil error; want one", tt.in)
			}
			continue
		}
		if err != nil || len(ks) != 2 {
			t.Errorf("pickServers(hishel, -hishel %q) = %d servers, %v; want two", tt.in, len(ks), err)
			continue
		}
		dir := t.TempDir()
		cmd, err := ks[1].start(dir, "127.0.0.1:1", "http://127.0.0.1:2", false)
		if err != nil {
			t.Fatal(err)
		}
		if cmd.Path != tt.path {
			t.Errorf("-hishel %q runs %s; want %s", tt.in, cmd.Path, tt.path)
		}
		var want []string
		for _, a := range tt.args {
			want = append(want, strings.ReplaceAll(a, "{dir}", dir))
		}
		i := slices.Index(cmd.Args, "-max-bytes")
		if got := cmd.Args[i+2:]; !slices.Equal(got, want) {
			t.Errorf("-hishel %q passes %q; want %q", tt.in, got, tt.args)
		}
	}
}

func TestRotateScale(t *testing.T) {
	var ss []*scaleServer
	for _, k := range []string{"a", "b"} {
		for _, n := range []int{1, 2} {
			ss = append(ss, &scaleServer{server: &server{kind: kind{name: k}}, pairs: n})
		}
	}
	for _, tc := range []struct {
		round int
		want  string
	}{{0, "a1 a2 b1 b2"}, {1, "b2 b1 a2 a1"}, {2, "a1 a2 b1 b2"}} {
		var got []string
		for _, g := range rotateScale(ss, 2, tc.round) {
			for _, s := range g {
				got = append(got, s.kind.name+strconv.Itoa(s.pairs))
			}
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("rotateScale(round %d) = %q; want %q", tc.round, strings.Join(got, " "), tc.want)
		}
	}
}

func TestProcTimes(t *testing.T) {
	cpu0, flt0, err := procTimes(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin for some CPU, and touch new memory for some faults.
	buf := make([]byte, 16<<20)
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = 1
	}
	deadline := time.Now().Add(100 * time.Millisecond)
	for time.Now().Before(deadline) {
	}
	cpu1, flt1, err := procTimes(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if cpu1 <= cpu0 || flt1 <= flt0 {
		t.Errorf("procTimes after 100ms of CPU and 16 MiB touched: CPU %v -> %v, faults %d -> %d; want both to grow", cpu0, cpu1, flt0, flt1)
	}
}
