package hishel

import (
	"net/http"
	"strconv"
	"testing"
)

func TestStatusLine(t *testing.T) {
	for _, code := range []int{200, 206, 304, 404, 504, 299} {
		want := strconv.Itoa(code) + " " + http.StatusText(code)
		if got := statusLine(code); got != want {
			t.Errorf("statusLine(%d) = %q; want %q", code, got, want)
		}
	}
}
