package main

// The backends that live in modules of their own (their drivers with them)
// register their URL schemes with cache.Open when imported. hishel imports
// every one that the repository ships, here, so that -store opens any of
// them; each also has a require and a replace line in this module's go.mod.
// Bolt and Memory are in package cache itself.

import (
	_ "github.com/hishel-go/hishel/dynamodb" // dynamodb://
	_ "github.com/hishel-go/hishel/mongodb"  // mongodb://
	_ "github.com/hishel-go/hishel/postgres" // postgres://
	_ "github.com/hishel-go/hishel/redis"    // redis://
	_ "github.com/hishel-go/hishel/s3"       // s3://
	_ "github.com/hishel-go/hishel/sqlite"   // sqlite://
)
