package testserver

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// S3Server is one test's bucket on an S3 server. Clients address it
// path-style (Endpoint/Bucket/key) with SigV4 credentials.
type S3Server struct {
	Endpoint  string // http://host:port
	Region    string
	AccessKey string
	SecretKey string
	// Bucket is created empty for each call (hishel-<12 hex digits>); its
	// objects, unfinished multipart uploads and itself are deleted when
	// the test ends.
	Bucket string
}

// S3 returns a fresh bucket for this test on the test binary's S3 server:
// the server HISHEL_TEST_S3 names, or else versitygw (the version
// versions.env pins, built into the test server cache by
// scripts/test-servers) on a posix directory, started on first use on a free
// 127.0.0.1 port.
//
// HISHEL_TEST_S3 is http://ACCESS_KEY:SECRET_KEY@host:port, with ?region=R
// when the region is not us-east-1; the credentials may create and delete
// buckets.
//
// The test fails when there is no server, saying how to get one.
func S3(tb testing.TB) S3Server {
	tb.Helper()
	return s3Bucket(tb, s3Kind.get(tb), true)
}

// OwnS3 starts a versitygw for this test alone, as S3 would (and whatever
// HISHEL_TEST_S3 says), with a fresh bucket on it, and stops it when the
// test ends; the Process stops, restarts or pauses it, for tests of an
// outage.
func OwnS3(tb testing.TB) (S3Server, *Process) {
	tb.Helper()
	srv, p := s3Kind.own(tb)
	return s3Bucket(tb, srv, false), p
}

// s3Bucket creates a fresh bucket on srv and, if remove is set, removes it
// with its contents when tb ends.
func s3Bucket(tb testing.TB, srv S3Server, remove bool) S3Server {
	tb.Helper()
	srv.Bucket = uniqueName("hishel-")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s3Do(ctx, srv, http.MethodPut, srv.Bucket, nil, nil, http.StatusOK); err != nil {
		tb.Fatalf("testserver: creating this test's bucket: %v", err)
	}
	if remove {
		tb.Cleanup(func() {
			if err := s3DeleteBucket(srv); err != nil {
				tb.Logf("testserver: deleting this test's bucket: %v", err)
			}
		})
	}
	return srv
}

var s3Kind = &kind[S3Server]{
	env:  "HISHEL_TEST_S3",
	form: "http://ACCESS_KEY:SECRET_KEY@host:port[?region=us-east-1]",
	fromEnv: func(ctx context.Context, v string) (S3Server, error) {
		srv, err := parseS3Env(v)
		if err != nil {
			return srv, err
		}
		if err := s3Do(ctx, srv, http.MethodGet, "", nil, nil, http.StatusOK); err != nil {
			return srv, fmt.Errorf("does not answer: %w", err)
		}
		return srv, nil
	},
	prepare: prepareS3,
}

// Credentials of the root user of a versitygw the harness starts.
const (
	versitygwAccess = "hishel-test"
	versitygwSecret = "hishel-test-secret"
)

func prepareS3() (launch, func(string) S3Server, error) {
	ver := version("VERSITYGW_VERSION")
	bin, err := cached("versitygw-"+ver, "versitygw")
	if err != nil {
		return launch{}, nil, err
	}
	dir, err := serverDir("versitygw")
	if err != nil {
		return launch{}, nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		return launch{}, nil, err
	}
	srv := S3Server{Region: "us-east-1", AccessKey: versitygwAccess, SecretKey: versitygwSecret}
	l := launch{
		name: "versitygw",
		what: "versitygw " + ver,
		path: bin,
		dir:  dir,
		args: func(addr string) []string {
			return []string{"--port", addr, "--access", srv.AccessKey, "--secret", srv.SecretKey, "--region", srv.Region, "posix", data}
		},
		env: []string{}, // none of ours: versitygw reads its settings from VGW_* and ROOT_* variables too
		ready: func(ctx context.Context, addr string) error {
			s := srv
			s.Endpoint = "http://" + addr
			return s3Do(ctx, s, http.MethodGet, "", nil, nil, http.StatusOK)
		},
	}
	return l, func(addr string) S3Server {
		s := srv
		s.Endpoint = "http://" + addr
		return s
	}, nil
}

func parseS3Env(s string) (S3Server, error) {
	u, err := url.Parse(s)
	if err != nil {
		return S3Server{}, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return S3Server{}, fmt.Errorf("scheme %q, want http or https", u.Scheme)
	}
	if u.User == nil {
		return S3Server{}, errors.New("no ACCESS_KEY:SECRET_KEY@ in the URL")
	}
	srv := S3Server{Endpoint: u.Scheme + "://" + u.Host, Region: u.Query().Get("region"), AccessKey: u.User.Username()}
	srv.SecretKey, _ = u.User.Password()
	if srv.Region == "" {
		srv.Region = "us-east-1"
	}
	return srv, nil
}

// s3Do sends a signed request for path (bucket or bucket/key, unescaped;
// "" for the service) with query, and fails unless the status is want.
func s3Do(ctx context.Context, srv S3Server, method, path string, query url.Values, body []byte, want int) error {
	_, _, err := s3Request(ctx, srv, method, path, query, nil, body, want)
	return err
}

func s3Request(ctx context.Context, srv S3Server, method, path string, query url.Values, header http.Header, body []byte, want int) (*http.Response, []byte, error) {
	u := srv.Endpoint + "/" + escapePath(path)
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	creds := awsCreds{access: srv.AccessKey, secret: srv.SecretKey, region: srv.Region, service: "s3"}
	resp, b, err := creds.do(ctx, method, u, header, body)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != want {
		return resp, b, fmt.Errorf("%s /%s: status %d, want %d: %s", method, path, resp.StatusCode, want, strings.TrimSpace(string(b)))
	}
	return resp, b, nil
}

// escapePath escapes each /-separated segment of an S3 path.
func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = awsEscape(s)
	}
	return strings.Join(segs, "/")
}

// s3DeleteBucket deletes the test's bucket with everything in it.
func s3DeleteBucket(srv S3Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var list struct {
		Contents []struct {
			Key string
		}
		IsTruncated           bool
		NextContinuationToken string
	}
	q := url.Values{"list-type": {"2"}}
	for {
		_, b, err := s3Request(ctx, srv, http.MethodGet, srv.Bucket, q, nil, nil, http.StatusOK)
		if err != nil {
			return err
		}
		list.Contents, list.IsTruncated, list.NextContinuationToken = nil, false, ""
		if err := xml.Unmarshal(b, &list); err != nil {
			return fmt.Errorf("ListObjectsV2: %w", err)
		}
		for _, o := range list.Contents {
			if err := s3Do(ctx, srv, http.MethodDelete, srv.Bucket+"/"+o.Key, nil, nil, http.StatusNoContent); err != nil {
				return err
			}
		}
		if !list.IsTruncated {
			break
		}
		q.Set("continuation-token", list.NextContinuationToken)
	}
	var uploads struct {
		Upload []struct {
			Key      string
			UploadId string
		}
	}
	_, b, err := s3Request(ctx, srv, http.MethodGet, srv.Bucket, url.Values{"uploads": {""}}, nil, nil, http.StatusOK)
	if err != nil {
		return err
	}
	if err := xml.Unmarshal(b, &uploads); err != nil {
		return fmt.Errorf("ListMultipartUploads: %w", err)
	}
	for _, up := range uploads.Upload {
		if err := s3Do(ctx, srv, http.MethodDelete, srv.Bucket+"/"+up.Key, url.Values{"uploadId": {up.UploadId}}, nil, http.StatusNoContent); err != nil {
			return err
		}
	}
	return s3Do(ctx, srv, http.MethodDelete, srv.Bucket, nil, nil, http.StatusNoContent)
}
