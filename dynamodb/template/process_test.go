package template

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/storagetest"
)

// parent is set in the test process, once storagetest.HelperMain has
// returned (in a helper process it never does).
var parent bool

func TestMain(m *testing.M) {
	storagetest.HelperMain(openAt)
	parent = true
	os.Exit(testserver.Main(m))
}

// crashProxy is the whole-request proxy of the crash test under way (see
// TestDynamoDBCrash), or nil.
var crashProxy *wholeProxy

// openAt opens the store cfg names ("<endpoint> <table>") with o's
// settings, in the test process and in the process tests' helpers; there
// is no background sweep. In the test process, during the crash test, it
// first drains the proxy its helpers write through, and goes to dynalite
// directly.
func openAt(cfg string, o storagetest.Options) (storagetest.Store, error) {
	f := strings.Fields(cfg)
	endpoint := f[0]
	if parent && crashProxy != nil {
		crashProxy.drain()
		endpoint = crashProxy.target
	}
	opts := options(endpoint, f[1])
	opts.SetSettings(o.Settings())
	opts.SweepInterval = -1
	return OpenDynamoDB(context.Background(), opts)
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
// DynamoDB applies every request it has received whole, and none it has
// not. dynalite does not: a client's request cut off by the kill makes it
// die, some milliseconds later, between the writes of one request (it
// writes an item's index entries and the item one after the other), which
// real DynamoDB never does. So the writer talks to dynalite through a
// proxy that forwards only whole requests, each to its end whatever the
// client does, and after every kill the test waits until the proxy has
// answered every request of the killed writer before it checks anything.
func TestDynamoDBCrash(t *testing.T) {
	srv := testserver.DynamoDB(t)
	crashProxy = newWholeProxy(t, srv.Endpoint)
	defer func() { crashProxy = nil }()
	storagetest.RunCrash(t, crashProxy.url+" "+srv.Table, 8)
	checkChunks(t, options(srv.Endpoint, srv.Table))
}

// wholeProxy is an HTTP proxy that forwards a request only once it has
// read it whole, and forwards it to its end on a context of its own, so
// that a client killed in the middle of a request never cuts one off.
type wholeProxy struct {
	url    string
	target string
	srv    *httptest.Server

	mu       sync.Mutex
	draining bool
	busy     sync.WaitGroup // the requests being forwarded
}

func newWholeProxy(t *testing.T, target string) *wholeProxy {
	p := &wholeProxy{target: strings.TrimSuffix(target, "/")}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	p.url = p.srv.URL
	return p
}

func (p *wholeProxy) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	if p.draining {
		p.mu.Unlock()
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	p.busy.Add(1)
	p.mu.Unlock()
	defer p.busy.Done()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // cut off: never forwarded
	}
	out, err := http.NewRequestWithContext(context.WithoutCancel(r.Context()), r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = r.Header.Clone()
	out.Host = r.Host // the host the client signed
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body) // the client may be gone: the request was applied
}

// drain closes every client connection (a request left unread in one is
// never forwarded) and waits until every request being forwarded has been
// answered: after it, no request of a killed client can still land.
func (p *wholeProxy) drain() {
	p.mu.Lock()
	p.draining = true
	p.mu.Unlock()
	p.srv.CloseClientConnections()
	p.busy.Wait()
	p.mu.Lock()
	p.draining = false
	p.mu.Unlock()
}

// checkChunks opens the table o names again and checks that the chunks
// left are those of the stored pairs: the sweeps reclaimed every aborted
// body.
func checkChunks(t *testing.T, o *DynamoDBOptions) {
	ctx := context.Background()
	o.Now = func() time.Time { return time.Now().Add(24 * time.Hour) }
	s, err := OpenDynamoDB(ctx, o)
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
	storagetest.RunShared(t, srv.Endpoint+" "+srv.Table)
}

// Two processes' UpdatePairFunc calls on one pair all count: each is a
// write conditional on the version it read.
func TestDynamoDBUpdatesAcrossProcesses(t *testing.T) {
	srv := testserver.DynamoDB(t)
	storagetest.RunUpdates(t, srv.Endpoint+" "+srv.Table)
}
