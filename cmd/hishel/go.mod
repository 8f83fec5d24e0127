module github.com/hishel-go/hishel/cmd/hishel

go 1.26.0

require (
	github.com/hishel-go/hishel v0.0.0
	go.etcd.io/bbolt v1.5.0
)

require (
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/sys v0.45.0 // indirect
)

replace github.com/hishel-go/hishel => ../../
