package template

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// The store's requests: small wrappers of the SDK's, with the bucket
// filled in and the outcomes the store branches on made errors of its own.
var (
	// errNoObject: the object does not exist (404).
	errNoObject = errors.New("no such object")
	// errPrecondition: a conditional write lost (412): the object changed,
	// or exists when it must not.
	errPrecondition = errors.New("precondition failed")
)

// classify maps a request's error: errNoObject, errPrecondition, or the
// error itself.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusNotFound:
			return fmt.Errorf("%w: %w", errNoObject, err)
		case http.StatusPreconditionFailed:
			return fmt.Errorf("%w: %w", errPrecondition, err)
		}
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return fmt.Errorf("%w: %w", errNoObject, err)
		case "PreconditionFailed", "ConditionalRequestConflict":
			return fmt.Errorf("%w: %w", errPrecondition, err)
		}
	}
	return err
}

// get reads a small object whole, with its ETag.
func (s *S3) get(ctx context.Context, key string) ([]byte, string, error) {
	out, err := s.c.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return nil, "", classify(err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, maxSmallObject+1))
	if err != nil {
		return nil, "", err
	}
	if len(b) > maxSmallObject {
		return nil, "", fmt.Errorf("object %s is over %d bytes", key, maxSmallObject)
	}
	return b, aws.ToString(out.ETag), nil
}

// maxSmallObject bounds what get reads: heads (a few KiB, more with large
// headers) and counters.
const maxSmallObject = 64 << 20

// put writes an object: only if its ETag is ifMatch (when set), or only if
// there is none (when create is set). It returns the new ETag.
func (s *S3) put(ctx context.Context, key string, body io.ReadSeeker, size int64, ifMatch string, create bool) (string, error) {
	in := &s3.PutObjectInput{Bucket: &s.bucket, Key: &key, Body: body, ContentLength: &size}
	if ifMatch != "" {
		in.IfMatch = &ifMatch
	}
	if create {
		in.IfNoneMatch = aws.String("*")
	}
	out, err := s.c.PutObject(ctx, in)
	if err != nil {
		return "", classify(err)
	}
	return aws.ToString(out.ETag), nil
}

func (s *S3) putBytes(ctx context.Context, key string, b []byte, ifMatch string, create bool) (string, error) {
	return s.put(ctx, key, bytes.NewReader(b), int64(len(b)), ifMatch, create)
}

// del deletes an object; a missing one is no error.
func (s *S3) del(ctx context.Context, key string) error {
	_, err := s.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key})
	if err = classify(err); errors.Is(err, errNoObject) {
		return nil
	}
	return err
}

// object is an object as a listing names it.
type object struct {
	key      string
	etag     string // without quotes
	modified time.Time
}

// list calls fn with every object under prefix, in order, until fn
// returns false; page is the listing's page size (0: the server's, 1000).
func (s *S3) list(ctx context.Context, prefix string, page int32, fn func(o object) (bool, error)) error {
	in := &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix}
	if page > 0 {
		in.MaxKeys = &page
	}
	for {
		out, err := s.c.ListObjectsV2(ctx, in)
		if err != nil {
			return classify(err)
		}
		for _, o := range out.Contents {
			more, err := fn(object{key: aws.ToString(o.Key), etag: unquote(aws.ToString(o.ETag)), modified: aws.ToTime(o.LastModified)})
			if err != nil || !more {
				return err
			}
		}
		if !aws.ToBool(out.IsTruncated) || out.NextContinuationToken == nil {
			return nil
		}
		in.ContinuationToken = out.NextContinuationToken
	}
}

// unquote returns an ETag without its quotes, as listings and responses
// are compared.
func unquote(etag string) string { return strings.Trim(etag, `"`) }

// getRange reads bytes [from, to) of an object, and its total size.
func (s *S3) getRange(ctx context.Context, key string, from, to int64) ([]byte, int64, error) {
	rng := fmt.Sprintf("bytes=%d-%d", from, to-1)
	out, err := s.c.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key, Range: &rng})
	if err != nil {
		return nil, 0, classify(err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, to-from))
	if err != nil {
		return nil, 0, err
	}
	total := int64(-1)
	if cr := aws.ToString(out.ContentRange); cr != "" {
		var a, z int64
		if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &a, &z, &total); err != nil || a != from {
			return nil, 0, fmt.Errorf("object %s: Content-Range %q for bytes %d-", key, cr, from)
		}
	} else if from == 0 {
		total = aws.ToInt64(out.ContentLength) // the whole object came
	}
	return b, total, nil
}
