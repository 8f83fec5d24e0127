package template

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/hishel-go/hishel/model"
)

// indexed queries index idx for heads in state whose sort attribute is at
// most upTo (ascending), and calls fn with each until fn returns false.
func (d *DynamoDB) indexed(ctx context.Context, idx string, state, upTo int64, fn func(*head) (bool, error)) error {
	sortAttr := aTime
	if idx == idxAccess {
		sortAttr = aAccess
	}
	p := dynamodb.NewQueryPaginator(d.db, &dynamodb.QueryInput{TableName: d.table, IndexName: aws.String(idx),
		KeyConditionExpression:    aws.String("s = :s AND " + sortAttr + " <= :t"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":s": num(state), ":t": num(upTo)}})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return d.wrap(ctx, "sweep", err)
		}
		for _, it := range out.Items {
			h, ok := decodeHead(it)
			if !ok {
				continue
			}
			h.state = state
			more, err := fn(h)
			if err != nil || !more {
				return err
			}
		}
	}
	return nil
}

// Cleanup runs a sweep now and reports what it did: expired pairs are
// soft-deleted, soft-deleted pairs past DeletedRetention and incomplete
// pairs older than IncompleteAge are removed with their chunks, pairs
// whose record or chunks were found corrupt are removed, and pairs beyond
// MaxPairs and MaxBytes are evicted. Each step is a Query of a sparse
// index ordered by time, so its cost follows what it removes; every change
// is conditional, so processes sweeping at once each count only their own.
func (d *DynamoDB) Cleanup(ctx context.Context) (model.SweepResult, error) {
	var res model.SweepResult
	if err := d.check(ctx); err != nil {
		return res, err
	}
	now := d.now()
	err := d.indexed(ctx, idxTime, stComplete, now, func(h *head) (bool, error) {
		ok, err := d.update(ctx, h.id, "SET s = :del, #del = :now, t = :now", "s = :done AND n = :n AND x > :zero AND x <= :now",
			map[string]types.AttributeValue{":del": num(stDeleted), ":now": num(now), ":done": num(stComplete), ":n": num(h.nonce), ":zero": num(0)})
		if ok {
			res.Expired++
		}
		return true, err
	})
	if err != nil {
		return res, err
	}
	for _, st := range []struct {
		state, upTo int64
		count       *int
	}{
		{stDeleted, now - int64(d.pol.Retention), &res.Purged},
		{stIncomplete, now - int64(d.pol.IncompleteAge), &res.Abandoned},
	} {
		err := d.indexed(ctx, idxTime, st.state, st.upTo, func(h *head) (bool, error) {
			ok, err := d.bury(ctx, h, st.state)
			if ok {
				*st.count++
			}
			return true, err
		})
		if err != nil {
			return res, err
		}
	}
	// Tombstones old enough that no write of theirs can still land.
	err = d.indexed(ctx, idxTime, stGone, now-int64(d.pol.IncompleteAge), func(h *head) (bool, error) {
		if err := d.deleteChunks(ctx, h.id); err != nil {
			return false, err
		}
		_, err := d.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: d.table, Key: headKey(h.id),
			ConditionExpression:       aws.String("s = :gone AND n = :n"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":gone": num(stGone), ":n": num(h.nonce)}})
		if err != nil && !failedCondition(err) {
			return false, d.wrap(ctx, "sweep", err)
		}
		return true, nil
	})
	if err != nil {
		return res, err
	}
	d.badMu.Lock()
	bad := d.bad
	d.bad = make(map[model.PairID]struct{})
	d.badMu.Unlock()
	for id := range bad {
		h, err := d.load(ctx, id)
		if err != nil {
			return res, err
		}
		if h != nil && h.state != stGone {
			if ok, err := d.bury(ctx, h, h.state); err != nil {
				return res, err
			} else if ok {
				res.Purged++
			}
		}
	}
	n, err := d.enforceBudget(ctx)
	res.Evicted += n
	return res, err
}

// enforceBudget evicts, beyond MaxPairs, the least recently used complete
// pairs, and beyond MaxBytes soft-deleted pairs (oldest first) and then
// the least recently used complete pairs. The totals come from a scan.
func (d *DynamoDB) enforceBudget(ctx context.Context) (int, error) {
	if d.pol.MaxPairs <= 0 && d.pol.MaxBytes <= 0 {
		return 0, nil
	}
	st, err := d.Stats(ctx)
	if err != nil {
		return 0, err
	}
	evicted := 0
	if over := st.Pairs - d.pol.MaxPairs; d.pol.MaxPairs > 0 && over > 0 {
		err := d.indexed(ctx, idxAccess, stComplete, never, func(h *head) (bool, error) {
			ok, err := d.bury(ctx, h, stComplete)
			if ok {
				evicted++
				d.evicted.Add(1)
				over--
				st.Bytes -= h.size
			}
			return over > 0, err
		})
		if err != nil {
			return evicted, err
		}
	}
	if d.pol.MaxBytes <= 0 || st.Bytes <= d.pol.MaxBytes {
		return evicted, nil
	}
	for _, step := range []struct {
		idx   string
		state int64
	}{{idxTime, stDeleted}, {idxAccess, stComplete}} {
		if st.Bytes <= d.pol.MaxBytes {
			break
		}
		err := d.indexed(ctx, step.idx, step.state, never, func(h *head) (bool, error) {
			ok, err := d.bury(ctx, h, step.state)
			if ok {
				evicted++
				if step.state == stComplete { // a live pair, not a soft-deleted one reclaimed early
					d.evicted.Add(1)
				}
				st.Bytes -= h.size
			}
			return st.Bytes > d.pol.MaxBytes, err
		})
		if err != nil {
			return evicted, err
		}
	}
	return evicted, nil
}
