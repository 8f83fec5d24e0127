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

	"github.com/hishel-go/hishel/internal/proctest"
	"github.com/hishel-go/hishel/internal/testserver"
)

func TestMain(m *testing.M) {
	if proctest.IsHelper() {
		// The helper's store: the parent's database (cfg is its DSN),
		// every variant kept, no background sweep.
		proctest.Helper(func(ctx context.Context, dsn string) (proctest.Store, error) {
			return OpenPostgres(ctx, &PostgresOptions{ConnString: dsn, ChunkSize: 16 << 10, SweepInterval: -1,
				MaxVariants: -1, AccessFlushInterval: 10 * time.Millisecond})
		})
	}
	os.Exit(testserver.Main(m))
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
	db := testserver.Postgres(t)
	proctest.Crash(t, runs, db.DSN(), func(now func() time.Time) (proctest.Store, error) {
		if err := waitAlone(db.DSN()); err != nil {
			return nil, err
		}
		return OpenPostgres(context.Background(), &PostgresOptions{ConnString: db.DSN(), SweepInterval: -1, MaxVariants: -1, Now: now})
	})
}

// waitAlone waits until the server has ended the sessions of the killed
// helper (it rolls back their transactions as it notices the closed
// sockets), so that the check sees what the helper committed, and its
// sweep finds no row still locked by a session on its way out.
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
			return fmt.Errorf("the killed helper's %d sessions are still there: %w", others, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Two processes store and read one store at once; every pair either
// completed is served whole.
func TestPostgresTwoProcesses(t *testing.T) {
	db := testserver.Postgres(t)
	open := func() (proctest.Store, error) {
		return OpenPostgres(context.Background(), &PostgresOptions{ConnString: db.DSN(), SweepInterval: -1, MaxVariants: -1})
	}
	s, err := open() // the tables exist before either process starts
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	proctest.Share(t, db.DSN(), open)
}
