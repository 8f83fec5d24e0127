package template

import (
	"cmp"
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/hishel-go/hishel/model"
)

// sweepProjection is what the sweep reads of a pair document.
var sweepProjection = bson.D{{Key: fNonce, Value: 1}, {Key: fState, Value: 1}, {Key: fReqN, Value: 1}, {Key: fRespN, Value: 1},
	{Key: fLayout, Value: 1}, {Key: fSize, Value: 1}, {Key: fAccess, Value: 1}, {Key: fDeleted, Value: 1}}

// find returns the pair documents filter matches, sweepProjection of them,
// sorted by sort (nil: any order), at most limit (0: all).
func (m *Mongo) find(ctx context.Context, filter, sort bson.D, limit int64) ([]pairDoc, error) {
	o := options.Find().SetProjection(sweepProjection)
	if sort != nil {
		o.SetSort(sort)
	}
	if limit > 0 {
		o.SetLimit(limit)
	}
	cur, err := m.pairs.Find(ctx, filter, o)
	if err != nil {
		return nil, m.wrap(ctx, "sweep", err)
	}
	var ds []pairDoc
	if err := cur.All(ctx, &ds); err != nil {
		return nil, m.wrap(ctx, "sweep", err)
	}
	return ds, nil
}

func rangeLTE(field string, state int32, at int64) bson.D {
	return bson.D{{Key: fState, Value: state}, {Key: field, Value: bson.D{{Key: "$lte", Value: at}}}}
}

// Cleanup runs a sweep now and reports what it did: expired pairs are
// soft-deleted, soft-deleted pairs past DeletedRetention and incomplete
// pairs older than IncompleteAge are removed with their chunks, pairs
// whose record or chunks were found corrupt are removed, and pairs beyond
// MaxPairs and MaxBytes are evicted. Every step is an indexed range query
// and conditional updates of what it finds, so its cost follows what it
// removes; processes sweeping at once each count only what they changed.
func (m *Mongo) Cleanup(ctx context.Context) (model.SweepResult, error) {
	var res model.SweepResult
	if err := m.check(ctx); err != nil {
		return res, err
	}
	now := m.now()
	up, err := m.pairs.UpdateMany(ctx, bson.D{{Key: fState, Value: stComplete}, {Key: fExpires, Value: bson.D{{Key: "$gt", Value: 0}, {Key: "$lte", Value: now}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: fState, Value: stDeleted}, {Key: fDeleted, Value: now}}}})
	if err != nil {
		return res, m.wrap(ctx, "sweep", err)
	}
	res.Expired = int(up.ModifiedCount)
	steps := []struct {
		filter bson.D
		from   int32
		count  *int
	}{
		{rangeLTE(fDeleted, stDeleted, now-int64(m.pol.Retention)), stDeleted, &res.Purged},
		{rangeLTE(fCreated, stIncomplete, now-int64(m.pol.IncompleteAge)), stIncomplete, &res.Abandoned},
	}
	for _, st := range steps {
		ds, err := m.find(ctx, st.filter, nil, 0)
		if err != nil {
			return res, err
		}
		for i := range ds {
			ok, err := m.bury(ctx, &ds[i], st.from)
			if err != nil {
				return res, err
			}
			if ok {
				*st.count++
			}
		}
	}
	// Tombstones old enough that no write of theirs can still land.
	ds, err := m.find(ctx, rangeLTE(fDeleted, stGone, now-int64(m.pol.IncompleteAge)), nil, 0)
	if err != nil {
		return res, err
	}
	for i := range ds {
		if err := m.deleteChunks(ctx, &ds[i]); err != nil {
			return res, err
		}
		if _, err := m.pairs.DeleteOne(ctx, bson.D{{Key: fID, Value: ds[i].ID}, {Key: fNonce, Value: ds[i].Nonce}, {Key: fState, Value: stGone}}); err != nil {
			return res, m.wrap(ctx, "sweep", err)
		}
	}
	if err := m.sweepBad(ctx, &res); err != nil {
		return res, err
	}
	n, err := m.enforceBudget(ctx)
	res.Evicted += n
	return res, err
}

// sweepBad removes the pairs that reads found corrupt.
func (m *Mongo) sweepBad(ctx context.Context, res *model.SweepResult) error {
	m.badMu.Lock()
	bad := m.bad
	m.bad = make(map[model.PairID]struct{})
	m.badMu.Unlock()
	for id := range bad {
		d, err := m.load(ctx, id)
		if err != nil {
			return err
		}
		if d == nil || d.State == stGone {
			continue
		}
		ok, err := m.bury(ctx, d, d.State)
		if err != nil {
			return err
		}
		if ok {
			res.Purged++
		}
	}
	return nil
}

// enforceBudget evicts, beyond MaxPairs, the least recently used complete
// pairs, and beyond MaxBytes soft-deleted pairs (oldest first) and then
// the least recently used complete pairs. It returns how many it evicted.
// The totals it checks come from a count and an aggregation, so a store
// with a budget pays them at every pair's completion.
func (m *Mongo) enforceBudget(ctx context.Context) (int, error) {
	evicted := 0
	if m.pol.MaxPairs > 0 {
		n, err := m.pairs.CountDocuments(ctx, bson.D{{Key: fState, Value: stComplete}})
		if err != nil {
			return evicted, m.wrap(ctx, "budget", err)
		}
		if over := n - int64(m.pol.MaxPairs); over > 0 {
			ds, err := m.find(ctx, bson.D{{Key: fState, Value: stComplete}}, bson.D{{Key: fAccess, Value: 1}, {Key: fID, Value: 1}}, over)
			if err != nil {
				return evicted, err
			}
			for i := range ds {
				ok, err := m.bury(ctx, &ds[i], stComplete)
				if ok {
					m.evicted.Add(1)
				}
				if err != nil {
					return evicted, err
				}
				if ok {
					evicted++
				}
			}
		}
	}
	if m.pol.MaxBytes <= 0 {
		return evicted, nil
	}
	st, err := m.Stats(ctx)
	if err != nil {
		return evicted, err
	}
	total := st.Bytes
	for _, step := range []struct {
		state int32
		sort  string
	}{{stDeleted, fDeleted}, {stComplete, fAccess}} {
		if total <= m.pol.MaxBytes {
			break
		}
		cur, err := m.pairs.Find(ctx, bson.D{{Key: fState, Value: step.state}},
			options.Find().SetProjection(sweepProjection).SetSort(bson.D{{Key: step.sort, Value: 1}, {Key: fID, Value: 1}}).SetBatchSize(64))
		if err != nil {
			return evicted, m.wrap(ctx, "budget", err)
		}
		err = func(cur *mongo.Cursor) error {
			defer cur.Close(context.WithoutCancel(ctx))
			for total > m.pol.MaxBytes && cur.Next(ctx) {
				var d pairDoc
				if err := cur.Decode(&d); err != nil {
					return err
				}
				ok, err := m.bury(ctx, &d, step.state)
				if ok && step.state == stComplete { // a live pair, not a soft-deleted one reclaimed early
					m.evicted.Add(1)
				}
				if err != nil {
					return err
				}
				if ok {
					evicted++
					total -= d.Size
				}
			}
			return cur.Err()
		}(cur)
		if err != nil {
			return evicted, m.wrap(ctx, "budget", err)
		}
	}
	return evicted, nil
}

// byAccess orders pair documents most recently used first.
func byAccess(a, b pairDoc) int {
	if c := cmp.Compare(b.Access, a.Access); c != 0 {
		return c
	}
	return cmp.Compare(b.Done, a.Done)
}
