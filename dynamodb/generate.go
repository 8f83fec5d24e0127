package dynamodb

// The DynamoDB backend is the template in ./template, rendered by gen (a
// tool of this module: see go.mod's tool line) into this package (the
// blocking API) and ./dynamodbasync (the async API).
//go:generate go tool gen -template ./template -cache . -async ./dynamodbasync
