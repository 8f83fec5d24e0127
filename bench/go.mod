module github.com/hishel-go/hishel/bench

go 1.26.0

require (
	github.com/bartventer/httpcache v0.13.0
	github.com/gomodule/redigo v1.9.3
	github.com/gregjones/httpcache v0.0.0-20190611155906-901d90724c79
	github.com/hishel-go/hishel v0.0.0
	github.com/hishel-go/hishel/redis v0.0.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/golang/snappy v0.0.0-20180518054509-2e65f85255db // indirect
	github.com/google/btree v1.1.3 // indirect
	github.com/peterbourgon/diskv v2.0.1+incompatible // indirect
	github.com/redis/go-redis/v9 v9.23.0 // indirect
	github.com/syndtr/goleveldb v1.0.0 // indirect
	go.etcd.io/bbolt v1.5.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
)

replace github.com/hishel-go/hishel => ../

replace github.com/hishel-go/hishel/redis => ../redis
