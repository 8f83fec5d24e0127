package hishel

import (
	"net/http"
	"strconv"
	"time"

	"github.com/hishel-go/hishel/statemachine"
)

// missHeader turns the header stored for a miss into the one sent: without
// the state machine's time fields, and with the age the response arrived
// with when it is a second or more (RFC 9111 §4.2.3: a slow origin, or a
// cache on the path); the stored header keeps the origin's Age, from which
// later ages are computed.
func missHeader(h http.Header, st *statemachine.StoreAndUse) {
	delete(h, statemachine.HeaderRequestTime)
	delete(h, statemachine.HeaderResponseTime)
	if st.Age >= time.Second {
		h["Age"] = []string{strconv.FormatInt(int64(min(st.Age/time.Second, time.Duration(statemachine.MaxDelta))), 10)}
	}
}
