package cortex

// The cortex/1 codec: bincode 2 with fixed-width little-endian integers, as
// docs/PROTOCOL.md describes and protocol/golden/ pins. Every length a peer sends is
// checked against the bytes that are actually there before anything is allocated.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// FrameBytesMax is the largest frame body, both ways.
const FrameBytesMax = 4 << 20

// headerBytes is the length prefix's size.
const headerBytes = 4

type enc struct{ b []byte }

func (e *enc) u8(v uint8)   { e.b = append(e.b, v) }
func (e *enc) u16(v uint16) { e.b = binary.LittleEndian.AppendUint16(e.b, v) }
func (e *enc) u32(v uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *enc) u64(v uint64) { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *enc) boolean(v bool) {
	if v {
		e.u8(1)
	} else {
		e.u8(0)
	}
}
func (e *enc) bytes(v []byte) { e.u64(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) str(v string)   { e.u64(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) id(v ID)        { e.u64(v.Ms); e.u64(v.Seq) }
func (e *enc) pairs(p Fields) {
	e.u64(uint64(len(p)))
	for _, f := range p {
		e.bytes(f.Key)
		e.bytes(f.Value)
	}
}
func (e *enc) optBytes(v []byte, some bool) {
	if !some {
		e.u8(0)
		return
	}
	e.u8(1)
	e.bytes(v)
}

// optional encodes an Option: 0, or 1 and the value.
func optional[T any](e *enc, v *T, put func(T)) {
	if v == nil {
		e.u8(0)
		return
	}
	e.u8(1)
	put(*v)
}
func (e *enc) optStr(v *string) { optional(e, v, e.str) }
func (e *enc) optU64(v *uint64) { optional(e, v, e.u64) }
func (e *enc) optU32(v *uint32) { optional(e, v, e.u32) }
func (e *enc) optID(v *ID)      { optional(e, v, e.id) }
func (e *enc) u64s(v []uint64) {
	e.u64(uint64(len(v)))
	for _, x := range v {
		e.u64(x)
	}
}

// errShort is a body that ends inside a value.
var errShort = errors.New("frame ends inside a value")

type dec struct {
	b   []byte
	err error
}

func (d *dec) take(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errShort
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}
func (d *dec) u8() uint8 {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}
func (d *dec) u16() uint16 {
	if v := d.take(2); v != nil {
		return binary.LittleEndian.Uint16(v)
	}
	return 0
}
func (d *dec) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}
func (d *dec) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}
func (d *dec) boolean() bool {
	switch d.u8() {
	case 0:
		return false
	case 1:
		return true
	default:
		d.fail("a bool that is neither 0 nor 1")
		return false
	}
}
func (d *dec) fail(format string, a ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, a...)
	}
}

// count reads a length and checks that at least min bytes per item remain.
func (d *dec) count(min uint64) int {
	n := d.u64()
	if d.err != nil {
		return 0
	}
	if min > 0 && n > uint64(len(d.b))/min {
		d.err = errShort
		return 0
	}
	return int(n)
}
func (d *dec) bytes() []byte {
	n := d.u64()
	v := d.take(n)
	if d.err != nil {
		return nil
	}
	return append([]byte{}, v...)
}
func (d *dec) str() string {
	v := d.bytes()
	if d.err == nil && !utf8.Valid(v) {
		d.fail("a string that is not UTF-8")
	}
	return string(v)
}
func (d *dec) id() ID { return ID{Ms: d.u64(), Seq: d.u64()} }
func (d *dec) pairs() Fields {
	n := d.count(16)
	if n == 0 {
		return nil
	}
	p := make(Fields, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		p = append(p, Field{Key: d.bytes(), Value: d.bytes()})
	}
	return p
}
func (d *dec) some() bool {
	switch d.u8() {
	case 0:
		return false
	case 1:
		return true
	default:
		d.fail("an option tag that is neither 0 nor 1")
		return false
	}
}
func (d *dec) optBytes() ([]byte, bool) {
	if !d.some() {
		return nil, false
	}
	return d.bytes(), true
}

// maybe decodes an Option.
func maybe[T any](d *dec, get func() T) *T {
	if !d.some() {
		return nil
	}
	v := get()
	return &v
}
func (d *dec) optStr() *string { return maybe(d, d.str) }
func (d *dec) optU64() *uint64 { return maybe(d, d.u64) }
func (d *dec) optU32() *uint32 { return maybe(d, d.u32) }
func (d *dec) optID() *ID      { return maybe(d, d.id) }
func (d *dec) u64s() []uint64 {
	n := d.count(8)
	if n == 0 {
		return nil
	}
	v := make([]uint64, n)
	for i := range v {
		v[i] = d.u64()
	}
	return v
}
func (d *dec) code() ErrorCode {
	c := d.u32()
	if d.err == nil && c > uint32(CodeInsufficientStorage) {
		d.fail("unknown error code %d", c)
	}
	return ErrorCode(c)
}
func (d *dec) partKind() PartKind {
	k := d.u32()
	if d.err == nil && k > uint32(PartInputRequired) {
		d.fail("unknown part kind %d", k)
	}
	return PartKind(k)
}

// encodeFrame returns the frame with its length prefix.
func encodeFrame(f frame) []byte {
	e := &enc{b: make([]byte, headerBytes, 64)}
	e.u32(f.tag())
	f.encode(e)
	binary.LittleEndian.PutUint32(e.b, uint32(len(e.b)-headerBytes))
	return e.b
}

// decodeFrame decodes one frame body.
func decodeFrame(body []byte) (frame, error) {
	if len(body) > FrameBytesMax {
		return nil, fmt.Errorf("frame of %d bytes is over the limit of %d", len(body), FrameBytesMax)
	}
	d := &dec{b: body}
	tag := d.u32()
	if d.err != nil {
		return nil, fmt.Errorf("malformed frame: %w", d.err)
	}
	var f frame
	switch tag {
	case 0:
		f = &hello{}
	case 1:
		f = &welcome{}
	case 2:
		f = &errorFrame{}
	case 3:
		f = &publishFrame{}
	case 4:
		f = &publishedFrame{}
	case 5:
		f = &subscribeFrame{}
	case 6:
		f = &creditFrame{}
	case 7:
		f = &subscribedFrame{}
	case 8:
		f = &deliveriesFrame{}
	case 9:
		f = &heartbeatFrame{}
	case 10:
		f = &ackFrame{}
	case 11:
		f = &nackFrame{}
	case 12:
		f = &progressFrame{}
	case 13:
		f = &doneFrame{}
	case 14:
		f = &failedFrame{}
	case 15:
		f = &requestFrame{}
	case 16:
		f = &replyPartFrame{}
	case 17:
		f = &respondFrame{}
	case 18:
		f = &rangeFrame{}
	case 19:
		f = &entriesFrame{}
	case 20:
		f = &adminFrame{}
	case 21:
		f = &adminAnswerFrame{}
	case 22:
		f = &canceledFrame{}
	default:
		return nil, fmt.Errorf("malformed frame: unknown frame tag %d", tag)
	}
	f.decode(d)
	if d.err != nil {
		return nil, fmt.Errorf("malformed frame (%s): %w", f.name(), d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("malformed frame (%s): %d bytes after it", f.name(), len(d.b))
	}
	return f, nil
}

// frame is one cortex/1 frame; the tag is its variant index.
type frame interface {
	tag() uint32
	name() string
	encode(*enc)
	decode(*dec)
}

// Limits are the bounds the server enforces, told in Welcome.
type Limits struct {
	FrameBytes       uint32
	Batch            uint32
	Fields           uint32
	Headers          uint32
	NameBytes        uint32
	IDs              uint32
	Window           uint32
	TextBytes        uint32
	TokenBytes       uint32
	RequestTimeoutMs uint32
	RangeCount       uint32
}

func (l *Limits) encode(e *enc) {
	for _, v := range []uint32{l.FrameBytes, l.Batch, l.Fields, l.Headers, l.NameBytes, l.IDs,
		l.Window, l.TextBytes, l.TokenBytes, l.RequestTimeoutMs, l.RangeCount} {
		e.u32(v)
	}
}

func (l *Limits) decode(d *dec) {
	for _, p := range []*uint32{&l.FrameBytes, &l.Batch, &l.Fields, &l.Headers, &l.NameBytes,
		&l.IDs, &l.Window, &l.TextBytes, &l.TokenBytes, &l.RequestTimeoutMs, &l.RangeCount} {
		*p = d.u32()
	}
}

type hello struct {
	Protocol             uint16
	Agent, Token, Client string
}

func (*hello) tag() uint32     { return 0 }
func (*hello) name() string    { return "Hello" }
func (f *hello) encode(e *enc) { e.u16(f.Protocol); e.str(f.Agent); e.str(f.Token); e.str(f.Client) }
func (f *hello) decode(d *dec) {
	f.Protocol, f.Agent, f.Token, f.Client = d.u16(), d.str(), d.str(), d.str()
}

type welcome struct {
	Protocol      uint16
	Server, Agent string
	Limits        Limits
}

func (*welcome) tag() uint32  { return 1 }
func (*welcome) name() string { return "Welcome" }
func (f *welcome) encode(e *enc) {
	e.u16(f.Protocol)
	e.str(f.Server)
	e.str(f.Agent)
	f.Limits.encode(e)
}
func (f *welcome) decode(d *dec) {
	f.Protocol, f.Server, f.Agent = d.u16(), d.str(), d.str()
	f.Limits.decode(d)
}

type errorFrame struct {
	Code    ErrorCode
	Message string
}

func (*errorFrame) tag() uint32     { return 2 }
func (*errorFrame) name() string    { return "Error" }
func (f *errorFrame) encode(e *enc) { e.u32(uint32(f.Code)); e.str(f.Message) }
func (f *errorFrame) decode(d *dec) { f.Code, f.Message = d.code(), d.str() }

type publishFrame struct {
	Stream   []byte
	Messages []Message
}

func (*publishFrame) tag() uint32  { return 3 }
func (*publishFrame) name() string { return "Publish" }
func (f *publishFrame) encode(e *enc) {
	e.bytes(f.Stream)
	e.u64(uint64(len(f.Messages)))
	for i := range f.Messages {
		m := &f.Messages[i]
		e.pairs(m.Fields)
		e.u8(uint8(m.Lane))
		e.optU64(durationMs(m.TTL))
		e.optBytes([]byte(m.Key), m.Key != "")
		e.pairs(m.Headers)
	}
}
func (f *publishFrame) decode(d *dec) {
	f.Stream = d.bytes()
	n := d.count(19)
	for i := 0; i < n && d.err == nil; i++ {
		var m Message
		m.Fields = d.pairs()
		m.Lane = Lane(d.u8())
		if ttl := d.optU64(); ttl != nil {
			m.TTL = msDuration(*ttl)
		}
		if k, ok := d.optBytes(); ok {
			m.Key = string(k)
		}
		m.Headers = d.pairs()
		f.Messages = append(f.Messages, m)
	}
}

// publishResult is one message's outcome on the wire.
type publishResult struct {
	Stored    bool
	ID        ID
	Duplicate bool
	Code      ErrorCode
	Message   string
}

type publishedFrame struct{ Results []publishResult }

func (*publishedFrame) tag() uint32  { return 4 }
func (*publishedFrame) name() string { return "Published" }
func (f *publishedFrame) encode(e *enc) {
	e.u64(uint64(len(f.Results)))
	for _, r := range f.Results {
		if r.Stored {
			e.u32(0)
			e.id(r.ID)
			e.boolean(r.Duplicate)
		} else {
			e.u32(1)
			e.u32(uint32(r.Code))
			e.str(r.Message)
		}
	}
}
func (f *publishedFrame) decode(d *dec) {
	n := d.count(12)
	for i := 0; i < n && d.err == nil; i++ {
		var r publishResult
		switch d.u32() {
		case 0:
			r.Stored = true
			r.ID, r.Duplicate = d.id(), d.boolean()
		case 1:
			r.Code, r.Message = d.code(), d.str()
		default:
			d.fail("unknown publish result")
		}
		f.Results = append(f.Results, r)
	}
}

// start is where a new group starts: 0 New, 1 All, 2 After(ID), 3 Time(ms).
type start struct {
	Kind uint32
	ID   ID
	Ms   uint64
}

type subscribeFrame struct {
	Stream          []byte
	Group, Consumer []byte
	HasGroup        bool
	HasConsumer     bool
	From            start
	Window          uint32
	HeartbeatMs     uint32
	NoAck           bool
}

func (*subscribeFrame) tag() uint32  { return 5 }
func (*subscribeFrame) name() string { return "Subscribe" }
func (f *subscribeFrame) encode(e *enc) {
	e.bytes(f.Stream)
	e.optBytes(f.Group, f.HasGroup)
	e.optBytes(f.Consumer, f.HasConsumer)
	e.u32(f.From.Kind)
	switch f.From.Kind {
	case 2:
		e.id(f.From.ID)
	case 3:
		e.u64(f.From.Ms)
	}
	e.u32(f.Window)
	e.u32(f.HeartbeatMs)
	e.boolean(f.NoAck)
}
func (f *subscribeFrame) decode(d *dec) {
	f.Stream = d.bytes()
	f.Group, f.HasGroup = d.optBytes()
	f.Consumer, f.HasConsumer = d.optBytes()
	f.From.Kind = d.u32()
	switch f.From.Kind {
	case 0, 1:
	case 2:
		f.From.ID = d.id()
	case 3:
		f.From.Ms = d.u64()
	default:
		d.fail("unknown start %d", f.From.Kind)
	}
	f.Window, f.HeartbeatMs, f.NoAck = d.u32(), d.u32(), d.boolean()
}

type creditFrame struct{ Window uint32 }

func (*creditFrame) tag() uint32     { return 6 }
func (*creditFrame) name() string    { return "Credit" }
func (f *creditFrame) encode(e *enc) { e.u32(f.Window) }
func (f *creditFrame) decode(d *dec) { f.Window = d.u32() }

type subscribedFrame struct{ Group, Consumer []byte }

func (*subscribedFrame) tag() uint32     { return 7 }
func (*subscribedFrame) name() string    { return "Subscribed" }
func (f *subscribedFrame) encode(e *enc) { e.bytes(f.Group); e.bytes(f.Consumer) }
func (f *subscribedFrame) decode(d *dec) { f.Group, f.Consumer = d.bytes(), d.bytes() }

// wireDelivery is a delivery as it arrives.
type wireDelivery struct {
	Stream   []byte
	ID       ID
	Fields   Fields
	Lane     Lane
	Attempt  uint32
	Headers  Fields
	Producer []byte
	HasProd  bool
}

type deliveriesFrame struct{ Items []wireDelivery }

func (*deliveriesFrame) tag() uint32  { return 8 }
func (*deliveriesFrame) name() string { return "Deliveries" }
func (f *deliveriesFrame) encode(e *enc) {
	e.u64(uint64(len(f.Items)))
	for _, x := range f.Items {
		e.bytes(x.Stream)
		e.id(x.ID)
		e.pairs(x.Fields)
		e.u8(uint8(x.Lane))
		e.u32(x.Attempt)
		e.pairs(x.Headers)
		e.optBytes(x.Producer, x.HasProd)
	}
}
func (f *deliveriesFrame) decode(d *dec) {
	n := d.count(46)
	for i := 0; i < n && d.err == nil; i++ {
		var x wireDelivery
		x.Stream, x.ID, x.Fields = d.bytes(), d.id(), d.pairs()
		x.Lane, x.Attempt, x.Headers = Lane(d.u8()), d.u32(), d.pairs()
		x.Producer, x.HasProd = d.optBytes()
		f.Items = append(f.Items, x)
	}
}

type heartbeatFrame struct{ InFlight, Window uint32 }

func (*heartbeatFrame) tag() uint32     { return 9 }
func (*heartbeatFrame) name() string    { return "Heartbeat" }
func (f *heartbeatFrame) encode(e *enc) { e.u32(f.InFlight); e.u32(f.Window) }
func (f *heartbeatFrame) decode(d *dec) { f.InFlight, f.Window = d.u32(), d.u32() }

func encodeIDs(e *enc, ids []ID) {
	e.u64(uint64(len(ids)))
	for _, id := range ids {
		e.id(id)
	}
}

func decodeIDs(d *dec) []ID {
	n := d.count(16)
	if n == 0 {
		return nil
	}
	ids := make([]ID, n)
	for i := range ids {
		ids[i] = d.id()
	}
	return ids
}

type ackFrame struct {
	Seq uint64
	IDs []ID
}

func (*ackFrame) tag() uint32     { return 10 }
func (*ackFrame) name() string    { return "Ack" }
func (f *ackFrame) encode(e *enc) { e.u64(f.Seq); encodeIDs(e, f.IDs) }
func (f *ackFrame) decode(d *dec) { f.Seq = d.u64(); f.IDs = decodeIDs(d) }

type nackFrame struct {
	Seq    uint64
	IDs    []ID
	Error  *string
	Reject bool
}

func (*nackFrame) tag() uint32  { return 11 }
func (*nackFrame) name() string { return "Nack" }
func (f *nackFrame) encode(e *enc) {
	e.u64(f.Seq)
	encodeIDs(e, f.IDs)
	e.optStr(f.Error)
	e.boolean(f.Reject)
}
func (f *nackFrame) decode(d *dec) {
	f.Seq = d.u64()
	f.IDs = decodeIDs(d)
	f.Error = d.optStr()
	f.Reject = d.boolean()
}

type progressFrame struct {
	Seq uint64
	IDs []ID
}

func (*progressFrame) tag() uint32     { return 12 }
func (*progressFrame) name() string    { return "Progress" }
func (f *progressFrame) encode(e *enc) { e.u64(f.Seq); encodeIDs(e, f.IDs) }
func (f *progressFrame) decode(d *dec) { f.Seq = d.u64(); f.IDs = decodeIDs(d) }

type doneFrame struct{ Seq, Count uint64 }

func (*doneFrame) tag() uint32     { return 13 }
func (*doneFrame) name() string    { return "Done" }
func (f *doneFrame) encode(e *enc) { e.u64(f.Seq); e.u64(f.Count) }
func (f *doneFrame) decode(d *dec) { f.Seq, f.Count = d.u64(), d.u64() }

type failedFrame struct {
	Seq     uint64
	Code    ErrorCode
	Message string
}

func (*failedFrame) tag() uint32     { return 14 }
func (*failedFrame) name() string    { return "Failed" }
func (f *failedFrame) encode(e *enc) { e.u64(f.Seq); e.u32(uint32(f.Code)); e.str(f.Message) }
func (f *failedFrame) decode(d *dec) { f.Seq, f.Code, f.Message = d.u64(), d.code(), d.str() }

type requestFrame struct {
	Agent     string
	Fields    Fields
	Headers   Fields
	TimeoutMs uint32
	Lane      Lane
}

func (*requestFrame) tag() uint32  { return 15 }
func (*requestFrame) name() string { return "Request" }
func (f *requestFrame) encode(e *enc) {
	e.str(f.Agent)
	e.pairs(f.Fields)
	e.pairs(f.Headers)
	e.u32(f.TimeoutMs)
	e.u8(uint8(f.Lane))
}
func (f *requestFrame) decode(d *dec) {
	f.Agent, f.Fields, f.Headers = d.str(), d.pairs(), d.pairs()
	f.TimeoutMs, f.Lane = d.u32(), Lane(d.u8())
}

type replyPartFrame struct {
	Kind   PartKind
	From   *string
	Fields Fields
}

func (*replyPartFrame) tag() uint32     { return 16 }
func (*replyPartFrame) name() string    { return "ReplyPart" }
func (f *replyPartFrame) encode(e *enc) { e.u32(uint32(f.Kind)); e.optStr(f.From); e.pairs(f.Fields) }
func (f *replyPartFrame) decode(d *dec) {
	f.Kind, f.From, f.Fields = d.partKind(), d.optStr(), d.pairs()
}

type respondFrame struct {
	Correlation []byte
	Kind        PartKind
	Fields      Fields
}

func (*respondFrame) tag() uint32  { return 17 }
func (*respondFrame) name() string { return "Respond" }
func (f *respondFrame) encode(e *enc) {
	e.bytes(f.Correlation)
	e.u32(uint32(f.Kind))
	e.pairs(f.Fields)
}
func (f *respondFrame) decode(d *dec) {
	f.Correlation, f.Kind, f.Fields = d.bytes(), d.partKind(), d.pairs()
}

type rangeFrame struct {
	Stream     []byte
	Start, End ID
	Count      uint32
	Rev        bool
}

func (*rangeFrame) tag() uint32  { return 18 }
func (*rangeFrame) name() string { return "Range" }
func (f *rangeFrame) encode(e *enc) {
	e.bytes(f.Stream)
	e.id(f.Start)
	e.id(f.End)
	e.u32(f.Count)
	e.boolean(f.Rev)
}
func (f *rangeFrame) decode(d *dec) {
	f.Stream, f.Start, f.End, f.Count, f.Rev = d.bytes(), d.id(), d.id(), d.u32(), d.boolean()
}

type entriesFrame struct{ Items []Entry }

func (*entriesFrame) tag() uint32  { return 19 }
func (*entriesFrame) name() string { return "Entries" }
func (f *entriesFrame) encode(e *enc) {
	e.u64(uint64(len(f.Items)))
	for _, x := range f.Items {
		e.id(x.ID)
		e.pairs(x.Fields)
		e.u8(uint8(x.Lane))
		e.pairs(x.Headers)
		e.optBytes([]byte(x.Producer), x.Producer != "")
		e.optU64(x.ExpiresAtMs)
	}
}
func (f *entriesFrame) decode(d *dec) {
	n := d.count(35)
	for i := 0; i < n && d.err == nil; i++ {
		var x Entry
		x.ID, x.Fields, x.Lane, x.Headers = d.id(), d.pairs(), Lane(d.u8()), d.pairs()
		if p, ok := d.optBytes(); ok {
			x.Producer = string(p)
		}
		x.ExpiresAtMs = d.optU64()
		f.Items = append(f.Items, x)
	}
}
