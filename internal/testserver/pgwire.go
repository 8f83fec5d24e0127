package testserver

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
)

// pgConn speaks just enough of the PostgreSQL frontend/backend protocol
// (version 3.0, no TLS) for readiness, per-test databases and the smoke
// test: startup with trust, MD5 or SCRAM-SHA-256 authentication, and simple
// queries whose values come back as text.
type pgConn struct {
	c net.Conn
	r *bufio.Reader
}

// pgError is an ErrorResponse from the server.
type pgError struct {
	Severity, Code, Message string
}

func (e *pgError) Error() string {
	return fmt.Sprintf("postgres: %s %s: %s", e.Severity, e.Code, e.Message)
}

// maxPGMessage bounds one message from the server.
const maxPGMessage = 64 << 20

func dialPG(ctx context.Context, addr, user, password, database string) (*pgConn, error) {
	nc, err := dialTCP(ctx, addr)
	if err != nil {
		return nil, err
	}
	c := &pgConn{c: nc, r: bufio.NewReader(nc)}
	if err := c.startup(user, password, database); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func (c *pgConn) Close() error {
	c.send('X', nil)
	return c.c.Close()
}

func (c *pgConn) startup(user, password, database string) error {
	var body []byte
	body = binary.BigEndian.AppendUint32(body, 3<<16) // protocol 3.0
	for _, kv := range [][2]string{{"user", user}, {"database", database}} {
		body = append(body, kv[0]...)
		body = append(body, 0)
		body = append(body, kv[1]...)
		body = append(body, 0)
	}
	body = append(body, 0)
	msg := binary.BigEndian.AppendUint32(nil, uint32(len(body)+4))
	if _, err := c.c.Write(append(msg, body...)); err != nil {
		return err
	}
	var scram *scramClient
	for {
		typ, m, err := c.recv()
		if err != nil {
			return err
		}
		switch typ {
		case 'E':
			return parsePGError(m)
		case 'Z':
			return nil
		case 'R':
			if len(m) < 4 {
				return errors.New("postgres: short authentication message")
			}
			code, data := binary.BigEndian.Uint32(m), m[4:]
			switch code {
			case 0: // AuthenticationOk
			case 5: // MD5Password
				if len(data) != 4 {
					return errors.New("postgres: bad MD5 salt")
				}
				inner := md5.Sum([]byte(password + user))
				outer := md5.Sum(append([]byte(hex.EncodeToString(inner[:])), data...))
				if err := c.send('p', append([]byte("md5"+hex.EncodeToString(outer[:])), 0)); err != nil {
					return err
				}
			case 10: // AuthenticationSASL: a list of mechanisms
				if !strings.Contains(string(data), "SCRAM-SHA-256\x00") {
					return fmt.Errorf("postgres: no SASL mechanism this harness speaks in %q", data)
				}
				scram = newSCRAM(password)
				first := scram.clientFirst()
				var b []byte
				b = append(b, "SCRAM-SHA-256\x00"...)
				b = binary.BigEndian.AppendUint32(b, uint32(len(first)))
				b = append(b, first...)
				if err := c.send('p', b); err != nil {
					return err
				}
			case 11: // AuthenticationSASLContinue
				if scram == nil {
					return errors.New("postgres: SASL continue before SASL")
				}
				final, err := scram.clientFinal(string(data))
				if err != nil {
					return err
				}
				if err := c.send('p', []byte(final)); err != nil {
					return err
				}
			case 12: // AuthenticationSASLFinal
				if scram == nil {
					return errors.New("postgres: SASL final before SASL")
				}
				if err := scram.verifyServer(string(data)); err != nil {
					return err
				}
			default:
				return fmt.Errorf("postgres: authentication method %d is not supported by this harness (use trust, md5 or scram-sha-256)", code)
			}
		}
		// ParameterStatus, BackendKeyData and notices need no answer.
	}
}

// query runs one simple query and returns the rows of its last statement,
// each column as text ("" for NULL).
func (c *pgConn) query(sql string) ([][]string, error) {
	if err := c.send('Q', append([]byte(sql), 0)); err != nil {
		return nil, err
	}
	var rows [][]string
	var firstErr error
	for {
		typ, m, err := c.recv()
		if err != nil {
			return nil, err
		}
		switch typ {
		case 'T':
			rows = nil
		case 'D':
			row, err := parseDataRow(m)
			if err != nil {
				return nil, err
			}
			rows = append(rows, row)
		case 'E':
			if firstErr == nil {
				firstErr = parsePGError(m)
			}
		case 'Z':
			return rows, firstErr
		}
	}
}

func (c *pgConn) send(typ byte, body []byte) error {
	msg := []byte{typ}
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(body)+4))
	_, err := c.c.Write(append(msg, body...))
	return err
}

func (c *pgConn) recv() (byte, []byte, error) {
	var head [5]byte
	if _, err := io.ReadFull(c.r, head[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(head[1:])
	if n < 4 || n > maxPGMessage {
		return 0, nil, fmt.Errorf("postgres: message length %d", n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return 0, nil, err
	}
	return head[0], body, nil
}

func parsePGError(m []byte) error {
	e := &pgError{}
	for len(m) > 0 && m[0] != 0 {
		field := m[0]
		end := strings.IndexByte(string(m[1:]), 0)
		if end < 0 {
			break
		}
		v := string(m[1 : 1+end])
		m = m[2+end:]
		switch field {
		case 'S':
			e.Severity = v
		case 'C':
			e.Code = v
		case 'M':
			e.Message = v
		}
	}
	return e
}

func parseDataRow(m []byte) ([]string, error) {
	if len(m) < 2 {
		return nil, errors.New("postgres: short DataRow")
	}
	n := int(binary.BigEndian.Uint16(m))
	m = m[2:]
	row := make([]string, 0, n)
	for range n {
		if len(m) < 4 {
			return nil, errors.New("postgres: short DataRow")
		}
		l := int32(binary.BigEndian.Uint32(m))
		m = m[4:]
		if l < 0 {
			row = append(row, "")
			continue
		}
		if int(l) > len(m) {
			return nil, errors.New("postgres: DataRow value past its end")
		}
		row = append(row, string(m[:l]))
		m = m[l:]
	}
	return row, nil
}

// pgIdent quotes an SQL identifier.
func pgIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// pgLiteral quotes an SQL string literal (standard_conforming_strings on).
func pgLiteral(s string) string { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }

// scramClient is the client side of SCRAM-SHA-256 (RFC 5802, RFC 7677)
// without channel binding and without SASLprep (ASCII passwords).
type scramClient struct {
	password    string
	nonce       string
	firstBare   string
	authMessage string
	salted      []byte
}

func newSCRAM(password string) *scramClient {
	var b [18]byte
	rand.Read(b[:])
	return &scramClient{password: password, nonce: base64.RawStdEncoding.EncodeToString(b[:])}
}

func (s *scramClient) clientFirst() string {
	// PostgreSQL takes the user from the startup message, not from n=.
	s.firstBare = "n=,r=" + s.nonce
	return "n,," + s.firstBare
}

func (s *scramClient) clientFinal(serverFirst string) (string, error) {
	var nonce, salt64, iters string
	for _, f := range strings.Split(serverFirst, ",") {
		switch {
		case strings.HasPrefix(f, "r="):
			nonce = f[2:]
		case strings.HasPrefix(f, "s="):
			salt64 = f[2:]
		case strings.HasPrefix(f, "i="):
			iters = f[2:]
		}
	}
	if !strings.HasPrefix(nonce, s.nonce) || len(nonce) == len(s.nonce) {
		return "", errors.New("scram: server nonce does not extend ours")
	}
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil {
		return "", fmt.Errorf("scram: salt: %w", err)
	}
	n, err := strconv.Atoi(iters)
	if err != nil || n < 1 || n > 1<<20 {
		return "", fmt.Errorf("scram: iteration count %q", iters)
	}
	s.salted, err = pbkdf2.Key(sha256.New, s.password, salt, n, sha256.Size)
	if err != nil {
		return "", err
	}
	withoutProof := "c=biws,r=" + nonce // biws: base64 of the GS2 header "n,,"
	s.authMessage = s.firstBare + "," + serverFirst + "," + withoutProof
	clientKey := hmacSHA256(s.salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	sig := hmacSHA256(stored[:], s.authMessage)
	proof := make([]byte, len(clientKey))
	for i := range clientKey {
		proof[i] = clientKey[i] ^ sig[i]
	}
	return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof), nil
}

func (s *scramClient) verifyServer(serverFinal string) error {
	v, ok := strings.CutPrefix(serverFinal, "v=")
	if !ok {
		return fmt.Errorf("scram: server final message %q", serverFinal)
	}
	got, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return fmt.Errorf("scram: server signature: %w", err)
	}
	want := hmacSHA256(hmacSHA256(s.salted, "Server Key"), s.authMessage)
	if !hmac.Equal(got, want) {
		return errors.New("scram: the server's signature is wrong")
	}
	return nil
}

func hmacSHA256(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}
