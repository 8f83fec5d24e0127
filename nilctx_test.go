package hishel_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
	"github.com/hishel-go/hishel/cacheasync"
	"github.com/hishel-go/hishel/model"
	"github.com/hishel-go/hishel/template"
)

// Every exported function and method of the storage packages that takes a
// context returns an error wrapping model.ErrInvalid for a nil one: no
// panic in the caller, none in a goroutine of ours (which would kill the
// process and the test binary with it).
func TestNilContextStorage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	opened := func(name string, v any, err error) (string, any) {
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		return name, v
	}
	type store struct {
		name string
		v    any
	}
	var stores []store
	add := func(name string, v any) { stores = append(stores, store{name, v}) }
	bopts := func(name string) *cache.BoltOptions {
		return &cache.BoltOptions{Path: filepath.Join(dir, name+".db"), SweepInterval: -1}
	}
	tb, err := template.OpenBolt(ctx, bopts("template"))
	add(opened("template.Bolt", tb, err))
	tm, err := template.OpenMemory(ctx, nil)
	add(opened("template.Memory", tm, err))
	cb, err := cache.OpenBolt(ctx, bopts("cache"))
	add(opened("cache.Bolt", cb, err))
	cm, err := cache.OpenMemory(ctx, nil)
	add(opened("cache.Memory", cm, err))
	ab, err := cacheasync.OpenBolt(ctx, bopts("async"), nil)
	add(opened("cacheasync.Bolt", ab, err))
	am, err := cacheasync.OpenMemory(ctx, nil, nil)
	add(opened("cacheasync.Memory", am, err))

	ctxType := reflect.TypeFor[context.Context]()
	for _, s := range stores {
		v := reflect.ValueOf(s.v)
		for i := range v.NumMethod() {
			m := v.Type().Method(i)
			mt := v.Method(i).Type()
			if mt.NumIn() == 0 || mt.In(0) != ctxType {
				continue
			}
			t.Run(s.name+"."+m.Name, func(t *testing.T) {
				checkNilContext(t, v.Method(i))
			})
		}
		if c, ok := s.v.(interface{ Close() error }); ok {
			if err := c.Close(); err != nil {
				t.Errorf("close %s: %v", s.name, err)
			}
		}
	}
	for name, open := range map[string]any{
		"template.OpenBolt": template.OpenBolt, "template.OpenMemory": template.OpenMemory,
		"cache.OpenBolt": cache.OpenBolt, "cache.OpenMemory": cache.OpenMemory,
		"cacheasync.OpenBolt": cacheasync.OpenBolt, "cacheasync.OpenMemory": cacheasync.OpenMemory,
	} {
		t.Run(name, func(t *testing.T) { checkNilContext(t, reflect.ValueOf(open)) })
	}
	t.Run("cacheasync.Future.Await", func(t *testing.T) {
		never := make(chan cacheasync.Result[int])
		if _, err := cacheasync.Future[int](never).Await(nil); !errors.Is(err, model.ErrInvalid) {
			t.Errorf("Await(nil) on a pending future = %v; want ErrInvalid", err)
		}
		if v, err := cacheasync.Ready(7, nil).Await(nil); v != 7 || err != nil {
			t.Errorf("Await(nil) on a ready future = %d, %v; want its result", v, err)
		}
	})
	t.Run("hishel.WithRequestOptions", func(t *testing.T) {
		c := hishel.WithRequestOptions(nil, model.RequestOptions{TTL: time.Minute})
		if c == nil {
			t.Fatal("WithRequestOptions(nil, ...) = nil")
		}
	})
}

// checkNilContext calls fn with a nil context and zero values for its other
// arguments, and checks that it returns (or delivers on its future) an error
// wrapping model.ErrInvalid.
func checkNilContext(t *testing.T, fn reflect.Value) {
	t.Helper()
	ft := fn.Type()
	args := make([]reflect.Value, 0, ft.NumIn())
	for j := range ft.NumIn() {
		at := ft.In(j)
		if ft.IsVariadic() && j == ft.NumIn()-1 {
			break
		}
		if j == 0 {
			args = append(args, reflect.Zero(at)) // the nil context
			continue
		}
		args = append(args, reflect.Zero(at))
	}
	var out []reflect.Value
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("panic with a nil context: %v", p)
			}
		}()
		out = fn.Call(args)
	}()
	err := resultError(t, out)
	if !errors.Is(err, model.ErrInvalid) {
		t.Errorf("with a nil context: error %v; want one wrapping model.ErrInvalid", err)
	}
}

// resultError finds the error among a call's results: the last result if
// it is an error, or the Err of the Result a future delivers.
func resultError(t *testing.T, out []reflect.Value) error {
	t.Helper()
	if len(out) == 0 {
		t.Fatal("no result to carry the error")
	}
	last := out[len(out)-1]
	if last.Type() == reflect.TypeFor[error]() {
		if last.IsNil() {
			return nil
		}
		return last.Interface().(error)
	}
	if last.Kind() == reflect.Chan {
		chosen, r, ok := reflect.Select([]reflect.SelectCase{
			{Dir: reflect.SelectRecv, Chan: last},
			{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(time.After(10 * time.Second))},
		})
		if chosen != 0 || !ok {
			t.Fatal("the future delivered nothing within 10s")
		}
		if e := r.FieldByName("Err"); e.IsValid() && !e.IsNil() {
			return e.Interface().(error)
		}
		return nil
	}
	if seq, ok := last.Interface().(iter.Seq2[model.PairInfo, error]); ok {
		for _, err := range seq {
			if err != nil {
				return err
			}
		}
		return nil
	}
	t.Fatalf("result %v carries no error", last.Type())
	return fmt.Errorf("unreachable")
}
