package testserver

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// MongoServer is one test's database on a MongoDB wire-protocol server.
type MongoServer struct {
	URI string // mongodb://host:port/ (with credentials when the server needs them)
	// Database is a fresh name for each call (hishel_<12 hex digits>); the
	// database is dropped when the test ends.
	Database string
}

// Mongo returns a fresh database for this test on the test binary's MongoDB
// server: the server HISHEL_TEST_MONGO names, or else FerretDB (the version
// versions.env pins, embedded in the hishel-ferretdb helper of ./ferretdb,
// built into the test server cache by scripts/test-servers) on its SQLite
// handler in a temporary directory, started on first use on a free
// 127.0.0.1 port.
//
// FerretDB speaks the MongoDB wire protocol, GridFS included, but has no
// multi-document transactions.
//
// HISHEL_TEST_MONGO is a mongodb:// URI of a server that lets the harness
// run hello, ping and dropDatabase without authenticating (a test server);
// the URI itself is handed to the tests as it is.
//
// The test fails when there is no server, saying how to get one.
func Mongo(tb testing.TB) MongoServer {
	tb.Helper()
	srv := mongoShared.get(tb, startMongo, howTo("HISHEL_TEST_MONGO", "mongodb://host:port/"))
	srv.Database = uniqueName("hishel_")
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := mongoDo(ctx, srv.URI, srv.Database, bsonDoc{{"dropDatabase", int32(1)}}); err != nil {
			tb.Logf("testserver: dropping this test's database: %v", err)
		}
	})
	return srv
}

var mongoShared shared[MongoServer]

func startMongo(tb testing.TB) (MongoServer, error) {
	if env := os.Getenv("HISHEL_TEST_MONGO"); env != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := mongoPing(ctx, env); err != nil {
			return MongoServer{}, fmt.Errorf("HISHEL_TEST_MONGO=%q does not answer: %w", env, err)
		}
		return MongoServer{URI: env}, nil
	}
	began := time.Now()
	ver := version("FERRETDB_VERSION")
	bin, err := cached("ferretdb-"+ver, "hishel-ferretdb")
	if err != nil {
		return MongoServer{}, err
	}
	dir, err := serverDir("ferretdb")
	if err != nil {
		return MongoServer{}, err
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		return MongoServer{}, err
	}
	_, addr, err := start(launch{
		name: "FerretDB",
		path: bin,
		dir:  dir,
		args: func(addr string) []string { return []string{"-listen", addr, "-dir", data} },
		ready: func(ctx context.Context, addr string) error {
			return mongoPing(ctx, "mongodb://"+addr+"/")
		},
	})
	if err != nil {
		return MongoServer{}, err
	}
	logStart(tb, "FerretDB "+ver+" (SQLite)", addr, began)
	return MongoServer{URI: "mongodb://" + addr + "/"}, nil
}

// mongoAddr returns the first host of a mongodb:// URI.
func mongoAddr(uri string) (string, error) {
	rest, ok := strings.CutPrefix(uri, "mongodb://")
	if !ok {
		return "", fmt.Errorf("%q is not a mongodb:// URI", uri)
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		rest = rest[i+1:]
	}
	hosts, _, _ := strings.Cut(rest, "/")
	hosts, _, _ = strings.Cut(hosts, "?")
	host, _, _ := strings.Cut(hosts, ",")
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(strings.Trim(host, "[]"), "27017")
	}
	return host, nil
}

// mongoPing checks that the server answers hello and ping.
func mongoPing(ctx context.Context, uri string) error {
	if err := mongoDo(ctx, uri, "admin", bsonDoc{{"hello", int32(1)}}); err != nil {
		return err
	}
	return mongoDo(ctx, uri, "admin", bsonDoc{{"ping", int32(1)}})
}

func mongoDo(ctx context.Context, uri, db string, cmd bsonDoc) error {
	addr, err := mongoAddr(uri)
	if err != nil {
		return err
	}
	c, err := dialMongo(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.command(db, cmd)
	return err
}
