package hishel_test

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// drivers are the import path prefixes of the database and service
// drivers that backends in packages of their own use. Programs that
// import only package cache, cacheasync or hishel must compile none of
// them (nor database/sql).
var drivers = []string{
	"database/sql",
	"modernc.org/",
	"github.com/ncruces/",
	"github.com/mattn/go-sqlite3",
	"github.com/redis/",
	"github.com/go-redis/",
	"github.com/aws/",
	"github.com/minio/",
	"go.mongodb.org/",
	"github.com/jackc/",
	"github.com/lib/pq",
	"cloud.google.com/",
}

// TestNoDrivers asserts, with go list -deps, what importing the core
// packages compiles: no driver of a backend that lives in a package (or
// module) of its own.
func TestNoDrivers(t *testing.T) {
	pkgs := []string{
		"github.com/hishel-go/hishel",
		"github.com/hishel-go/hishel/cache",
		"github.com/hishel-go/hishel/cacheasync",
	}
	for _, pkg := range pkgs {
		cmd := exec.Command("go", "list", "-deps", pkg)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, stderr.Bytes())
		}
		deps := strings.Fields(string(out))
		if len(deps) < 10 {
			t.Fatalf("go list -deps %s listed %d packages; want its whole dependency graph", pkg, len(deps))
		}
		for _, d := range deps {
			for _, drv := range drivers {
				if strings.HasPrefix(d, drv) {
					t.Errorf("importing %s compiles %s; drivers belong in their backend's own package", pkg, d)
				}
			}
		}
	}
}
