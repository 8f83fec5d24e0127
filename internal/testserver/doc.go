// Package testserver gives hishel-go's backend tests real servers: Redis,
// PostgreSQL, S3 (versitygw), MongoDB (FerretDB) and DynamoDB (dynalite).
//
// It uses the standard library only, so the core module's dependencies do not
// grow, and Go's internal rule lets every module under this repository (the
// backends' nested modules among them) import it.
//
// # Use
//
// A package's TestMain runs its tests through Main, which stops the servers
// when they end:
//
//	func TestMain(m *testing.M) { os.Exit(testserver.Main(m)) }
//
// and a test asks for what it needs:
//
//	srv := testserver.Redis(t) // srv.Addr, srv.Prefix, srv.URL()
//	db := testserver.Postgres(t) // db.DSN()
//	b := testserver.S3(t)        // b.Endpoint, b.Bucket, b.AccessKey, ...
//	m := testserver.Mongo(t)     // m.URI, m.Database
//	d := testserver.DynamoDB(t)  // d.Endpoint, d.Table, ...
//
// Each call hands the test a namespace of its own, made fresh and removed
// when the test ends (t.Cleanup): a key prefix on Redis, a database on
// PostgreSQL and MongoDB, a bucket on S3, a table name on DynamoDB. Tests,
// parallel ones included, never see each other's data, and test binaries
// sharing one external server do not either.
//
// # Servers and their lifetime
//
// One server of each kind serves the whole test binary. The first test that
// asks for it starts it, on a free 127.0.0.1 port with its data in a
// temporary directory, and waits until it answers at protocol level (PING;
// a PostgreSQL login and SELECT 1; a signed S3 ListBuckets; MongoDB hello
// and ping; DynamoDB ListTables); the others wait for that test. Main stops
// the servers (SIGTERM, or SIGINT for PostgreSQL's fast shutdown; killed
// after 15 s) and removes their data when the tests end. A test binary that
// dies instead (a panic, a -timeout, a signal) takes its servers with it:
// they are started with the kernel's parent-death signal (SIGKILL), from a
// thread that lives as long as the binary; their directories are removed by
// the next test binary that starts a server.
//
// A server that cannot be had fails the test, never skips it, with the
// reason and how to get it: `make test-servers` (scripts/test-servers),
// which `make test` runs first, or an environment variable.
//
// # Existing servers
//
// An environment variable points the tests at a running server instead:
//
//	HISHEL_TEST_REDIS=host:port   or redis://[[user]:password@]host:port[/db]
//	HISHEL_TEST_POSTGRES=postgres://user:password@host:port/database
//	    (the role may CREATE DATABASE; plain TCP, trust, md5 or SCRAM-SHA-256)
//	HISHEL_TEST_S3=http://ACCESS_KEY:SECRET_KEY@host:port[?region=us-east-1]
//	    (path-style; the credentials may create and delete buckets)
//	HISHEL_TEST_MONGO=mongodb://host:port/
//	    (hello, ping and dropDatabase must work without authentication)
//	HISHEL_TEST_DYNAMODB=http://host:port[?region=us-east-1]
//	    (or http://ACCESS_KEY:SECRET_KEY@host:port?region=R)
//
// # What is installed where
//
// scripts/test-servers installs what is missing and reuses what is there,
// at the versions pinned in versions.env: redis-server (7) and PostgreSQL
// (15) from Debian's packages; versitygw by go install; FerretDB embedded in
// the hishel-ferretdb helper of ./ferretdb, a module of its own so its
// dependencies never reach hishel-go's go.mod; dynalite from npm with the
// dependency tree of ./dynalite/package-lock.json. What it builds goes to
// $HISHEL_TEST_CACHE, by default ${XDG_CACHE_HOME:-$HOME/.cache}/hishel-test,
// where this package looks for it.
//
// # What the servers do not do
//
// FerretDB has no multi-document transactions, and applies a filtered
// update in two steps (it reads the matching documents, then writes them
// whole), so a concurrent write between the two is lost; on its PostgreSQL
// handler that happened often enough to fail the suite, and a bulk write
// held one pooled connection per statement until the bulk ended, so the
// tests run it on SQLite. dynalite writes a request's index entries and item one after the other and dies
// when a request is cut off (see the DynamoDB crash test). dynalite has no
// TransactWriteItems, TransactGetItems or UpdateTimeToLive, and limits items
// to 400 KB. versitygw answers a conditional PUT with If-None-Match: * on an
// existing key with 412 Precondition Failed, as S3 does.
package testserver
