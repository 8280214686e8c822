package cortex

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Protocol is the protocol version this client speaks.
const Protocol uint16 = 1

// ALPN is the TLS application protocol of the agents' front.
const ALPN = "cortex/1"

// Names the protocol fixes (protocol/src/names.rs).
const (
	InboxPrefix     = "cortex:inbox:"
	RepliesPrefix   = "cortex:replies:"
	DLQ             = "cortex:dlq"
	RespondersGroup = "cortex-responders"
	// HeaderCorrelation is a request's correlation ID; a responder echoes it.
	HeaderCorrelation = "cortex-correlation-id"
	HeaderReplyTo     = "cortex-reply-to"
	HeaderDeadline    = "cortex-deadline-ms"
	HeaderPart        = "cortex-part"
	// HeaderDeliverAt schedules a message: groups receive it from this Unix ms on.
	HeaderDeliverAt = "cortex-deliver-at-ms"
	// HeaderOnCancel of a task: "dlq" keeps it in the dead-letter stream when it is
	// canceled before a worker took it (NewTask.DeadLetterOnCancel sets it).
	HeaderOnCancel = "cortex-on-cancel"
	// HeaderDelay schedules a message this many ms after the server stores it.
	HeaderDelay = "cortex-delay-ms"
	// HeaderTaskID makes a message a task, named by it (RequestOptions.TaskID sets it on
	// a request).
	HeaderTaskID = "cortex-task-id"
	// HeaderTaskKeep is how long a task is kept once finished, ms (at most the server's
	// task_keep_ms; a request's default is 10 minutes).
	HeaderTaskKeep = "cortex-task-keep-ms"
	// Heartbeat interval on a quiet subscription when none is asked for.
	defaultHeartbeat = 5 * time.Second
	minHeartbeat     = 100 * time.Millisecond
	// QUIC application close codes the server uses.
	closeAuth     = 1
	closeShutdown = 2
)

// Inbox is the stream requests to agent are appended to.
func Inbox(agent string) string { return InboxPrefix + agent }

// ID is a stream entry ID: milliseconds and sequence, as Redis's ms-seq.
type ID struct{ Ms, Seq uint64 }

func (id ID) String() string { return fmt.Sprintf("%d-%d", id.Ms, id.Seq) }

// ParseID reads "ms-seq" (or "ms", sequence 0).
func ParseID(s string) (ID, error) {
	ms, seq, found := strings.Cut(s, "-")
	m, err := strconv.ParseUint(ms, 10, 64)
	if err != nil {
		return ID{}, fmt.Errorf("bad ID %q", s)
	}
	var q uint64
	if found {
		if q, err = strconv.ParseUint(seq, 10, 64); err != nil {
			return ID{}, fmt.Errorf("bad ID %q", s)
		}
	}
	return ID{m, q}, nil
}

// Field is one field/value (or header) pair; both are binary-safe.
type Field struct{ Key, Value []byte }

// Fields are ordered pairs: a message's body, or its headers.
type Fields []Field

// KV builds Fields from alternating keys and values: KV("task", "review", "pr", "42").
// An odd count panics: it is a programming error.
func KV(kv ...string) Fields {
	if len(kv)%2 != 0 {
		panic("cortex.KV needs pairs")
	}
	f := make(Fields, 0, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		f = append(f, Field{[]byte(kv[i]), []byte(kv[i+1])})
	}
	return f
}

// Get returns the first value of key.
func (f Fields) Get(key string) (string, bool) {
	for _, p := range f {
		if string(p.Key) == key {
			return string(p.Value), true
		}
	}
	return "", false
}

// Map returns the fields as a map (a later duplicate key wins).
func (f Fields) Map() map[string]string {
	m := make(map[string]string, len(f))
	for _, p := range f {
		m[string(p.Key)] = string(p.Value)
	}
	return m
}

// Lane is a priority lane; lower is delivered first.
type Lane uint8

// The five lanes.
const (
	Critical  Lane = 0
	High      Lane = 1
	Normal    Lane = 2
	Low       Lane = 3
	Heartbeat Lane = 4
)

func (l Lane) String() string {
	switch l {
	case Critical:
		return "critical"
	case High:
		return "high"
	case Normal:
		return "normal"
	case Low:
		return "low"
	case Heartbeat:
		return "heartbeat"
	}
	return fmt.Sprintf("lane(%d)", uint8(l))
}

// Message is a message to publish. The zero Lane is Critical: set Lane (Normal is the
// usual one); NewMessage does.
type Message struct {
	Fields Fields
	Lane   Lane
	// TTL from now; 0: none.
	TTL time.Duration
	// Key is the idempotency key: a repeat within the server's window returns the first
	// ID, and makes a publish safe to retry after a lost connection. Empty: none.
	Key     string
	Headers Fields
}

// NewMessage is a Normal-lane message with these fields.
func NewMessage(fields Fields) Message { return Message{Fields: fields, Lane: Normal} }

// DeliverAt schedules the message: it is stored at once, and groups receive it from t on,
// in lane order. A time not ahead of the server's clock is no schedule.
func (m Message) DeliverAt(t time.Time) Message {
	m.Headers = append(append(Fields(nil), m.Headers...),
		Field{[]byte(HeaderDeliverAt), []byte(strconv.FormatInt(t.UnixMilli(), 10))})
	return m
}

// Delay schedules the message d after the server stores it (whole milliseconds).
func (m Message) Delay(d time.Duration) Message {
	m.Headers = append(append(Fields(nil), m.Headers...),
		Field{[]byte(HeaderDelay), []byte(strconv.FormatInt(d.Milliseconds(), 10))})
	return m
}

// Published is a stored message.
type Published struct {
	ID ID
	// Duplicate is true when the idempotency key matched an earlier publish.
	Duplicate bool
}

// Result is one message's outcome in PublishBatch: stored, or refused alone.
type Result struct {
	Published
	// Err is why this message alone was not stored (the others were); nil when stored.
	Err error
}

// Entry is an entry of a range read.
type Entry struct {
	ID          ID
	Fields      Fields
	Lane        Lane
	Headers     Fields
	Producer    string
	ExpiresAtMs *uint64
}

// PartKind is a reply part's kind.
type PartKind uint32

// Reply part kinds.
const (
	PartProgress PartKind = 0
	PartFinal    PartKind = 1
	PartError    PartKind = 2
	// PartInputRequired: the responder needs more input; more parts follow (its task is
	// input-required until the next part).
	PartInputRequired PartKind = 3
)

// Ends tells whether a part is a reply's last (Final or Error).
func (k PartKind) Ends() bool { return k == PartFinal || k == PartError }

func (k PartKind) String() string {
	switch k {
	case PartProgress:
		return "progress"
	case PartFinal:
		return "final"
	case PartError:
		return "error"
	case PartInputRequired:
		return "input-required"
	}
	return fmt.Sprintf("part(%d)", uint32(k))
}

func durationMs(d time.Duration) *uint64 {
	if d <= 0 {
		return nil
	}
	ms := uint64((d + time.Millisecond - 1) / time.Millisecond)
	return &ms
}

func msDuration(ms uint64) time.Duration { return time.Duration(ms) * time.Millisecond }

// ErrorCode is a server error code.
type ErrorCode uint32

// The server's error codes.
const (
	CodeBadFrame ErrorCode = iota
	CodeUnsupportedVersion
	CodeNotAuthenticated
	CodeAuthFailed
	CodeNoPermission
	CodeInvalidArgument
	CodeNotFound
	CodeTooLarge
	CodeBusy
	CodeShuttingDown
	CodeNoResponders
	CodeTimeout
	CodeConflict
	CodeInternal
	CodeInsufficientStorage
)

var codeNames = [...]string{"BadFrame", "UnsupportedVersion", "NotAuthenticated", "AuthFailed",
	"NoPermission", "InvalidArgument", "NotFound", "TooLarge", "Busy", "ShuttingDown",
	"NoResponders", "Timeout", "Conflict", "Internal", "InsufficientStorage"}

func (c ErrorCode) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("code(%d)", uint32(c))
}

// Sentinel errors, one per server code, for errors.Is.
var (
	ErrBadFrame            = &Error{Code: CodeBadFrame}
	ErrUnsupportedVersion  = &Error{Code: CodeUnsupportedVersion}
	ErrNotAuthenticated    = &Error{Code: CodeNotAuthenticated}
	ErrAuthFailed          = &Error{Code: CodeAuthFailed}
	ErrNoPermission        = &Error{Code: CodeNoPermission}
	ErrInvalidArgument     = &Error{Code: CodeInvalidArgument}
	ErrNotFound            = &Error{Code: CodeNotFound}
	ErrTooLarge            = &Error{Code: CodeTooLarge}
	ErrBusy                = &Error{Code: CodeBusy}
	ErrShuttingDown        = &Error{Code: CodeShuttingDown}
	ErrNoResponders        = &Error{Code: CodeNoResponders}
	ErrTimeout             = &Error{Code: CodeTimeout}
	ErrConflict            = &Error{Code: CodeConflict}
	ErrInternal            = &Error{Code: CodeInternal}
	ErrInsufficientStorage = &Error{Code: CodeInsufficientStorage}
)

// Client-side errors.
var (
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("cortex: client closed")
	// ErrLost: the connection was lost while a call was in flight; its outcome is unknown
	// (a publish without idempotency keys may or may not be stored).
	ErrLost = errors.New("cortex: connection lost")
	// ErrProtocol: the server sent something this client does not understand.
	ErrProtocol = errors.New("cortex: protocol error")
	// ErrReplyFailed: the responder answered with an Error part.
	ErrReplyFailed = errors.New("cortex: the responder failed")
)

// Error is an error the server answered with.
type Error struct {
	Code    ErrorCode
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "cortex: " + e.Code.String()
	}
	return fmt.Sprintf("cortex: %s: %s", e.Code, e.Message)
}

// Is matches any *Error with the same code, so errors.Is(err, cortex.ErrNoResponders)
// works whatever the message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

func serverError(f frame) error {
	switch x := f.(type) {
	case *errorFrame:
		return &Error{Code: x.Code, Message: x.Message}
	case *failedFrame:
		return &Error{Code: x.Code, Message: x.Message}
	}
	return fmt.Errorf("%w: unexpected %s frame", ErrProtocol, f.name())
}
