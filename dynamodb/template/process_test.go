package template

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/hishel-go/hishel/internal/proctest"
	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/model"
)

func TestMain(m *testing.M) {
	if proctest.IsHelper() {
		// The helper's store: cfg is "<endpoint> <table>"; every variant
		// kept, no background sweep.
		proctest.Helper(func(ctx context.Context, cfg string) (proctest.Store, error) {
			f := strings.Fields(cfg)
			return OpenDynamoDB(ctx, options(f[0], f[1]))
		})
	}
	os.Exit(testserver.Main(m))
}

// options are the test server's table's options (dynalite takes any
// credentials).
func options(endpoint, table string) *DynamoDBOptions {
	return &DynamoDBOptions{Table: table, Endpoint: endpoint, Region: "us-east-1", AccessKey: "hishel-test",
		SecretKey: "hishel-test-secret", SweepInterval: -1, MaxVariants: -1}
}

// A client process killed at random moments leaves nothing partial
// visible, and the sweep leaves only the stored pairs' chunks.
//
// dynalite itself dies when a client's request is cut off (it rethrows
// the request's "aborted" error), and it dies some milliseconds after the
// kill, when it reads the cut-off request: a check that asks whether it is
// still alive right after the kill may see it alive, and then lose it
// half-way through the checks. So the writer runs against a dynalite of
// this test's own, and after every kill the test stops it (waiting until it
// has exited, whether the kill took it down or not) and starts it again on
// its data before it checks anything: a server crash and a client crash at
// once, every time, and no request of the killed writer is still being
// served while the checks run.
func TestDynamoDBCrash(t *testing.T) {
	srv, proc := testserver.OwnDynamoDB(t)
	cfg := srv.Endpoint + " " + srv.Table
	var last *DynamoDB
	proctest.Crash(t, 3, cfg, func(now func() time.Time) (proctest.Store, error) {
		if err := proc.Stop(); err != nil { // it died with the writer: the error says how
			t.Logf("dynalite, stopped after the kill: %v", err)
		}
		if err := proc.Start(); err != nil {
			return nil, fmt.Errorf("restarting dynalite on its data: %w", err)
		}
		o := options(srv.Endpoint, srv.Table)
		o.Now = now
		s, err := OpenDynamoDB(context.Background(), o)
		last = s
		return s, err
	})
	checkChunks(t, last)
}

// checkChunks opens s's table again and checks that the chunks left are
// those of the stored pairs: the sweeps reclaimed every aborted body.
func checkChunks(t *testing.T, s *DynamoDB) {
	ctx := context.Background()
	s, err := OpenDynamoDB(ctx, &DynamoDBOptions{Client: s.db, Table: *s.table, SweepInterval: -1,
		Now: func() time.Time { return time.Now().Add(24 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Cleanup(ctx); err != nil { // past the tombstones' age
		t.Fatal(err)
	}
	var want int64
	deleted := false
	for p, err := range s.Pairs(ctx, model.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		deleted = deleted || p.State == model.StateDeleted
		if p.State != model.StateDeleted {
			want += chunks(p.Meta.RequestSize) + chunks(p.Meta.ResponseSize)
		}
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
	if !deleted && got != want || got < want {
		t.Errorf("%d chunk items left; the stored pairs hold %d (aborted bodies not reclaimed)", got, want)
	}
}

// chunks is how many chunks a body of n bytes is stored in.
func chunks(n int64) int64 { return (n + MinDynamoDBChunk - 1) / MinDynamoDBChunk }

// Two processes store and read one table at once; every pair either
// completed is served whole.
func TestDynamoDBTwoProcesses(t *testing.T) {
	srv := testserver.DynamoDB(t)
	cfg := srv.Endpoint + " " + srv.Table
	open := func() (proctest.Store, error) {
		return OpenDynamoDB(context.Background(), options(srv.Endpoint, srv.Table))
	}
	s, err := open() // the table exists before either process starts
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	proctest.Share(t, cfg, open)
}

// Two processes' UpdatePairFunc calls on one pair all count: each is a
// write conditional on the version it read.
func TestDynamoDBUpdatesAcrossProcesses(t *testing.T) {
	srv := testserver.DynamoDB(t)
	cfg := srv.Endpoint + " " + srv.Table
	got := proctest.Updates(t, cfg, func() (proctest.Store, error) {
		return OpenDynamoDB(context.Background(), options(srv.Endpoint, srv.Table))
	})
	if want := 2 * proctest.UpdateBumps; got != want {
		t.Errorf("X-Count = %d; want %d (an update was lost)", got, want)
	}
}
