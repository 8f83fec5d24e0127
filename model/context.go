package model

import (
	"context"
	"fmt"
)

// CheckContext returns an error wrapping [ErrInvalid] when ctx is nil, and
// ctx.Err() otherwise. Every storage operation calls it (or does the same)
// before it uses ctx, so that a nil context is a clear error and never a
// panic.
func CheckContext(ctx context.Context) error {
	if ctx == nil {
		return errNilContext
	}
	return ctx.Err()
}

var errNilContext = fmt.Errorf("hishel: nil context.Context (use context.Background()): %w", ErrInvalid)
