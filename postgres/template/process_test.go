//go:build unix

package template

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hishel-go/hishel/internal/testserver"
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

// openAt opens the store in the database dsn names, with o's settings, in
// the test process and in the process tests' helpers. In the test process
// it first waits until the server has ended the sessions of the helpers
// (killed or exited): the server rolls back what a killed helper had not
// committed as it notices the closed sockets, and until then the check
// would see rows still locked, which its sweep skips.
func openAt(dsn string, o storagetest.Options) (storagetest.Store, error) {
	if parent {
		if err := waitAlone(dsn); err != nil {
			return nil, err
		}
	}
	opts := &PostgresOptions{ConnString: dsn}
	opts.SetSettings(o.Settings())
	return OpenPostgres(context.Background(), opts)
}

var crashRuns = flag.Int("crash.runs", 8, "kill-and-check rounds of TestPostgresCrash (3 with -short)")

// A client process killed at random moments (SIGKILL, mid-transaction or
// mid-body) leaves nothing partial visible: the server rolls back what it
// had not committed, and what it had is an incomplete pair no reader sees
// until a sweep removes it.
func TestPostgresCrash(t *testing.T) {
	runs := *crashRuns
	if testing.Short() {
		runs = min(runs, 3)
	}
	storagetest.RunCrash(t, testserver.Postgres(t).DSN(), runs)
}

// waitAlone waits until no other session is connected to dsn's database.
func waitAlone(dsn string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for {
		var others int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&others); err != nil {
			return err
		}
		if others == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the helpers' %d sessions are still there: %w", others, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Two processes store and read one store at once; every pair either
// completed is served whole.
func TestPostgresTwoProcesses(t *testing.T) {
	storagetest.RunShared(t, testserver.Postgres(t).DSN())
}

// Two processes' UpdatePairFunc calls on one pair all count.
func TestPostgresUpdatesAcrossProcesses(t *testing.T) {
	storagetest.RunUpdates(t, testserver.Postgres(t).DSN())
}
