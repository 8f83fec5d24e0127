package statemachine

import (
	"net/http"
	"net/textproto"
)

// CDNCacheControl is the targeted cache-control field of RFC 9213 §3, which
// a shared cache obeys unless Options.IgnoreCDNCacheControl is set.
const CDNCacheControl = "Cdn-Cache-Control"

// responseCC returns the cache directives that govern a response for this
// cache and whether any were found: in a shared cache, those of the first
// targeted field with a valid, non-empty value (RFC 9213 §2.1), and then
// targeted reports that Cache-Control and Expires are to be ignored;
// otherwise those of Cache-Control.
func (o *Options) responseCC(h http.Header) (cc CacheControl, present, targeted bool) {
	if o.shared() {
		for _, name := range o.TargetedFields {
			if cc, ok := targetedCC(h[textproto.CanonicalMIMEHeaderKey(name)]); ok {
				return cc, true, true
			}
		}
		if !o.IgnoreCDNCacheControl {
			if cc, ok := targetedCC(h[CDNCacheControl]); ok {
				return cc, true, true
			}
		}
	}
	cc, present = parseHeaderCC(h)
	return cc, present, false
}

// targetedCC reads a targeted field's lines (RFC 9213 §2.1): a Structured
// Fields Dictionary whose members are cache response directives. ok is
// false when the field is absent, empty or not a valid Dictionary: the
// field is then ignored as a whole.
//
// Values of the wrong type are not consumed as their directive defines
// (RFC 9213 §2.1 asks not to): a delta directive (max-age, s-maxage,
// stale-while-revalidate, stale-if-error) that is not a non-negative
// Integer is present but invalid, read as restrictively as an invalid
// Cache-Control argument; no-store, no-cache, private, must-revalidate,
// proxy-revalidate and no-transform count unless their value is the Boolean
// false; public, immutable and must-understand count only as the Boolean
// true. A String argument of no-cache or private lists field names.
// Parameters are ignored; so are unknown directives, and request
// directives such as max-stale.
func targetedCC(lines []string) (CacheControl, bool) {
	if len(lines) == 0 {
		return CacheControl{}, false
	}
	var cc CacheControl
	members := 0
	// A repeated key's last value wins (RFC 8941 §4.2.2): each member sets
	// its directive afresh.
	err := eachSFMember(lines, func(key string, v sfValue) {
		members++
		isFalse := v.kind == sfBoolean && !v.bool
		isTrue := v.kind == sfBoolean && v.bool
		switch key {
		case "max-age":
			cc.MaxAge = sfDelta(&v)
		case "s-maxage":
			cc.SMaxAge = sfDelta(&v)
		case "stale-while-revalidate":
			cc.StaleWhileRevalidate = sfDelta(&v)
		case "stale-if-error":
			cc.StaleIfError = sfDelta(&v)
		case "no-store":
			cc.NoStore = !isFalse
		case "must-revalidate":
			cc.MustRevalidate = !isFalse
		case "proxy-revalidate":
			cc.ProxyRevalidate = !isFalse
		case "no-transform":
			cc.NoTransform = !isFalse
		case "public":
			cc.Public = isTrue
		case "immutable":
			cc.Immutable = isTrue
		case "must-understand":
			cc.MustUnderstand = isTrue
		case "no-cache":
			cc.NoCache, cc.NoCacheFields = sfFieldsDirective(&v)
		case "private":
			cc.Private, cc.PrivateFields = sfFieldsDirective(&v)
		}
	})
	if err != nil || members == 0 {
		return CacheControl{}, false
	}
	return cc, true
}

// sfDelta reads a delta-seconds directive's value: a non-negative Integer,
// clamped at MaxDelta (RFC 9111 §1.2.2); anything else is present but
// invalid.
func sfDelta(v *sfValue) Delta {
	if v.kind != sfInteger || v.num < 0 {
		return Delta{Present: true}
	}
	return Delta{Present: true, Valid: true, Seconds: min(v.num, MaxDelta)}
}

// sfFieldsDirective reads no-cache or private: unqualified (all), qualified
// by a String of field names (fields), or absent (Boolean false).
func sfFieldsDirective(v *sfValue) (all bool, fields []string) {
	switch {
	case v.kind == sfBoolean:
		return v.bool, nil
	case v.kind == sfString:
		if fields, ok := appendFieldNames(nil, v.str, true); ok {
			return false, fields
		}
	}
	return true, nil
}
