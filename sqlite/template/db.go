package template

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
)

// db is a database handle with its statements prepared once (database/sql
// then prepares each once per connection and keeps it): a cache hit is two
// queries, and parsing them each time would cost more than running them.
type db struct {
	*sql.DB
	// conn is the write connection, which a write db holds for its
	// lifetime: its transactions take turns through sem (a wait that
	// honours the caller's context), and its statements are prepared on it.
	conn *sql.Conn
	sem  chan struct{}
	// switchSync: the write connection commits lazy transactions with
	// synchronous=NORMAL and durable ones with FULL (see inTx).
	switchSync bool
	full       bool // the write connection's synchronous setting is FULL (guarded by sem)

	mu    sync.Mutex
	stmts map[string]*sql.Stmt

	// evicted counts the live pairs evicted by committed transactions
	// (wtx.evicted; model.Stats.Evicted).
	evicted atomic.Int64
}

// newDB returns the read db over d.
func newDB(d *sql.DB) *db { return &db{DB: d, stmts: make(map[string]*sql.Stmt)} }

// newWriteDB returns the write db over d, holding its one connection.
func newWriteDB(ctx context.Context, d *sql.DB) (*db, error) {
	conn, err := d.Conn(ctx)
	if err != nil {
		return nil, err
	}
	return &db{DB: d, conn: conn, sem: make(chan struct{}, 1), stmts: make(map[string]*sql.Stmt)}, nil
}

// prepared returns q prepared on d: on its write connection for a write
// db (the caller holds sem), on its pool for a read db.
func (d *db) prepared(ctx context.Context, q string) (*sql.Stmt, error) {
	d.mu.Lock()
	st := d.stmts[q]
	d.mu.Unlock()
	if st != nil {
		return st, nil
	}
	var err error
	if d.conn != nil {
		st, err = d.conn.PrepareContext(ctx, q)
	} else {
		st, err = d.PrepareContext(ctx, q)
	}
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if old := d.stmts[q]; old != nil {
		_ = st.Close()
		return old, nil
	}
	d.stmts[q] = st
	return st, nil
}

// scanner is a row to scan: a *sql.Row, or an error.
type scanner interface{ Scan(dest ...any) error }

type errRow struct{ err error }

func (e errRow) Scan(...any) error { return e.err }

// querier is what reads need: d itself, or a write transaction.
type querier interface {
	query(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	queryRow(ctx context.Context, q string, args ...any) scanner
}

func (d *db) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := d.prepared(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (d *db) queryRow(ctx context.Context, q string, args ...any) scanner {
	st, err := d.prepared(ctx, q)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRowContext(ctx, args...)
}

// wtx is a write transaction on the write connection. Its statements run
// on the connection itself, prepared once: the transaction is SQL's own
// (BEGIN IMMEDIATE ... COMMIT), not a *sql.Tx, whose statements
// database/sql would prepare again in every transaction.
type wtx struct {
	d       *db
	evicted int64 // live pairs evicted in this transaction, added to d.evicted once committed
	// ended are called with the transaction's outcome (nil: committed)
	// once it has committed or rolled back (see onEnd).
	ended []func(error)
}

// onEnd has f called with the transaction's outcome, nil if it
// committed, once it has committed or rolled back, before the next
// transaction on the connection begins.
func (t *wtx) onEnd(f func(error)) { t.ended = append(t.ended, f) }

func (t *wtx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	st, err := t.d.prepared(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (t *wtx) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := t.d.prepared(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (t *wtx) queryRow(ctx context.Context, q string, args ...any) scanner {
	st, err := t.d.prepared(ctx, q)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRowContext(ctx, args...)
}

// inTx runs fn in a transaction on d's write connection (BEGIN IMMEDIATE:
// it takes the database's write lock as it begins, waiting up to the busy
// timeout for another process's, so that it never has to upgrade a read
// lock, which a busy timeout cannot wait for) and commits it, or rolls it
// back if fn fails. When d switches its synchronous setting, a durable
// transaction commits with FULL (its commit waits for the disk, and so
// makes every earlier commit durable too, as WAL frames are synced in
// order) and a lazy one with NORMAL: lazy transactions are those whose
// loss in a machine crash nobody could see (a new incomplete pair, chunks
// of a body still streaming, access times).
func (d *db) inTx(ctx context.Context, durable bool, fn func(*wtx) error) (err error) {
	select {
	case d.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-d.sem }()
	t := &wtx{d: d}
	if d.switchSync && d.full != durable {
		mode := "PRAGMA synchronous = NORMAL"
		if durable {
			mode = "PRAGMA synchronous = FULL"
		}
		if _, err := t.exec(ctx, mode); err != nil {
			return err
		}
		d.full = durable
	}
	if _, err := t.exec(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	committed := false
	defer func() {
		outcome := err
		if !committed && outcome == nil {
			outcome = errNoCommit // fn panicked
		}
		for _, f := range t.ended {
			f(outcome)
		}
	}()
	// COMMIT and ROLLBACK run whatever ctx has become: the transaction
	// ends either way (and the callbacks of onEnd run after it, before the
	// next one can begin).
	bg := context.WithoutCancel(ctx)
	if err := fn(t); err != nil {
		_, _ = t.exec(bg, "ROLLBACK")
		return err
	}
	if _, err := t.exec(bg, "COMMIT"); err != nil {
		_, _ = t.exec(bg, "ROLLBACK")
		return err
	}
	d.evicted.Add(t.evicted)
	committed = true
	return nil
}

// errNoCommit is the outcome onEnd's callbacks see of a transaction that
// ended without a commit or an error (its fn panicked).
var errNoCommit = errors.New("hishel: transaction ended without a commit")

// close closes the prepared statements, the write connection and the
// database.
func (d *db) close() error {
	d.mu.Lock()
	for q, st := range d.stmts {
		_ = st.Close()
		delete(d.stmts, q)
	}
	d.mu.Unlock()
	var err error
	if d.conn != nil {
		d.sem <- struct{}{} // no transaction runs from now on
		err = d.conn.Close()
	}
	return errors.Join(err, d.DB.Close())
}
