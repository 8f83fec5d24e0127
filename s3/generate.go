package s3

// The S3 backend is the template in ./template, rendered by gen (a tool of
// this module: see go.mod's tool line) into this package (the blocking
// API) and ./s3async (the async API).
//go:generate go tool gen -template ./template -cache . -async ./s3async
