package template

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/storagetest"
)

func TestMain(m *testing.M) {
	storagetest.HelperMain(openAt)
	os.Exit(testserver.Main(m))
}

// openAt opens the store cfg names ("<uri> <database> <docs|gridfs>") with
// o's settings, in the test process and in the process tests' helpers;
// there is no background sweep.
func openAt(cfg string, o storagetest.Options) (storagetest.Store, error) {
	opts := helperOptions(cfg, nil)
	opts.SetSettings(o.Settings())
	opts.SweepInterval = -1
	return OpenMongo(context.Background(), opts)
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
			storagetest.RunCrash(t, cfg, 8)
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
	storagetest.RunShared(t, config(testserver.Mongo(t), false))
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
	got, want := storagetest.CountUpdates(t, cfg)
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
