package hishel

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
)

// Request fields a stored request head never keeps as the client sent them.
var (
	// hashedFields carry credentials: they are stored as a keyed hash
	// (HMAC-SHA256 under Options.CredentialKey), which is all that Vary
	// matching needs.
	hashedFields = [...]string{"Authorization", "Proxy-Authorization", "Cookie"}
	// droppedFields name the client (its address, its route): they are not
	// stored at all.
	droppedFields = [...]string{"X-Forwarded-For", "Forwarded"}
)

// credentialPrefix starts a hashed credential value as stored.
const credentialPrefix = "hishel-hmac-sha256:"

// newCredentialKey returns a random key for hashing credentials.
func newCredentialKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k) // crypto/rand.Read never fails
	return k
}

// storedHeader returns h as the cache keeps and matches it: credentials
// hashed, client addresses dropped. It returns h itself when there is
// nothing to change, and a copy otherwise.
func (t *Transport) storedHeader(h http.Header) http.Header {
	if h == nil {
		return http.Header{}
	}
	if !hasPrivateFields(h) {
		return h
	}
	out := make(http.Header, len(h))
	for k, vs := range h {
		out[k] = vs
	}
	for _, f := range droppedFields {
		delete(out, f)
	}
	for _, f := range hashedFields {
		if vs, ok := out[f]; ok {
			out[f] = []string{t.hashCredential(f, vs)}
		}
	}
	return out
}

func hasPrivateFields(h http.Header) bool {
	for _, f := range hashedFields {
		if _, ok := h[f]; ok {
			return true
		}
	}
	for _, f := range droppedFields {
		if _, ok := h[f]; ok {
			return true
		}
	}
	return false
}

// hashCredential returns the keyed hash of field's values, as stored: two
// requests get the same value exactly when they sent the same values.
func (t *Transport) hashCredential(field string, values []string) string {
	m := hmac.New(sha256.New, t.credKey)
	m.Write([]byte(field))
	for _, v := range values {
		m.Write([]byte{0})
		m.Write([]byte(v))
	}
	return credentialPrefix + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// restorePrivateFields sets the credential and client fields of h, a header
// built from a stored (hashed) one, to those of orig, the caller's: what
// goes to the origin is what the caller sent.
func restorePrivateFields(h, orig http.Header) {
	for _, f := range hashedFields {
		restoreField(h, orig, f)
	}
	for _, f := range droppedFields {
		restoreField(h, orig, f)
	}
}

func restoreField(h, orig http.Header, f string) {
	if vs, ok := orig[f]; ok {
		h[f] = vs
	} else {
		delete(h, f)
	}
}

// SetCookiePolicy says what the Transport does with a response that carries
// Set-Cookie and that RFC 9111 allows it to store. (A shared cache never
// stores such a response on heuristic freshness: see
// statemachine.Options.Shared.)
type SetCookiePolicy uint8

const (
	// SetCookieStore stores the response, Set-Cookie included, and serves
	// it to every request it matches, as RFC 9111 allows when the origin
	// gave it explicit freshness. It is the default.
	SetCookieStore SetCookiePolicy = iota
	// SetCookieStrip stores the response without its Set-Cookie fields:
	// only the client of the miss gets the cookie; hits, and the
	// followers of a collapsed miss, do not.
	SetCookieStrip
	// SetCookieBypass does not store the response: the client of the miss
	// gets it, and the next request goes to the origin again. It is what
	// nginx and Varnish do by default.
	SetCookieBypass
)

var setCookieNames = [...]string{SetCookieStore: "store", SetCookieStrip: "strip", SetCookieBypass: "bypass"}

// String returns "store", "strip" or "bypass".
func (p SetCookiePolicy) String() string {
	if int(p) < len(setCookieNames) {
		return setCookieNames[p]
	}
	return "SetCookiePolicy(" + strconv.Itoa(int(p)) + ")"
}

// ParseSetCookiePolicy parses "store", "strip" or "bypass".
func ParseSetCookiePolicy(s string) (SetCookiePolicy, error) {
	for p, name := range setCookieNames {
		if s == name {
			return SetCookiePolicy(p), nil
		}
	}
	return 0, fmt.Errorf("hishel: unknown Set-Cookie policy %q: want store, strip or bypass", s)
}
