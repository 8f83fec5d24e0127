package hishel

import "github.com/hishel-go/hishel/statemachine"

// staleOnErrorStatus is the Cache-Status of a stale response served because
// the origin could not be reached: by the stale-if-error or max-stale the
// response or request allows, or, when neither does, because stale
// responses are allowed for a disconnected cache (Options.Cache.AllowStale,
// RFC 9111 §4.2.4). The request went forward and came back with no
// response, hence fwd=stale and no fwd-status (RFC 9211), never hit.
func staleOnErrorStatus(s *statemachine.ServeStale) string {
	if s.Disconnected {
		return "fwd=stale; detail=stale-if-disconnected"
	}
	return "fwd=stale; detail=stale-if-error"
}
