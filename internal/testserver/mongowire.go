package testserver

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strings"
	"sync/atomic"
)

// bsonDoc is an ordered BSON document. Values: string, int32, int64,
// float64, bool, nil, bsonDoc, []any (an array), []byte (binary),
// [12]byte (an ObjectId); decoding also yields bsonRaw for the types this
// harness only skips.
type bsonDoc []bsonElem

type bsonElem struct {
	Key string
	Val any
}

// bsonRaw is a value of a type this harness does not interpret.
type bsonRaw struct {
	Type byte
	Data []byte
}

// Get returns the value of the first element named key.
func (d bsonDoc) Get(key string) (any, bool) {
	for _, e := range d {
		if e.Key == key {
			return e.Val, true
		}
	}
	return nil, false
}

func (d bsonDoc) marshal() ([]byte, error) {
	return appendDoc(nil, d)
}

func appendDoc(b []byte, d bsonDoc) ([]byte, error) {
	start := len(b)
	b = append(b, 0, 0, 0, 0)
	for _, e := range d {
		var err error
		if b, err = appendElem(b, e.Key, e.Val); err != nil {
			return nil, err
		}
	}
	b = append(b, 0)
	binary.LittleEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b, nil
}

func appendElem(b []byte, key string, v any) ([]byte, error) {
	if strings.IndexByte(key, 0) >= 0 {
		return nil, fmt.Errorf("bson: key %q holds a NUL", key)
	}
	cstr := func(b []byte, t byte) []byte {
		b = append(b, t)
		b = append(b, key...)
		return append(b, 0)
	}
	switch v := v.(type) {
	case float64:
		b = cstr(b, 0x01)
		return binary.LittleEndian.AppendUint64(b, math.Float64bits(v)), nil
	case string:
		b = cstr(b, 0x02)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)+1))
		b = append(b, v...)
		return append(b, 0), nil
	case bsonDoc:
		return appendDoc(cstr(b, 0x03), v)
	case []any:
		arr := make(bsonDoc, len(v))
		for i, x := range v {
			arr[i] = bsonElem{fmt.Sprint(i), x}
		}
		return appendDoc(cstr(b, 0x04), arr)
	case []byte:
		b = cstr(b, 0x05)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, 0) // generic subtype
		return append(b, v...), nil
	case [12]byte:
		return append(cstr(b, 0x07), v[:]...), nil
	case bool:
		if v {
			return append(cstr(b, 0x08), 1), nil
		}
		return append(cstr(b, 0x08), 0), nil
	case nil:
		return cstr(b, 0x0A), nil
	case int32:
		return binary.LittleEndian.AppendUint32(cstr(b, 0x10), uint32(v)), nil
	case int64:
		return binary.LittleEndian.AppendUint64(cstr(b, 0x12), uint64(v)), nil
	}
	return nil, fmt.Errorf("bson: cannot encode %T", v)
}

// maxBSONDepth bounds the nesting of documents and arrays while decoding.
const maxBSONDepth = 100

// unmarshalBSON decodes one document that fills b exactly.
func unmarshalBSON(b []byte) (bsonDoc, error) {
	return decodeDoc(b, 0)
}

func decodeDoc(b []byte, depth int) (bsonDoc, error) {
	if depth > maxBSONDepth {
		return nil, errors.New("bson: nested too deep")
	}
	if len(b) < 5 {
		return nil, errors.New("bson: document shorter than 5 bytes")
	}
	if n := binary.LittleEndian.Uint32(b); uint64(n) != uint64(len(b)) {
		return nil, fmt.Errorf("bson: document says %d bytes, has %d", n, len(b))
	}
	if b[len(b)-1] != 0 {
		return nil, errors.New("bson: document not ended by NUL")
	}
	b = b[4 : len(b)-1]
	var d bsonDoc
	for len(b) > 0 {
		t := b[0]
		end := strings.IndexByte(string(b[1:]), 0)
		if end < 0 {
			return nil, errors.New("bson: key not ended by NUL")
		}
		key := string(b[1 : 1+end])
		b = b[2+end:]
		v, n, err := decodeValue(t, b, depth)
		if err != nil {
			return nil, fmt.Errorf("bson: %q: %w", key, err)
		}
		b = b[n:]
		d = append(d, bsonElem{key, v})
	}
	return d, nil
}

// decodeValue decodes a value of type t at the start of b and says how
// many bytes it took.
func decodeValue(t byte, b []byte, depth int) (any, int, error) {
	need := func(n int) error {
		if n < 0 || n > len(b) {
			return io.ErrUnexpectedEOF
		}
		return nil
	}
	fixed := map[byte]int{0x01: 8, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16, 0x7F: 0, 0xFF: 0}
	if n, ok := fixed[t]; ok {
		if err := need(n); err != nil {
			return nil, 0, err
		}
		switch t {
		case 0x01:
			return math.Float64frombits(binary.LittleEndian.Uint64(b)), 8, nil
		case 0x07:
			return [12]byte(b[:12]), 12, nil
		case 0x08:
			if b[0] > 1 {
				return nil, 0, fmt.Errorf("boolean byte %d", b[0])
			}
			return b[0] == 1, 1, nil
		case 0x0A:
			return nil, 0, nil
		case 0x10:
			return int32(binary.LittleEndian.Uint32(b)), 4, nil
		case 0x12:
			return int64(binary.LittleEndian.Uint64(b)), 8, nil
		}
		return bsonRaw{t, b[:n]}, n, nil
	}
	if err := need(4); err != nil {
		return nil, 0, err
	}
	l := int(int32(binary.LittleEndian.Uint32(b)))
	switch t {
	case 0x02, 0x0D, 0x0E: // string, JavaScript, symbol: int32 length, bytes, NUL
		if l < 1 {
			return nil, 0, fmt.Errorf("string length %d", l)
		}
		if err := need(4 + l); err != nil {
			return nil, 0, err
		}
		if b[4+l-1] != 0 {
			return nil, 0, errors.New("string not ended by NUL")
		}
		if t != 0x02 {
			return bsonRaw{t, b[:4+l]}, 4 + l, nil
		}
		return string(b[4 : 4+l-1]), 4 + l, nil
	case 0x03, 0x04:
		if err := need(l); err != nil {
			return nil, 0, err
		}
		d, err := decodeDoc(b[:l], depth+1)
		if err != nil {
			return nil, 0, err
		}
		if t == 0x03 {
			return d, l, nil
		}
		arr := make([]any, len(d))
		for i, e := range d {
			arr[i] = e.Val
		}
		return arr, l, nil
	case 0x05: // binary: int32 length, subtype, bytes
		if l < 0 {
			return nil, 0, fmt.Errorf("binary length %d", l)
		}
		if err := need(5 + l); err != nil {
			return nil, 0, err
		}
		return append([]byte(nil), b[5:5+l]...), 5 + l, nil
	}
	return nil, 0, fmt.Errorf("type 0x%02x is not supported", t)
}

// mongoConn speaks OP_MSG (MongoDB 3.6+ wire protocol) without
// authentication or compression: enough for readiness, dropping each
// test's database and the smoke test.
type mongoConn struct {
	c net.Conn
	r *bufio.Reader
}

var mongoRequestID atomic.Int32

// maxMongoMessage bounds one reply (MongoDB's own limit is 48 MB).
const maxMongoMessage = 48 << 20

func dialMongo(ctx context.Context, addr string) (*mongoConn, error) {
	nc, err := dialTCP(ctx, addr)
	if err != nil {
		return nil, err
	}
	return &mongoConn{c: nc, r: bufio.NewReader(nc)}, nil
}

func (c *mongoConn) Close() error { return c.c.Close() }

// mongoError is a command reply with ok other than 1.
type mongoError struct {
	Code     int64
	CodeName string
	Message  string
}

func (e *mongoError) Error() string {
	return fmt.Sprintf("mongodb: %s (%d): %s", e.CodeName, e.Code, e.Message)
}

// command runs cmd (its first element names the command; $db is added) on
// database db and returns the reply, or a *mongoError when ok is not 1 or
// the reply lists writeErrors (the first is returned).
func (c *mongoConn) command(db string, cmd bsonDoc) (bsonDoc, error) {
	body, err := append(cmd[:len(cmd):len(cmd)], bsonElem{"$db", db}).marshal()
	if err != nil {
		return nil, err
	}
	id := mongoRequestID.Add(1)
	msg := make([]byte, 16, 16+5+len(body))
	binary.LittleEndian.PutUint32(msg[0:], uint32(16+5+len(body)))
	binary.LittleEndian.PutUint32(msg[4:], uint32(id))
	binary.LittleEndian.PutUint32(msg[12:], 2013) // OP_MSG
	msg = append(msg, 0, 0, 0, 0)                 // flagBits
	msg = append(msg, 0)                          // section kind 0: the body
	msg = append(msg, body...)
	if _, err := c.c.Write(msg); err != nil {
		return nil, err
	}
	var head [16]byte
	if _, err := io.ReadFull(c.r, head[:]); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(head[:])
	if n < 16+5 || n > maxMongoMessage {
		return nil, fmt.Errorf("mongodb: reply length %d", n)
	}
	if op := binary.LittleEndian.Uint32(head[12:]); op != 2013 {
		return nil, fmt.Errorf("mongodb: reply opcode %d, want OP_MSG", op)
	}
	if to := int32(binary.LittleEndian.Uint32(head[8:])); to != id {
		return nil, fmt.Errorf("mongodb: reply to request %d, want %d", to, id)
	}
	rest := make([]byte, n-16)
	if _, err := io.ReadFull(c.r, rest); err != nil {
		return nil, err
	}
	if flags := binary.LittleEndian.Uint32(rest); flags&1 != 0 {
		rest = rest[:len(rest)-4] // checksumPresent: a CRC-32C trails the sections
	}
	if rest[4] != 0 {
		return nil, fmt.Errorf("mongodb: reply section kind %d, want 0", rest[4])
	}
	reply, err := unmarshalBSON(rest[5:])
	if err != nil {
		return nil, err
	}
	ok, _ := reply.Get("ok")
	if num(ok) != 1 {
		e := &mongoError{}
		code, _ := reply.Get("code")
		e.Code = int64(num(code))
		v, _ := reply.Get("codeName")
		e.CodeName, _ = v.(string)
		v, _ = reply.Get("errmsg")
		e.Message, _ = v.(string)
		return reply, e
	}
	if v, ok := reply.Get("writeErrors"); ok {
		if errs, _ := v.([]any); len(errs) > 0 {
			we, _ := errs[0].(bsonDoc)
			code, _ := we.Get("code")
			msg, _ := we.Get("errmsg")
			e := &mongoError{Code: int64(num(code)), CodeName: "writeError"}
			e.Message, _ = msg.(string)
			return reply, e
		}
	}
	return reply, nil
}

// num returns a BSON number as float64 (NaN for anything else).
func num(v any) float64 {
	switch v := v.(type) {
	case float64:
		return v
	case int32:
		return float64(v)
	case int64:
		return float64(v)
	case bool:
		if v {
			return 1
		}
		return 0
	}
	return math.NaN()
}
