package template

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/hishel-go/hishel/internal/proctest"
	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/model"
)

func TestMain(m *testing.M) {
	if proctest.IsHelper() {
		// The helper's store: cfg is "<uri> <database> <gridfs>"; every
		// variant kept, no background sweep.
		proctest.Helper(func(ctx context.Context, cfg string) (proctest.Store, error) {
			return OpenMongo(ctx, helperOptions(cfg, nil))
		})
	}
	os.Exit(testserver.Main(m))
}

func config(srv testserver.MongoServer, gridfs bool) string {
	g := "docs"
	if gridfs {
		g = "gridfs"
	}
	return srv.URI + " " + srv.Database + " " + g
}

func helperOptions(cfg string, now func() time.Time) *MongoOptions {
	f := strings.Fields(cfg)
	return &MongoOptions{URI: f[0], Database: f[1], GridFS: f[2] == "gridfs", SweepInterval: -1, MaxVariants: -1, Now: now}
}

// A client process killed at random moments (mid-body, between a body's
// chunks and its marker) leaves nothing partial visible, in each body
// layout, and the sweep leaves only the complete pairs' chunks.
func TestMongoCrash(t *testing.T) {
	for _, gridfs := range []bool{false, true} {
		name := "documents"
		if gridfs {
			name = "gridfs"
		}
		t.Run(name, func(t *testing.T) {
			cfg := config(testserver.Mongo(t), gridfs)
			proctest.Crash(t, 3, cfg, func(now func() time.Time) (proctest.Store, error) {
				return OpenMongo(context.Background(), helperOptions(cfg, now))
			})
			checkChunks(t, cfg)
		})
	}
}

// checkChunks opens the database cfg names again and checks that the chunks left are
// those of the stored pairs: the sweeps reclaimed every aborted body.
func checkChunks(t *testing.T, cfg string) {
	ctx := context.Background()
	s, err := OpenMongo(ctx, helperOptions(cfg, func() time.Time { return time.Now().Add(24 * time.Hour) }))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Cleanup(ctx); err != nil { // past the tombstones' age
		t.Fatal(err)
	}
	var want int64
	for p, err := range s.Pairs(ctx, model.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		if p.State != model.StateDeleted {
			want += chunks(p.Meta.RequestSize) + chunks(p.Meta.ResponseSize)
		}
	}
	deleted, err := s.pairs.CountDocuments(ctx, bson.D{{Key: fState, Value: stDeleted}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.chunks.CountDocuments(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	if deleted == 0 && got != want || got < want {
		t.Errorf("%d chunk documents left; the stored pairs hold %d (aborted bodies not reclaimed)", got, want)
	}
}

// chunks is how many chunks a body of n bytes is stored in.
func chunks(n int64) int64 { return (n + MinMongoChunk - 1) / MinMongoChunk }

// Two processes store and read one database at once; every pair either
// completed is served whole.
func TestMongoTwoProcesses(t *testing.T) {
	cfg := config(testserver.Mongo(t), false)
	open := func() (proctest.Store, error) { return OpenMongo(context.Background(), helperOptions(cfg, nil)) }
	s, err := open() // the indexes exist before either process starts
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	proctest.Share(t, cfg, open)
}

// Two processes' UpdatePairFunc calls on one pair all count on MongoDB,
// which applies a filtered update to a document atomically. FerretDB v1
// reads the documents an update's filter matches and writes them in a
// second step: two processes' updates conditional on one version may both
// apply, and some bumps are lost there, which the test reports.
func TestMongoUpdatesAcrossProcesses(t *testing.T) {
	cfg := config(testserver.Mongo(t), false)
	ctx := context.Background()
	s, err := OpenMongo(ctx, helperOptions(cfg, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := proctest.Updates(t, cfg, func() (proctest.Store, error) { return OpenMongo(ctx, helperOptions(cfg, nil)) })
	want := 2 * proctest.UpdateBumps
	var info bson.M
	if err := s.pairs.Database().RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info); err != nil {
		t.Fatal(err)
	}
	_, ferret := info["ferretdbVersion"]
	switch {
	case got == want:
	case ferret && got > 0 && got < want:
		t.Logf("X-Count = %d of %d: FerretDB lost %d conditional updates to concurrent ones", got, want, want-got)
	default:
		t.Errorf("X-Count = %d; want %d (an update was lost)", got, want)
	}
}
