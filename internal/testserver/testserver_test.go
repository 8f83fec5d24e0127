package testserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		dieWithServers(mode)
	}
	os.Exit(Main(m))
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// Redis: SET and GET through RESP; each call a prefix of its own, the same
// server; a test's keys are gone after it.
func TestRedis(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv := Redis(t)
	c, err := dialRedis(ctx, srv)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	do := func(args ...string) any {
		t.Helper()
		v, err := c.Do(args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return v
	}
	if got := do("SET", srv.Prefix+"k", "v\r\n\x00"); got != "OK" {
		t.Fatalf("SET = %q; want OK", got)
	}
	if got := do("GET", srv.Prefix+"k"); got != "v\r\n\x00" {
		t.Fatalf("GET = %q; want %q", got, "v\r\n\x00")
	}
	if got := do("GET", srv.Prefix+"missing"); got != nil {
		t.Fatalf("GET missing = %q; want nil", got)
	}
	if _, err := c.Do("INCR", srv.Prefix+"k"); err == nil || !strings.Contains(err.Error(), "not an integer") {
		t.Fatalf("INCR of a string: err = %v; want an error reply", err)
	}

	var child RedisServer
	t.Run("child", func(t *testing.T) {
		child = Redis(t)
		c, err := dialRedis(testContext(t), child)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for i := range 3 {
			if _, err := c.Do("SET", fmt.Sprint(child.Prefix, i), "x"); err != nil {
				t.Fatal(err)
			}
		}
	})
	if child.Addr != srv.Addr || child.Prefix == srv.Prefix {
		t.Fatalf("two calls: %+v and %+v; want one server, two prefixes", srv, child)
	}
	for i := range 3 {
		if got := do("EXISTS", fmt.Sprint(child.Prefix, i)); got != int64(0) {
			t.Errorf("EXISTS %s%d after the test = %v; want 0", child.Prefix, i, got)
		}
	}
	if got := do("EXISTS", srv.Prefix+"k"); got != int64(1) {
		t.Errorf("EXISTS of this test's key = %v; want 1", got)
	}
}

// PostgreSQL: a database per call, reached by its DSN (psql, which the
// server package brings) and by SCRAM and MD5 logins; dropped after.
func TestPostgres(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv := Postgres(t)
	c, err := dialPG(ctx, srv.Addr, srv.User, srv.Password, srv.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	query := func(sql string) [][]string {
		t.Helper()
		rows, err := c.query(sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return rows
	}
	query("CREATE TABLE t (k text PRIMARY KEY, v bytea)")
	query("INSERT INTO t VALUES ('a', '\\x00ff'), ('b', NULL)")
	rows := query("SELECT current_database(), k, encode(v, 'hex') FROM t ORDER BY k")
	want := [][]string{{srv.Database, "a", "00ff"}, {srv.Database, "b", ""}}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Fatalf("rows = %q; want %q", rows, want)
	}
	var pgErr *pgError
	if _, err := c.query("INSERT INTO t VALUES ('a', NULL)"); !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Fatalf("duplicate key: err = %v; want unique_violation 23505", err)
	}

	if psql, err := lookBin("psql", "/usr/lib/postgresql/"+version("POSTGRES_MAJOR")+"/bin"); err == nil {
		out, err := exec.CommandContext(ctx, psql, srv.DSN(), "-XAtc", "SELECT count(*) FROM t").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "2" {
			t.Fatalf("psql %s: %s (%v); want 2", srv.DSN(), out, err)
		}
	} else {
		t.Logf("no psql to try the DSN with: %v", err)
	}

	// A role whose password is stored as MD5 logs in with MD5.
	role := uniqueName("hishel_md5_")
	query("SET password_encryption = 'md5'; CREATE ROLE " + pgIdent(role) + " LOGIN PASSWORD " + pgLiteral("pw'1"))
	t.Cleanup(func() { pgExec(context.Background(), srv, srv.Database, "DROP ROLE IF EXISTS "+pgIdent(role)) })
	md5c, err := dialPG(ctx, srv.Addr, role, "pw'1", srv.Database)
	if err != nil {
		t.Fatalf("MD5 login: %v", err)
	}
	md5c.Close()
	if _, err := dialPG(ctx, srv.Addr, role, "wrong", srv.Database); !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("MD5 login with a wrong password: err = %v; want invalid_password 28P01", err)
	}
	if _, err := dialPG(ctx, srv.Addr, srv.User, "wrong", srv.Database); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}

	var child PostgresServer
	t.Run("child", func(t *testing.T) { child = Postgres(t) })
	if child.Addr != srv.Addr || child.Database == srv.Database {
		t.Fatalf("two calls: %+v and %+v; want one server, two databases", srv, child)
	}
	rows = query("SELECT count(*) FROM pg_database WHERE datname = " + pgLiteral(child.Database))
	if len(rows) != 1 || rows[0][0] != "0" {
		t.Fatalf("the child's database after it ended: count %q; want 0", rows)
	}
}

// S3: a signed PUT and GET of an object, If-None-Match: * refused with 412
// on an existing key, a bucket per call, removed with its objects after.
func TestS3(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv := S3(t)
	body := []byte("hishel \x00 body\n")
	key := srv.Bucket + "/dir/a key+é"
	if err := s3Do(ctx, srv, http.MethodPut, key, nil, body, http.StatusOK); err != nil {
		t.Fatal(err)
	}
	_, got, err := s3Request(ctx, srv, http.MethodGet, key, nil, nil, nil, http.StatusOK)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("GET = %q; want %q", got, body)
	}
	ifNone := http.Header{"If-None-Match": {"*"}}
	if _, _, err := s3Request(ctx, srv, http.MethodPut, key, nil, ifNone, []byte("other"), http.StatusPreconditionFailed); err != nil {
		t.Fatalf("PUT If-None-Match: * on an existing key: %v", err)
	}
	if _, _, err := s3Request(ctx, srv, http.MethodPut, srv.Bucket+"/new", nil, ifNone, []byte("new"), http.StatusOK); err != nil {
		t.Fatalf("PUT If-None-Match: * on a new key: %v", err)
	}
	if _, got, _ = s3Request(ctx, srv, http.MethodGet, key, nil, nil, nil, http.StatusOK); !bytes.Equal(got, body) {
		t.Fatalf("GET after the refused PUT = %q; want %q", got, body)
	}
	if err := s3Do(ctx, srv, http.MethodGet, srv.Bucket+"/missing", nil, nil, http.StatusNotFound); err != nil {
		t.Fatal(err)
	}
	bad := srv
	bad.SecretKey = "wrong"
	if err := s3Do(ctx, bad, http.MethodGet, key, nil, nil, http.StatusForbidden); err != nil {
		t.Fatalf("a wrong secret key: %v", err)
	}

	var child S3Server
	t.Run("child", func(t *testing.T) {
		child = S3(t)
		for i := range 3 {
			if err := s3Do(testContext(t), child, http.MethodPut, fmt.Sprint(child.Bucket, "/k", i), nil, []byte("x"), http.StatusOK); err != nil {
				t.Fatal(err)
			}
		}
	})
	if child.Endpoint != srv.Endpoint || child.Bucket == srv.Bucket {
		t.Fatalf("two calls: %+v and %+v; want one server, two buckets", srv, child)
	}
	if err := s3Do(ctx, srv, http.MethodHead, child.Bucket, nil, nil, http.StatusNotFound); err != nil {
		t.Fatalf("the child's bucket after it ended: %v", err)
	}
}

// MongoDB: hello and ping over OP_MSG, a document inserted and found, a
// database per call, dropped after.
func TestMongo(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv := Mongo(t)
	addr, err := mongoAddr(srv.URI)
	if err != nil {
		t.Fatal(err)
	}
	c, err := dialMongo(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hello, err := c.command("admin", bsonDoc{{"hello", int32(1)}})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := hello.Get("isWritablePrimary"); v != true {
		t.Fatalf("hello: isWritablePrimary = %v; want true (%v)", v, hello)
	}
	if v, _ := hello.Get("maxWireVersion"); num(v) < 6 {
		t.Fatalf("hello: maxWireVersion = %v; want OP_MSG (6 or more)", v)
	}
	doc := bsonDoc{{"_id", "a"}, {"body", []byte("hishel\x00")}, {"n", int64(1) << 40}, {"tags", []any{"x", int32(2)}}}
	if _, err := c.command(srv.Database, bsonDoc{{"insert", "pairs"}, {"documents", []any{doc}}}); err != nil {
		t.Fatal(err)
	}
	_, err = c.command(srv.Database, bsonDoc{{"insert", "pairs"}, {"documents", []any{doc}}})
	var me *mongoError
	if !errors.As(err, &me) || me.Code != 11000 {
		t.Fatalf("inserting a duplicate _id: err = %v; want a write error with code 11000 (duplicate key)", err)
	}
	reply, err := c.command(srv.Database, bsonDoc{{"find", "pairs"}, {"filter", bsonDoc{{"_id", "a"}}}})
	if err != nil {
		t.Fatal(err)
	}
	cursor, _ := reply.Get("cursor")
	cur, _ := cursor.(bsonDoc)
	batch, _ := cur.Get("firstBatch")
	docs, _ := batch.([]any)
	if len(docs) != 1 || fmt.Sprint(docs[0]) != fmt.Sprint(doc) {
		t.Fatalf("find = %v; want [%v]", docs, doc)
	}
	if _, err := c.command(srv.Database, bsonDoc{{"noSuchCommand", int32(1)}}); !errors.As(err, &me) {
		t.Fatalf("an unknown command: err = %v; want a command error", err)
	}

	var child MongoServer
	t.Run("child", func(t *testing.T) {
		child = Mongo(t)
		if _, err := mongoDo(testContext(t), child.URI, child.Database, bsonDoc{{"insert", "c"}, {"documents", []any{bsonDoc{{"_id", int32(1)}}}}}); err != nil {
			t.Fatal(err)
		}
	})
	if child.URI != srv.URI || child.Database == srv.Database {
		t.Fatalf("two calls: %+v and %+v; want one server, two databases", srv, child)
	}
	list, err := c.command("admin", bsonDoc{{"listDatabases", int32(1)}, {"nameOnly", true}})
	if err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprint(list); strings.Contains(s, child.Database) || !strings.Contains(s, srv.Database) {
		t.Fatalf("listDatabases = %v; want %s and not %s", s, srv.Database, child.Database)
	}
}

// DynamoDB: CreateTable, ListTables, PutItem and GetItem, a conditional put
// refused; the tables of a test deleted after it.
func TestDynamoDB(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv := DynamoDB(t)
	call := func(op string, in any, out any) {
		t.Helper()
		if err := dynamoCall(ctx, srv, op, in, out); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
	}
	createTable := func(srv DynamoDBServer, name string) error {
		return dynamoCall(ctx, srv, "CreateTable", map[string]any{
			"TableName":            name,
			"AttributeDefinitions": []any{map[string]any{"AttributeName": "k", "AttributeType": "S"}},
			"KeySchema":            []any{map[string]any{"AttributeName": "k", "KeyType": "HASH"}},
			"BillingMode":          "PAY_PER_REQUEST",
		}, nil)
	}
	if err := createTable(srv, srv.Table); err != nil {
		t.Fatal(err)
	}
	var list struct{ TableNames []string }
	call("ListTables", map[string]any{}, &list)
	if !strings.Contains(strings.Join(list.TableNames, " "), srv.Table) {
		t.Fatalf("ListTables = %v; want %s among them", list.TableNames, srv.Table)
	}
	item := map[string]any{"k": map[string]any{"S": "a"}, "v": map[string]any{"B": "aGlzaGVsAA=="}}
	call("PutItem", map[string]any{"TableName": srv.Table, "Item": item}, nil)
	var got struct{ Item map[string]map[string]string }
	call("GetItem", map[string]any{"TableName": srv.Table, "Key": map[string]any{"k": map[string]any{"S": "a"}}, "ConsistentRead": true}, &got)
	if got.Item["v"]["B"] != "aGlzaGVsAA==" {
		t.Fatalf("GetItem = %v; want v = aGlzaGVsAA==", got.Item)
	}
	err := dynamoCall(ctx, srv, "PutItem", map[string]any{"TableName": srv.Table, "Item": item, "ConditionExpression": "attribute_not_exists(k)"}, nil)
	var de *dynamoError
	if !errors.As(err, &de) || de.Type != "ConditionalCheckFailedException" {
		t.Fatalf("conditional PutItem on an existing item: err = %v; want ConditionalCheckFailedException", err)
	}

	var child DynamoDBServer
	t.Run("child", func(t *testing.T) {
		child = DynamoDB(t)
		for _, name := range []string{child.Table, child.Table + "_chunks"} {
			if err := createTable(child, name); err != nil {
				t.Fatal(err)
			}
		}
	})
	if child.Endpoint != srv.Endpoint || child.Table == srv.Table {
		t.Fatalf("two calls: %+v and %+v; want one server, two table names", srv, child)
	}
	for _, name := range []string{child.Table, child.Table + "_chunks"} {
		err := dynamoCall(ctx, srv, "DescribeTable", map[string]any{"TableName": name}, nil)
		if !errors.As(err, &de) || de.Type != "ResourceNotFoundException" {
			t.Fatalf("DescribeTable %s after its test: err = %v; want ResourceNotFoundException", name, err)
		}
	}
}

// fatalRecorder is a testing.TB whose Fatalf records the message and ends
// the goroutine, as testing's does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fatalRecorder) Logf(format string, args ...any) {}

// fatalOf runs get on a copy of k that has not started a server, with a
// recorder, and returns what it failed with ("" if it did not).
func fatalOf[T any](t *testing.T, k *kind[T]) string {
	rec := &fatalRecorder{TB: t}
	fresh := &kind[T]{env: k.env, form: k.form, fromEnv: k.fromEnv, prepare: k.prepare}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fresh.get(rec)
	}()
	<-done
	return rec.msg
}

// A server that cannot be had fails the test, saying why and how to get it.
func TestMissingServerFails(t *testing.T) {
	closed, err := freeAddr() // nobody listens there now
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("HISHEL_TEST_CACHE", t.TempDir()) // where nothing was installed
	for _, tt := range []struct {
		name, env, val string
		fail           func(*testing.T) string
		want           []string
	}{
		{"redis down", "HISHEL_TEST_REDIS", closed, func(t *testing.T) string { return fatalOf(t, redisKind) },
			[]string{"HISHEL_TEST_REDIS=" + `"` + closed, "does not answer", "make test-servers"}},
		{"postgres bad URL", "HISHEL_TEST_POSTGRES", "mysql://x", func(t *testing.T) string { return fatalOf(t, postgresKind) },
			[]string{`scheme "mysql"`, "HISHEL_TEST_POSTGRES=postgres://"}},
		{"s3 not installed", "HISHEL_TEST_S3", "", func(t *testing.T) string { return fatalOf(t, s3Kind) },
			[]string{"versitygw-" + version("VERSITYGW_VERSION"), "is not installed", "make test-servers"}},
		{"mongo not installed", "HISHEL_TEST_MONGO", "", func(t *testing.T) string { return fatalOf(t, mongoKind) },
			[]string{"hishel-ferretdb", "is not installed", "HISHEL_TEST_MONGO=mongodb://"}},
		{"dynamodb not installed", "HISHEL_TEST_DYNAMODB", "", func(t *testing.T) string { return fatalOf(t, dynamoKind) },
			[]string{"dynalite", "is not installed", "make test-servers"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(tt.env, tt.val)
			msg := tt.fail(t)
			if msg == "" {
				t.Fatal("the server was had; want a failure")
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("failure = %q; want it to say %q", msg, w)
				}
			}
		})
	}
}

// The cache directory the install script uses is the one the harness reads.
func TestCacheDir(t *testing.T) {
	t.Setenv("HISHEL_TEST_CACHE", "")
	t.Setenv("XDG_CACHE_HOME", "/x/cache")
	if got, err := cacheDir(); err != nil || got != "/x/cache/hishel-test" {
		t.Fatalf("cacheDir() = %q, %v; want /x/cache/hishel-test", got, err)
	}
	t.Setenv("HISHEL_TEST_CACHE", "/y")
	if got, err := cacheDir(); err != nil || got != "/y" {
		t.Fatalf("cacheDir() = %q, %v; want /y", got, err)
	}
}

// The FerretDB helper's go.mod requires the version versions.env pins.
func TestFerretDBPin(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("ferretdb", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	want := "github.com/FerretDB/FerretDB " + version("FERRETDB_VERSION") + "\n"
	if !strings.Contains(string(b), want) {
		t.Fatalf("ferretdb/go.mod does not require %q", want)
	}
	b, err = os.ReadFile(filepath.Join("dynalite", "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `"dynalite": "` + version("DYNALITE_VERSION") + `"`; !strings.Contains(string(b), want) {
		t.Fatalf("dynalite/package.json does not pin %s", want)
	}
}

// childEnv makes the test binary a child that starts servers and dies
// (TestServersDieWithTheBinary).
const childEnv = "HISHEL_TESTSERVER_CHILD"

// childTB is the testing.TB of a child: enough for the server functions.
type childTB struct{ testing.TB }

func (childTB) Helper()                   {}
func (childTB) Cleanup(func())            {}
func (childTB) Logf(string, ...any)       {}
func (childTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }

// dieWithServers starts servers as a test would, prints its data
// directory, and panics (mode "panic") or waits to be killed ("kill").
func dieWithServers(mode string) {
	state.mu.Lock()
	state.main = true
	state.mu.Unlock()
	Redis(childTB{})
	if mode == "panic" {
		Postgres(childTB{})
	}
	fmt.Printf("ROOT %s\n", state.root)
	if mode == "kill" {
		select {}
	}
	panic("a test panicked")
}

// A test binary that panics or is killed takes its servers with it, and the
// next one removes their data.
func TestServersDieWithTheBinary(t *testing.T) {
	for _, mode := range []string{"panic", "kill"} {
		t.Run(mode, func(t *testing.T) {
			ctx := testContext(t)
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"="+mode)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(out).ReadString('\n')
			root, ok := strings.CutPrefix(strings.TrimSpace(line), "ROOT ")
			if err != nil || !ok {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("child: %q, %v\n%s", line, err, stderr.Bytes())
			}
			if len(inDir(root)) == 0 {
				t.Fatalf("no process runs in %s", root)
			}
			if mode == "kill" {
				cmd.Process.Kill()
			}
			if err := cmd.Wait(); err == nil {
				t.Fatal("the child exited 0")
			}
			deadline := time.Now().Add(20 * time.Second)
			for left := inDir(root); len(left) > 0; left = inDir(root) {
				if time.Now().After(deadline) {
					t.Fatalf("processes %v still run in %s after the test binary died", left, root)
				}
				time.Sleep(50 * time.Millisecond)
			}
			reapStale()
			if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s was not removed by the next binary: %v", root, err)
			}
		})
	}
}

// inDir lists the processes whose working directory is in dir.
func inDir(dir string) []string {
	var pids []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		if cwd, err := os.Readlink(p + "/cwd"); err == nil && strings.HasPrefix(cwd, dir+"/") {
			pids = append(pids, filepath.Base(p))
		}
	}
	return pids
}

// A server of a test's own answers, hangs while paused, refuses connections
// while stopped, and answers again on the same address once restarted,
// with the data it persisted.
func TestOwnServers(t *testing.T) {
	for _, tt := range []struct {
		name string
		// start starts the server and returns a check that it answers and
		// holds what the first check wrote.
		start func(t *testing.T) (*Process, func(ctx context.Context, first bool) error)
	}{
		{"redis", func(t *testing.T) (*Process, func(context.Context, bool) error) {
			srv, p := OwnRedis(t)
			return p, func(ctx context.Context, _ bool) error { return redisPing(ctx, srv) }
		}},
		{"postgres", func(t *testing.T) (*Process, func(context.Context, bool) error) {
			srv, p := OwnPostgres(t)
			return p, func(ctx context.Context, first bool) error {
				if first {
					return pgExec(ctx, srv, srv.Database, "CREATE TABLE kept (k int)")
				}
				return pgExec(ctx, srv, srv.Database, "SELECT * FROM kept")
			}
		}},
		{"s3", func(t *testing.T) (*Process, func(context.Context, bool) error) {
			srv, p := OwnS3(t)
			return p, func(ctx context.Context, first bool) error {
				if first {
					return s3Do(ctx, srv, http.MethodPut, srv.Bucket+"/kept", nil, []byte("x"), http.StatusOK)
				}
				return s3Do(ctx, srv, http.MethodGet, srv.Bucket+"/kept", nil, nil, http.StatusOK)
			}
		}},
		{"mongo", func(t *testing.T) (*Process, func(context.Context, bool) error) {
			srv, p := OwnMongo(t)
			return p, func(ctx context.Context, first bool) error {
				if first {
					_, err := mongoDo(ctx, srv.URI, srv.Database, bsonDoc{{"insert", "kept"}, {"documents", []any{bsonDoc{{"_id", int32(1)}}}}})
					return err
				}
				reply, err := mongoDo(ctx, srv.URI, srv.Database, bsonDoc{{"count", "kept"}})
				if err != nil {
					return err
				}
				if n, _ := reply.Get("n"); num(n) != 1 {
					return fmt.Errorf("count = %v; want 1", n)
				}
				return nil
			}
		}},
		{"dynamodb", func(t *testing.T) (*Process, func(context.Context, bool) error) {
			srv, p := OwnDynamoDB(t)
			return p, func(ctx context.Context, first bool) error {
				if first {
					return dynamoCall(ctx, srv, "CreateTable", map[string]any{
						"TableName":            srv.Table,
						"AttributeDefinitions": []any{map[string]any{"AttributeName": "k", "AttributeType": "S"}},
						"KeySchema":            []any{map[string]any{"AttributeName": "k", "KeyType": "HASH"}},
						"BillingMode":          "PAY_PER_REQUEST",
					}, nil)
				}
				return dynamoCall(ctx, srv, "DescribeTable", map[string]any{"TableName": srv.Table}, nil)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			p, check := tt.start(t)
			if err := check(ctx, true); err != nil {
				t.Fatal(err)
			}

			if err := p.Pause(); err != nil {
				t.Fatal(err)
			}
			short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			err := check(short, false)
			cancel()
			if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("a paused server: err = %v; want a timeout", err)
			}
			if err := p.Resume(); err != nil {
				t.Fatal(err)
			}
			if err := check(ctx, false); err != nil {
				t.Fatalf("resumed: %v", err)
			}

			if err := p.Stop(); err != nil {
				t.Fatal(err)
			}
			// A pooled connection to the stopped server ends with EOF; a
			// new one is refused.
			httpClient.CloseIdleConnections()
			if err := check(ctx, false); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("a stopped server: err = %v; want connection refused", err)
			}
			addr := p.Addr()
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			if p.Addr() != addr {
				t.Fatalf("restarted on %s; want %s", p.Addr(), addr)
			}
			if err := check(ctx, false); err != nil {
				t.Fatalf("restarted: %v", err)
			}
		})
	}
}
