// Package hishel is an RFC 9111 HTTP cache whose storage is a first-class
// API: request/response pairs kept in bbolt, with bodies streamed in and out.
//
// The storage backends are written once in package template and rendered by
// go generate into package cache (blocking calls) and package cacheasync
// (futures); see command gen for the contract a backend follows.
package hishel

//go:generate go run ./gen
