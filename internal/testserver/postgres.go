package testserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// PostgresServer is one test's database on a PostgreSQL server.
type PostgresServer struct {
	Addr     string // host:port
	User     string
	Password string
	// Database is created fresh for each call (hishel_<12 hex digits>), owned
	// by User, and dropped when the test ends.
	Database string
}

// DSN returns the database as a URL that pgx and libpq read:
// postgres://user:password@host:port/database?sslmode=disable.
func (p PostgresServer) DSN() string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(p.User, p.Password),
		Host:     p.Addr,
		Path:     "/" + p.Database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Postgres returns a fresh database for this test on the test binary's
// PostgreSQL server: the server HISHEL_TEST_POSTGRES names, or else Debian's
// PostgreSQL (the major version versions.env pins, from
// /usr/lib/postgresql/<major>/bin) started on first use on a free
// 127.0.0.1 port, its data directory in a temporary directory (a copy of one
// initdb made once and kept in the test server cache). As root it runs initdb and
// the server as the postgres user, since PostgreSQL refuses to run as root.
// The server it starts has fsync off (data lives as long as the tests; a
// killed client or backend still rolls back what it did not commit), and
// authenticates TCP clients with SCRAM-SHA-256.
//
// HISHEL_TEST_POSTGRES is postgres://user:password@host:port/database: a
// role that may CREATE DATABASE, and a database it can connect to in order to
// create and drop each test's own. The harness speaks no TLS: the server
// must accept a plain connection from it.
//
// The test fails when there is no server, saying how to get one.
func Postgres(tb testing.TB) PostgresServer {
	tb.Helper()
	return postgresDatabase(tb, postgresKind.get(tb), true)
}

// OwnPostgres starts a PostgreSQL server for this test alone, as Postgres
// would (and whatever HISHEL_TEST_POSTGRES says), with a fresh database on
// it, and stops it when the test ends; the Process stops, restarts or
// pauses it, for tests of an outage.
func OwnPostgres(tb testing.TB) (PostgresServer, *Process) {
	tb.Helper()
	srv, p := postgresKind.own(tb)
	return postgresDatabase(tb, srv, false), p
}

// postgresDatabase creates a fresh database on srv, whose Database is the
// one to connect to for that, and drops it when tb ends if drop is set.
func postgresDatabase(tb testing.TB, srv PostgresServer, drop bool) PostgresServer {
	tb.Helper()
	admin := srv.Database
	srv.Database = uniqueName("hishel_")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pgExec(ctx, srv, admin, "CREATE DATABASE "+pgIdent(srv.Database)); err != nil {
		tb.Fatalf("testserver: creating this test's database: %v", err)
	}
	if drop {
		tb.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := pgExec(ctx, srv, admin, "DROP DATABASE IF EXISTS "+pgIdent(srv.Database)+" WITH (FORCE)"); err != nil {
				tb.Logf("testserver: dropping this test's database: %v", err)
			}
		})
	}
	return srv
}

// postgresKind's servers have Database set to the database the harness
// connects to for creating and dropping the tests' databases.
var postgresKind = &kind[PostgresServer]{
	env:  "HISHEL_TEST_POSTGRES",
	form: "postgres://user:password@host:port/database",
	fromEnv: func(ctx context.Context, v string) (PostgresServer, error) {
		srv, err := parsePostgresEnv(v)
		if err != nil {
			return srv, err
		}
		if err := pgExec(ctx, srv, srv.Database, "SELECT 1"); err != nil {
			return srv, fmt.Errorf("does not answer: %w", err)
		}
		return srv, nil
	},
	prepare: preparePostgres,
}

// postgresPassword is the password of the postgres role on a server the
// harness starts.
const postgresPassword = "hishel-test"

func pgExec(ctx context.Context, srv PostgresServer, database, sql string) error {
	c, err := dialPG(ctx, srv.Addr, srv.User, srv.Password, database)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.query(sql)
	return err
}

func preparePostgres() (launch, func(string) PostgresServer, error) {
	began := time.Now()
	major := version("POSTGRES_MAJOR")
	bindir := "/usr/lib/postgresql/" + major + "/bin"
	postgres, err := lookBin("postgres", bindir)
	if err != nil {
		return launch{}, nil, err
	}
	bindir = filepath.Dir(postgres)
	out, err := exec.Command(postgres, "--version").Output()
	if err != nil {
		return launch{}, nil, fmt.Errorf("%s --version: %w", postgres, err)
	}
	ver, err := checkMajor(string(out), `\(PostgreSQL\) ((\d+)\.\d+)`, major)
	if err != nil {
		return launch{}, nil, fmt.Errorf("%s: %w", postgres, err)
	}
	dir, err := serverDir("postgres")
	if err != nil {
		return launch{}, nil, err
	}
	cred, err := postgresCredential(dir)
	if err != nil {
		return launch{}, nil, err
	}
	data := filepath.Join(dir, "data")
	how, err := pgData(bindir, ver, dir, data, cred)
	if err != nil {
		return launch{}, nil, err
	}
	l := launch{
		name: "postgres",
		what: fmt.Sprintf("PostgreSQL %s (%s in %v)", ver, how, time.Since(began).Round(time.Millisecond)),
		path: postgres,
		dir:  dir,
		cred: cred,
		args: func(addr string) []string {
			host, port, _ := net.SplitHostPort(addr)
			return []string{
				"-D", data, "-p", port, "-k", dir,
				"-c", "listen_addresses=" + host,
				"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
				"-c", "max_connections=200",
			}
		},
		ready: func(ctx context.Context, addr string) error {
			return pgExec(ctx, PostgresServer{Addr: addr, User: "postgres", Password: postgresPassword}, "postgres", "SELECT 1")
		},
		stopSig: syscall.SIGINT, // fast shutdown: SIGTERM would wait for every client to leave
	}
	return l, func(addr string) PostgresServer {
		return PostgresServer{Addr: addr, User: "postgres", Password: postgresPassword, Database: "postgres"}
	}, nil
}

// postgresCredential returns who runs initdb and the server: the postgres
// user when we are root (PostgreSQL refuses root), else ourselves (nil). It
// hands dir to that user.
func postgresCredential(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL refuses to run as root and there is no postgres user to run it as (Debian's postgresql package makes one): %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	if err := os.Chown(dir, int(uid), int(gid)); err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// The initdb arguments (but -D and --pwfile) and the pg_hba.conf of the
// servers the harness starts.
var (
	initdbArgs = []string{
		"-U", "postgres", "--auth-local", "trust", "--auth-host", "scram-sha-256",
		"-E", "UTF8", "--locale", "C", "--no-sync", "--no-instructions",
	}
	// md5 lets a role whose password is stored as MD5 log in with MD5 and
	// one stored as SCRAM (the default) with SCRAM: the harness speaks both.
	pgHBA = "local all all trust\nhost all all 127.0.0.1/32 md5\n"
)

// pgData makes the server's data directory: a copy (cp -a) of a template in
// the test server cache, made by initdb the first time. initdb costs
// seconds, the copy a fraction of one. The template's name holds a digest
// of the version and of how it was made, so any change makes a new one.
// pgData says which it did.
func pgData(bindir, ver, dir, data string, cred *syscall.Credential) (string, error) {
	sum := sha256.Sum256([]byte(fmt.Sprint(ver, initdbArgs, pgHBA, postgresPassword, cred)))
	cache, err := cacheDir()
	if err != nil {
		return "", err
	}
	template := filepath.Join(cache, "postgres-"+ver+"-"+hex.EncodeToString(sum[:6]))
	if _, err := os.Stat(filepath.Join(template, "PG_VERSION")); err == nil {
		if out, err := exec.Command("cp", "-a", template, data).CombinedOutput(); err != nil {
			return "", fmt.Errorf("copying %s: %w\n%s", template, err, out)
		}
		return "data directory copied", nil
	}
	if err := initdb(bindir, dir, data, cred); err != nil {
		return "", err
	}
	// Keep a copy for the next server; another test binary may be doing
	// the same, and the first rename wins.
	if err := os.MkdirAll(cache, 0o755); err == nil {
		if tmp, err := os.MkdirTemp(cache, ".postgres-template-"); err == nil {
			if exec.Command("cp", "-a", data, filepath.Join(tmp, "data")).Run() == nil {
				os.Rename(filepath.Join(tmp, "data"), template)
			}
			os.RemoveAll(tmp)
		}
	}
	return "initdb", nil
}

func initdb(bindir, dir, data string, cred *syscall.Credential) error {
	pwfile := filepath.Join(dir, "pwfile")
	if err := writeOwned(pwfile, postgresPassword+"\n", cred); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bindir, "initdb"),
		append([]string{"-D", data, "--pwfile", pwfile}, initdbArgs...)...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	return writeOwned(filepath.Join(data, "pg_hba.conf"), pgHBA, cred)
}

// writeOwned writes a file only its owner reads, owned by cred's user.
func writeOwned(path, data string, cred *syscall.Credential) error {
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		return err
	}
	if cred == nil {
		return nil
	}
	return os.Chown(path, int(cred.Uid), int(cred.Gid))
}

func parsePostgresEnv(s string) (PostgresServer, error) {
	u, err := url.Parse(s)
	if err != nil {
		return PostgresServer{}, err
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return PostgresServer{}, fmt.Errorf("scheme %q, want postgres", u.Scheme)
	}
	srv := PostgresServer{Addr: u.Host, Database: strings.TrimPrefix(u.Path, "/")}
	if u.Port() == "" {
		srv.Addr = net.JoinHostPort(u.Hostname(), "5432")
	}
	if u.User != nil {
		srv.User = u.User.Username()
		srv.Password, _ = u.User.Password()
	}
	if srv.User == "" {
		return PostgresServer{}, fmt.Errorf("no user in the URL")
	}
	if srv.Database == "" {
		srv.Database = "postgres"
	}
	return srv, nil
}
