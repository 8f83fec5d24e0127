package template

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/model"
)

// crashEnv, set in a child test process, makes it store pairs until it is
// killed: HISHEL_REDIS_CRASH=addr prefix.
const crashEnv = "HISHEL_REDIS_CRASH"

// crashChild stores pairs with large bodies, slowly, printing "storing"
// once a body is being stored, until it is killed.
func crashChild() {
	f := strings.Fields(os.Getenv(crashEnv))
	s, err := OpenRedis(context.Background(), &RedisOptions{Addr: f[0], Prefix: f[1], ChunkSize: 4096, SweepInterval: -1})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	for i := 0; ; i++ {
		req := getReq("u")
		req.Options.TTL = time.Duration(i%2) * time.Hour // some expire, some never do
		inc, err := s.CreatePair(ctx, req)
		if err != nil {
			panic(err)
		}
		resp := okResp(nil)
		resp.Body = model.NewBody(io.LimitReader(slowZeros{}, 8<<20))
		cp, err := s.AddResponse(ctx, inc.ID, resp, "k")
		if err != nil {
			panic(err)
		}
		if i == 3 {
			os.Stdout.WriteString("storing\n")
		}
		if _, err := io.Copy(io.Discard, cp.Response.Body); err != nil {
			panic(err)
		}
	}
}

type slowZeros struct{}

func (slowZeros) Read(p []byte) (int, error) {
	time.Sleep(100 * time.Microsecond)
	n := min(len(p), 32<<10)
	clear(p[:n])
	return n, nil
}

// A process killed while it stores pairs leaves no key without a TTL but
// the indexes and the keys of complete pairs that never expire; nothing
// it left is served, and the sweep reclaims it once it is old enough.
func TestCrashLeavesTTLs(t *testing.T) {
	srv := testserver.Redis(t)
	c := client(t, srv)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+srv.Addr+" "+srv.Prefix)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "storing\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child said %q; want storing", line)
	}
	time.Sleep(50 * time.Millisecond) // in the middle of a body
	cmd.Process.Kill()
	cmd.Wait()

	s := open(t, srv, RedisOptions{})
	ctx := context.Background()
	forever := map[string]bool{} // IDs of complete pairs without expiry
	for p, err := range s.Pairs(ctx, model.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		if p.State == model.StateComplete && p.Meta.TTL == 0 {
			forever[idHex(p.ID)] = true
		}
	}
	for k, ttl := range ownKeys(t, c, srv.Prefix) {
		if !persistent(ttl) || indexKey(k) || strings.HasPrefix(k, "k:") {
			continue
		}
		if len(k) < 34 || !forever[k[2:34]] {
			t.Errorf("key %s has no TTL after the crash", k)
		}
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Incomplete != 1 {
		t.Errorf("Stats() = %+v; want the one pair the crash cut short, incomplete", st)
	}
	ps, err := s.GetPairs(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if _, err := model.ReadAll(p.Response.Body); err != nil {
			t.Errorf("a complete pair stored before the crash fails to read: %v", err)
		}
		p.Request.Body.Close()
	}
	if len(ps) != st.Pairs {
		t.Errorf("GetPairs() = %d pairs; want the %d complete ones", len(ps), st.Pairs)
	}
	later := open(t, srv, RedisOptions{Now: func() time.Time { return time.Now().Add(2 * time.Hour) }})
	res, err := later.Cleanup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Abandoned != 1 {
		t.Errorf("Cleanup() two hours later = %+v; want the cut pair abandoned", res)
	}
}
