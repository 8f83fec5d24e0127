package testserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// DynamoDBServer is one test's share of a DynamoDB server.
type DynamoDBServer struct {
	Endpoint  string // http://host:port
	Region    string
	AccessKey string // any non-empty key works with dynalite
	SecretKey string
	// Table is a fresh name for each call (hishel_<12 hex digits>); no
	// table has it yet. Tables named Table, or starting with Table, are
	// deleted when the test ends.
	Table string
}

// DynamoDB returns this test's share of the test binary's DynamoDB server:
// the server HISHEL_TEST_DYNAMODB names, or else dynalite (the version
// versions.env pins, installed into the test server cache by
// scripts/test-servers and run with Node.js) on LevelDB in a temporary
// directory, started on first use on a free 127.0.0.1 port with tables
// ACTIVE at once (no CREATING or DELETING delay).
//
// dynalite implements the item and table operations but not
// TransactWriteItems, TransactGetItems or UpdateTimeToLive, and limits items
// to 400 KB like DynamoDB.
//
// HISHEL_TEST_DYNAMODB is http://host:port, or
// http://ACCESS_KEY:SECRET_KEY@host:port?region=R for a server that checks
// credentials; the credentials may create and delete tables.
//
// The test fails when there is no server, saying how to get one.
func DynamoDB(tb testing.TB) DynamoDBServer {
	tb.Helper()
	srv := dynamoKind.get(tb)
	srv.Table = uniqueName("hishel_")
	tb.Cleanup(func() {
		if err := dynamoDeleteTables(srv); err != nil {
			tb.Logf("testserver: deleting this test's tables: %v", err)
		}
	})
	return srv
}

// OwnDynamoDB starts a dynalite for this test alone, as DynamoDB would (and
// whatever HISHEL_TEST_DYNAMODB says), and stops it when the test ends; the
// Process stops, restarts or pauses it, for tests of an outage.
func OwnDynamoDB(tb testing.TB) (DynamoDBServer, *Process) {
	tb.Helper()
	srv, p := dynamoKind.own(tb)
	srv.Table = uniqueName("hishel_")
	return srv, p
}

var dynamoKind = &kind[DynamoDBServer]{
	env:  "HISHEL_TEST_DYNAMODB",
	form: "http://host:port (or http://ACCESS_KEY:SECRET_KEY@host:port?region=R)",
	fromEnv: func(ctx context.Context, v string) (DynamoDBServer, error) {
		srv, err := parseDynamoEnv(v)
		if err != nil {
			return srv, err
		}
		if err := dynamoCall(ctx, srv, "ListTables", map[string]any{}, nil); err != nil {
			return srv, fmt.Errorf("does not answer: %w", err)
		}
		return srv, nil
	},
	prepare: prepareDynamoDB,
}

func prepareDynamoDB() (launch, func(string) DynamoDBServer, error) {
	ver := version("DYNALITE_VERSION")
	cli, err := cached("dynalite-"+ver, "node_modules", "dynalite", "cli.js")
	if err != nil {
		return launch{}, nil, err
	}
	node, err := lookBin("node", "/usr/bin", "/usr/local/bin")
	if err != nil {
		return launch{}, nil, fmt.Errorf("dynalite needs Node.js: %w", err)
	}
	dir, err := serverDir("dynalite")
	if err != nil {
		return launch{}, nil, err
	}
	srv := DynamoDBServer{Region: "us-east-1", AccessKey: "hishel-test", SecretKey: "hishel-test-secret"}
	l := launch{
		name: "dynalite",
		what: "dynalite " + ver,
		path: node,
		dir:  dir,
		args: func(addr string) []string {
			host, port, _ := net.SplitHostPort(addr)
			return []string{cli, "--host", host, "--port", port, "--path", filepath.Join(dir, "data"),
				"--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0"}
		},
		ready: func(ctx context.Context, addr string) error {
			s := srv
			s.Endpoint = "http://" + addr
			return dynamoCall(ctx, s, "ListTables", map[string]any{}, nil)
		},
	}
	return l, func(addr string) DynamoDBServer {
		s := srv
		s.Endpoint = "http://" + addr
		return s
	}, nil
}

func parseDynamoEnv(s string) (DynamoDBServer, error) {
	u, err := url.Parse(s)
	if err != nil {
		return DynamoDBServer{}, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return DynamoDBServer{}, fmt.Errorf("scheme %q, want http or https", u.Scheme)
	}
	srv := DynamoDBServer{Endpoint: u.Scheme + "://" + u.Host, Region: u.Query().Get("region"),
		AccessKey: "hishel-test", SecretKey: "hishel-test-secret"}
	if u.User != nil {
		srv.AccessKey = u.User.Username()
		srv.SecretKey, _ = u.User.Password()
	}
	if srv.Region == "" {
		srv.Region = "us-east-1"
	}
	return srv, nil
}

// dynamoError is an error reply of the DynamoDB JSON protocol.
type dynamoError struct {
	Status  int
	Type    string // the exception's name, without its namespace
	Message string
}

func (e *dynamoError) Error() string {
	return fmt.Sprintf("dynamodb: %d %s: %s", e.Status, e.Type, e.Message)
}

// dynamoCall calls one operation of the DynamoDB JSON protocol (version
// 2012-08-10) and decodes the result into out (when not nil). An error
// reply is a *dynamoError.
func dynamoCall(ctx context.Context, srv DynamoDBServer, op string, in any, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	h := http.Header{
		"Content-Type": {"application/x-amz-json-1.0"},
		"X-Amz-Target": {"DynamoDB_20120810." + op},
	}
	creds := awsCreds{access: srv.AccessKey, secret: srv.SecretKey, region: srv.Region, service: "dynamodb"}
	resp, b, err := creds.do(ctx, http.MethodPost, srv.Endpoint+"/", h, body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Type     string `json:"__type"`
			Message  string `json:"message"`
			Message2 string `json:"Message"`
		}
		_ = json.Unmarshal(b, &e)
		de := &dynamoError{Status: resp.StatusCode, Type: e.Type, Message: e.Message + e.Message2}
		if i := strings.LastIndexByte(de.Type, '#'); i >= 0 {
			de.Type = de.Type[i+1:]
		}
		if de.Type == "" {
			de.Message = strings.TrimSpace(string(b))
		}
		return de
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// dynamoDeleteTables deletes the tables named srv.Table or starting with it.
func dynamoDeleteTables(srv DynamoDBServer) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var list struct {
		TableNames             []string
		LastEvaluatedTableName string
	}
	in := map[string]any{}
	for {
		list.TableNames, list.LastEvaluatedTableName = nil, ""
		if err := dynamoCall(ctx, srv, "ListTables", in, &list); err != nil {
			return err
		}
		for _, name := range list.TableNames {
			if !strings.HasPrefix(name, srv.Table) {
				continue
			}
			if err := dynamoCall(ctx, srv, "DeleteTable", map[string]any{"TableName": name}, nil); err != nil {
				return err
			}
		}
		if list.LastEvaluatedTableName == "" {
			return nil
		}
		in["ExclusiveStartTableName"] = list.LastEvaluatedTableName
	}
}
