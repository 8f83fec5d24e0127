module github.com/hishel-go/hishel/postgres

go 1.26.0

require (
	github.com/hishel-go/hishel v0.0.0
	github.com/jackc/pgx/v5 v5.13.0
)

require (
	github.com/dave/jennifer v1.7.1 // indirect
	github.com/google/go-cmp v0.7.0 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	go.etcd.io/bbolt v1.5.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/sys v0.45.0 // indirect
	golang.org/x/text v0.41.0 // indirect
)

replace github.com/hishel-go/hishel => ../

tool github.com/hishel-go/hishel/gen
