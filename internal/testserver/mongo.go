package testserver

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
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

// PoolURI returns URI with the driver's pool of connections capped at n
// (maxPoolSize). FerretDB's SQLite handler has a pool of 100 connections,
// and an update holds one (reading what it matches) while it waits for
// another (to write): 64 clients updating at once, as the storage suite's
// Concurrent rule does, deadlocked it.
func (s MongoServer) PoolURI(n int) string {
	sep := "?"
	if strings.Contains(s.URI, "?") {
		sep = "&"
	}
	return s.URI + sep + "maxPoolSize=" + strconv.Itoa(n)
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
	srv := mongoKind.get(tb)
	srv.Database = uniqueName("hishel_")
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := mongoDo(ctx, srv.URI, srv.Database, bsonDoc{{"dropDatabase", int32(1)}}); err != nil {
			tb.Logf("testserver: dropping this test's database: %v", err)
		}
	})
	return srv
}

// OwnMongo starts a FerretDB for this test alone, as Mongo would (and
// whatever HISHEL_TEST_MONGO says), and stops it when the test ends; the
// Process stops, restarts or pauses it, for tests of an outage.
func OwnMongo(tb testing.TB) (MongoServer, *Process) {
	tb.Helper()
	srv, p := mongoKind.own(tb)
	srv.Database = uniqueName("hishel_")
	return srv, p
}

var mongoKind = &kind[MongoServer]{
	env:  "HISHEL_TEST_MONGO",
	form: "mongodb://host:port/",
	fromEnv: func(ctx context.Context, v string) (MongoServer, error) {
		if err := mongoPing(ctx, v); err != nil {
			return MongoServer{}, fmt.Errorf("does not answer: %w", err)
		}
		return MongoServer{URI: v}, nil
	},
	prepare: prepareMongo,
}

func prepareMongo() (launch, func(string) MongoServer, error) {
	ver := version("FERRETDB_VERSION")
	bin, err := cached("ferretdb-"+ver, "hishel-ferretdb")
	if err != nil {
		return launch{}, nil, err
	}
	dir, err := serverDir("ferretdb")
	if err != nil {
		return launch{}, nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		return launch{}, nil, err
	}
	l := launch{
		name: "FerretDB",
		what: "FerretDB " + ver + " (SQLite)",
		path: bin,
		dir:  dir,
		args: func(addr string) []string { return []string{"-listen", addr, "-dir", data} },
		ready: func(ctx context.Context, addr string) error {
			return mongoPing(ctx, "mongodb://"+addr+"/")
		},
	}
	return l, func(addr string) MongoServer { return MongoServer{URI: "mongodb://" + addr + "/"} }, nil
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
	if _, err := mongoDo(ctx, uri, "admin", bsonDoc{{"hello", int32(1)}}); err != nil {
		return err
	}
	_, err := mongoDo(ctx, uri, "admin", bsonDoc{{"ping", int32(1)}})
	return err
}

// mongoDo runs one command on a new connection and returns the reply.
func mongoDo(ctx context.Context, uri, db string, cmd bsonDoc) (bsonDoc, error) {
	addr, err := mongoAddr(uri)
	if err != nil {
		return nil, err
	}
	c, err := dialMongo(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.command(db, cmd)
}
