package template

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/model"
)

// Tests that need other OS processes re-execute this test binary: with
// helperEnv set, TestMain runs that helper instead of the tests.
const (
	helperEnv   = "HISHEL_DYNAMODB_HELPER" // "crash" or "share"
	helperURI   = "HISHEL_DYNAMODB_HELPER_ENDPOINT"
	helperDB    = "HISHEL_DYNAMODB_HELPER_TABLE"
	helperSeed  = "HISHEL_DYNAMODB_HELPER_SEED"
	sharedKeys  = 8
	sharedPairs = 12 // per helper
	sharedBumps = 15 // UpdatePairFunc calls per helper on the shared pair
)

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(testserver.Main(m))
	case "crash":
		os.Exit(helper(crashHelper))
	case "share":
		os.Exit(helper(shareHelper))
	default:
		fmt.Fprintf(os.Stderr, "unknown helper %q\n", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

func helper(run func(ctx context.Context, s *DynamoDB, seed int) error) int {
	seed, _ := strconv.Atoi(os.Getenv(helperSeed))
	ctx := context.Background()
	s, err := OpenDynamoDB(ctx, options(os.Getenv(helperURI), os.Getenv(helperDB)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Close()
	if err := run(ctx, s, seed); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// body returns the n bytes a pair's body holds, from its seed and kind:
// readers check them.
func seededBody(seed, n int, kind byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(seed*31+i*7+i>>9) ^ kind
	}
	return b
}

// storeSeeded stores a pair whose bodies follow from seed and size, with
// the seed and size in its request headers.
func storeSeeded(ctx context.Context, s *DynamoDB, key string, seed, size int) (model.PairID, error) {
	req := model.Request{Method: "PUT", URL: "http://example.com/" + key, Body: model.BytesBody(seededBody(seed, size, 'q')),
		Header: http.Header{"X-Seed": {strconv.Itoa(seed)}, "X-Size": {strconv.Itoa(size)}}}
	inc, err := s.CreatePair(ctx, req)
	if err != nil {
		return model.PairID{}, err
	}
	if _, err := io.Copy(io.Discard, inc.Request.Body); err != nil {
		return model.PairID{}, err
	}
	cp, err := s.AddResponse(ctx, inc.ID, model.Response{Status: 200, Body: model.BytesBody(seededBody(seed, size, 'p'))}, key)
	if err != nil {
		return model.PairID{}, err
	}
	_, err = io.Copy(io.Discard, cp.Response.Body)
	return inc.ID, err
}

// checkSeeded reads both bodies of p back and compares them with what its
// headers say was stored.
func checkSeeded(p model.CompletePair) error {
	seed, _ := strconv.Atoi(p.Request.Header.Get("X-Seed"))
	size, _ := strconv.Atoi(p.Request.Header.Get("X-Size"))
	for _, b := range []struct {
		body *model.Body
		kind byte
	}{{p.Request.Body, 'q'}, {p.Response.Body, 'p'}} {
		got, err := model.ReadAll(b.body)
		if err != nil {
			return fmt.Errorf("pair %v: %w", p.ID, err)
		}
		if !bytes.Equal(got, seededBody(seed, size, b.kind)) {
			return fmt.Errorf("pair %v: body of %d bytes differs from the %d stored", p.ID, len(got), size)
		}
	}
	return nil
}

// shareHelper stores pairs under the shared keys, reads every pair there
// (its own and the other process's), and bumps the shared pair's counter.
func shareHelper(ctx context.Context, s *DynamoDB, seed int) error {
	shared, err := model.ParsePairID(os.Getenv("HISHEL_DYNAMODB_SHARED"))
	if err != nil {
		return err
	}
	for i := range sharedPairs {
		key := fmt.Sprint("k", i%sharedKeys)
		if _, err := storeSeeded(ctx, s, key, seed*1000+i, 1000+i*40_000); err != nil {
			return fmt.Errorf("store %d: %w", i, err)
		}
		ps, err := s.GetPairs(ctx, key)
		if err != nil {
			return err
		}
		for _, p := range ps {
			if err := checkSeeded(p); err != nil {
				return err
			}
		}
		if i < sharedBumps {
			if err := bump(ctx, s, shared); err != nil {
				return err
			}
		}
	}
	for range sharedBumps - sharedPairs {
		if err := bump(ctx, s, shared); err != nil {
			return err
		}
	}
	return nil
}

// bump adds one to the X-Count header of pair id, atomically.
func bump(ctx context.Context, s *DynamoDB, id model.PairID) error {
	_, err := s.UpdatePairFunc(ctx, id, func(p model.CompletePair) (model.CompletePair, error) {
		n, _ := strconv.Atoi(p.Response.Header.Get("X-Count"))
		p.Response.Header = p.Response.Header.Clone()
		if p.Response.Header == nil {
			p.Response.Header = http.Header{}
		}
		p.Response.Header.Set("X-Count", strconv.Itoa(n+1))
		return p, nil
	})
	return err
}

// options are the test server's table's options (dynalite takes any
// credentials).
func options(endpoint, table string) *DynamoDBOptions {
	return &DynamoDBOptions{Table: table, Endpoint: endpoint, Region: "us-east-1", AccessKey: "hishel-test", SecretKey: "hishel-test-secret", SweepInterval: -1}
}

func startHelper(t *testing.T, mode string, srv testserver.DynamoDBServer, seed int, env ...string) (*exec.Cmd, io.Reader, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), helperEnv+"="+mode, helperURI+"="+srv.Endpoint, helperDB+"="+srv.Table,
		helperSeed+"="+strconv.Itoa(seed)), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out, &stderr
}

// Two OS processes share one database: each stores pairs under the same
// keys and reads the other's back whole, and their UpdatePairFunc calls on
// one pair all count: none is lost to the other's.
func TestDynamoDBTwoProcesses(t *testing.T) {
	srv := testserver.DynamoDB(t)
	ctx := context.Background()
	s, err := OpenDynamoDB(ctx, options(srv.Endpoint, srv.Table))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	shared, err := storeSeeded(ctx, s, "shared", 7, 10)
	if err != nil {
		t.Fatal(err)
	}
	var cmds []*exec.Cmd
	var errs []*bytes.Buffer
	for seed := 1; seed <= 2; seed++ {
		cmd, out, stderr := startHelper(t, "share", srv, seed, "HISHEL_DYNAMODB_SHARED="+shared.String())
		go io.Copy(io.Discard, out)
		cmds, errs = append(cmds, cmd), append(errs, stderr)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v\n%s", i+1, err, errs[i])
		}
	}
	p, err := s.GetPair(ctx, shared)
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if got, want := p.Response.Header.Get("X-Count"), strconv.Itoa(2*sharedBumps); got != want {
		t.Errorf("shared pair's X-Count = %s; want %s (an update was lost)", got, want)
	}
	n := 0
	for k := range sharedKeys {
		ps, err := s.GetPairs(ctx, fmt.Sprint("k", k))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if err := checkSeeded(p); err != nil {
				t.Error(err)
			}
			n++
		}
	}
	if n != 2*sharedPairs {
		t.Errorf("GetPairs over the shared keys served %d pairs; want %d", n, 2*sharedPairs)
	}
	if st, err := s.Stats(ctx); err != nil || st != (model.Stats{Pairs: 2*sharedPairs + 1, Bytes: st.Bytes}) {
		t.Errorf("Stats() = %+v, %v; want %d complete pairs and nothing else", st, err, 2*sharedPairs+1)
	}
}

// crashHelper stores pairs with large bodies, one after another, and
// prints "done <id>" once each is stored, until it is killed.
func crashHelper(ctx context.Context, s *DynamoDB, seed int) error {
	w := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		id, err := storeSeeded(ctx, s, fmt.Sprint("c", i%4), seed*1000+i, 300_000+i*97_000%2_000_000)
		if err != nil {
			return err
		}
		fmt.Fprintln(w, "done", id)
		w.Flush()
	}
}

// A process killed at random points while it writes leaves no partial
// pair visible: every pair it reported stored reads back whole, nothing
// else is served, and the sweep reclaims the rest, chunks included.
//
// dynalite itself dies when a client's request is cut off (it rethrows the
// request's "aborted" error), so the writer runs against a dynalite of this
// test's own, restarted on its data after each kill when it died: a server
// crash and a client crash at once.
func TestDynamoDBCrash(t *testing.T) {
	{
		{
			srv, proc := testserver.OwnDynamoDB(t)
			ctx := context.Background()
			seed := 2
			done := map[model.PairID]bool{}
			for run := range 3 {
				cmd, out, stderr := startHelper(t, "crash", srv, seed+2*run)
				lines := make(chan string)
				go func() {
					sc := bufio.NewScanner(out)
					for sc.Scan() {
						lines <- sc.Text()
					}
					close(lines)
				}()
				// Kill it at a different point of its work each run.
				deadline := time.After(time.Duration(700+run*450) * time.Millisecond)
			read:
				for {
					select {
					case l, ok := <-lines:
						if !ok {
							t.Fatalf("helper ended before it was killed: %s", stderr)
						}
						if id, err := model.ParsePairID(strings.TrimPrefix(l, "done ")); err == nil {
							done[id] = true
						}
					case <-deadline:
						break read
					}
				}
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				if err := proc.Start(); err == nil {
					t.Logf("run %d: dynalite died with the writer; restarted on its data", run)
				}
				for l := range lines {
					if id, err := model.ParsePairID(strings.TrimPrefix(l, "done ")); err == nil {
						done[id] = true
					}
				}
			}
			if len(done) == 0 {
				t.Fatal("the helper stored no pair before it was killed")
			}
			clock := time.Now()
			o := options(srv.Endpoint, srv.Table)
			o.Now = func() time.Time { return clock }
			s, err := OpenDynamoDB(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			served := 0
			for k := range 4 {
				ps, err := s.GetPairs(ctx, fmt.Sprint("c", k))
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range ps {
					served++
					if !done[p.ID] {
						// Stored whole but killed before it said so: fine,
						// as long as it reads back whole.
						t.Logf("pair %v was completed before the kill was reported", p.ID)
					}
					if err := checkSeeded(p); err != nil {
						t.Error(err)
					}
				}
			}
			if served < len(done) {
				t.Errorf("GetPairs served %d pairs; the helpers reported %d stored", served, len(done))
			}
			// The pairs cut short are incomplete: a sweep an hour later
			// abandons them and deletes their chunks.
			clock = clock.Add(2 * time.Hour)
			res, err := s.Cleanup(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("after the kills: %d complete, %+v", served, res)
			if st, err := s.Stats(ctx); err != nil || st.Incomplete != 0 || st.Pairs != served {
				t.Errorf("Stats() after the sweep = %+v, %v; want %d pairs and no incomplete one", st, err, served)
			}
			clock = clock.Add(2 * time.Hour) // past the tombstones' age
			if _, err := s.Cleanup(ctx); err != nil {
				t.Fatal(err)
			}
			var want int64
			if err := s.Pairs(ctx, func(p model.PairInfo) error {
				want += chunks(p.Meta.RequestSize) + chunks(p.Meta.ResponseSize)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			var got int64
			pages := awsdynamodb.NewScanPaginator(s.db, &awsdynamodb.ScanInput{TableName: s.table, Select: types.SelectCount, ConsistentRead: aws.Bool(true),
				FilterExpression:          aws.String("begins_with(sk, :c)"),
				ExpressionAttributeValues: map[string]types.AttributeValue{":c": str("c#")}})
			for pages.HasMorePages() {
				out, err := pages.NextPage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				got += int64(out.Count)
			}
			if got != want {
				t.Errorf("%d chunk documents left; the complete pairs hold %d (aborted bodies not reclaimed)", got, want)
			}
		}
	}
}

// chunks is how many chunks a body of n bytes is stored in.
func chunks(n int64) int64 { return (n + MinDynamoDBChunk - 1) / MinDynamoDBChunk }
