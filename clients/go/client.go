// Package cortex is the Go client of Cortex Bus's agents' front (cortex/1 over QUIC):
// publish, push subscriptions with acks under a credit window, request/reply, and
// serving requests, with reconnect, re-authentication and resubscription built in.
//
// Every call takes a context first. Errors the server answers with are *Error values
// that match the sentinels with errors.Is (ErrNoResponders, ErrTimeout, ErrNoPermission,
// ...); a call whose connection was lost fails with ErrLost.
package cortex

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// Version is this client's version, sent in Hello.
const Version = "0.1.0"

// Options configure a Client.
type Options struct {
	// Servers are the broker's QUIC addresses (host:port); a cluster's nodes, the
	// agent's own host's node first. Required.
	Servers []string
	// ServerName is the name the certificate must carry with TrustCAFile (default
	// "localhost").
	ServerName string
	// Agent and Token identify the agent (any name on a broker without tokens).
	Agent, Token string
	// Trust says which certificates to accept. Required.
	Trust Trust
	// ConnectTimeout bounds the first connection, and how long a call waits for a
	// connection while the client reconnects (default 15 s).
	ConnectTimeout time.Duration
	// Logger gets reconnects and background failures (default: slog.Default()).
	Logger *slog.Logger
}

// Client is a connection to a broker, re-established on loss. It is safe for concurrent
// use; make one per process and share it.
type Client struct {
	opts  Options
	tls   *tls.Config
	quicC *quic.Config
	log   *slog.Logger

	mu      sync.Mutex
	conn    *quic.Conn // nil while reconnecting
	gen     uint64     // connections made so far
	limits  Limits
	changed chan struct{} // closed and replaced on every change of conn
	closed  bool
	node    int

	stop context.CancelFunc
	done chan struct{}
}

// Connect connects to the first server that answers and authenticates.
func Connect(ctx context.Context, opts Options) (*Client, error) {
	if len(opts.Servers) == 0 {
		return nil, errors.New("cortex: no server address")
	}
	if opts.ServerName == "" {
		opts.ServerName = "localhost"
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 15 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	tc, err := opts.Trust.tlsConfig(opts.ServerName)
	if err != nil {
		return nil, err
	}
	c := &Client{
		opts: opts,
		tls:  tc,
		quicC: &quic.Config{
			// A broker that vanished without a stateless reset is noticed within 10 s.
			KeepAlivePeriod:      2 * time.Second,
			MaxIdleTimeout:       10 * time.Second,
			HandshakeIdleTimeout: 5 * time.Second,
		},
		log:     opts.Logger,
		changed: make(chan struct{}),
		done:    make(chan struct{}),
	}
	cctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	defer cancel()
	conn, limits, node, err := c.handshakeAny(cctx, 0)
	if err != nil {
		return nil, err
	}
	c.conn, c.limits, c.node, c.gen = conn, limits, node, 1
	sctx, stop := context.WithCancel(context.Background())
	c.stop = stop
	go c.supervise(sctx)
	return c, nil
}

// Close closes the connection (the server lets go of this client's subscriptions at
// once) and stops reconnecting. Calls in flight fail.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	conn := c.conn
	c.conn = nil
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	c.stop()
	if conn != nil {
		_ = conn.CloseWithError(0, "client closed")
	}
	<-c.done
	return nil
}

// Agent is the agent this client acts as.
func (c *Client) Agent() string { return c.opts.Agent }

// Limits are the limits the server told on the last connection.
func (c *Client) Limits() Limits {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.limits
}

// Connections is how many connections the client has made (1 until the first reconnect).
func (c *Client) Connections() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// nodeConnectMax bounds one node's handshake when there are others to try.
const nodeConnectMax = 2 * time.Second

func (c *Client) handshakeAny(ctx context.Context, first int) (*quic.Conn, Limits, int, error) {
	n := len(c.opts.Servers)
	var last error
	for k := 0; k < n; k++ {
		i := (first + k) % n
		hctx := ctx
		var cancel context.CancelFunc = func() {}
		if n > 1 {
			hctx, cancel = context.WithTimeout(ctx, nodeConnectMax)
		}
		conn, limits, err := c.handshake(hctx, c.opts.Servers[i])
		cancel()
		if err == nil {
			return conn, limits, i, nil
		}
		// Wrong credentials are wrong on every node.
		if errors.Is(err, ErrAuthFailed) || ctx.Err() != nil {
			return nil, Limits{}, 0, err
		}
		last = err
	}
	return nil, Limits{}, 0, last
}

func (c *Client) handshake(ctx context.Context, addr string) (*quic.Conn, Limits, error) {
	conn, err := quic.DialAddr(ctx, addr, c.tls, c.quicC)
	if err != nil {
		return nil, Limits{}, fmt.Errorf("cortex: connect %s: %w", addr, err)
	}
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		_ = conn.CloseWithError(0, "")
		return nil, Limits{}, fmt.Errorf("cortex: connect %s: %w", addr, err)
	}
	stop := context.AfterFunc(ctx, func() { s.CancelRead(0); s.CancelWrite(0) })
	defer stop()
	hello := &hello{Protocol: Protocol, Agent: c.opts.Agent, Token: c.opts.Token,
		Client: "cortex-go " + Version}
	if _, err := s.Write(encodeFrame(hello)); err != nil {
		_ = conn.CloseWithError(0, "")
		return nil, Limits{}, fmt.Errorf("cortex: connect %s: %w", addr, err)
	}
	_ = s.Close()
	f, err := readFrame(s)
	if err != nil {
		_ = conn.CloseWithError(0, "")
		return nil, Limits{}, fmt.Errorf("cortex: connect %s: %w", addr, err)
	}
	finish(s)
	w, ok := f.(*welcome)
	if !ok {
		_ = conn.CloseWithError(0, "")
		return nil, Limits{}, serverError(f)
	}
	return conn, w.Limits, nil
}

// supervise waits for the connection to end, then reconnects with jittered exponential
// backoff (2^n ms, at most 4 s), trying the nodes in turn from the one after the node
// that failed, until the client is closed. Refused credentials retry at the slowest pace.
func (c *Client) supervise(ctx context.Context) {
	defer close(c.done)
	for {
		c.mu.Lock()
		conn := c.conn
		c.mu.Unlock()
		if conn == nil {
			return
		}
		select {
		case <-conn.Context().Done():
		case <-ctx.Done():
			return
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return
		}
		c.conn = nil
		close(c.changed)
		c.changed = make(chan struct{})
		node := c.node
		c.mu.Unlock()
		c.log.Info("cortex: connection lost, reconnecting", "cause", context.Cause(conn.Context()))
		for attempt := 0; ; attempt++ {
			base := min(int64(1)<<min(attempt, 12), 4000)
			wait := time.Duration(base/2+rand.Int64N(base/2+1)) * time.Millisecond
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return
			}
			hctx, cancel := context.WithTimeout(ctx, c.opts.ConnectTimeout)
			nc, limits, i, err := c.handshakeAny(hctx, node+1)
			cancel()
			if err != nil {
				if errors.Is(err, ErrAuthFailed) {
					attempt = 12
				}
				c.log.Debug("cortex: reconnect failed", "err", err)
				continue
			}
			c.mu.Lock()
			if c.closed {
				c.mu.Unlock()
				_ = nc.CloseWithError(0, "client closed")
				return
			}
			c.conn, c.limits, c.node = nc, limits, i
			c.gen++
			close(c.changed)
			c.changed = make(chan struct{})
			c.mu.Unlock()
			c.log.Info("cortex: reconnected", "server", c.opts.Servers[i])
			break
		}
	}
}

// connection returns the live connection, waiting (up to ConnectTimeout) while the client
// reconnects.
func (c *Client) connection(ctx context.Context) (*quic.Conn, uint64, error) {
	timer := time.NewTimer(c.opts.ConnectTimeout)
	defer timer.Stop()
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, 0, ErrClosed
		}
		conn, gen, ch := c.conn, c.gen, c.changed
		c.mu.Unlock()
		if conn != nil && conn.Context().Err() == nil {
			return conn, gen, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-timer.C:
			return nil, 0, fmt.Errorf("%w: no connection to %v within %v", ErrLost,
				c.opts.Servers, c.opts.ConnectTimeout)
		}
	}
}

// open opens a stream on the live connection; ctx's end cancels it both ways.
func (c *Client) open(ctx context.Context) (*quic.Stream, func() bool, error) {
	conn, _, err := c.connection(ctx)
	if err != nil {
		return nil, nil, err
	}
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("%w: %v", ErrLost, err)
	}
	stop := context.AfterFunc(ctx, func() { s.CancelRead(0); s.CancelWrite(0) })
	return s, stop, nil
}

// call sends one frame on its own stream and reads the one answer.
func (c *Client) call(ctx context.Context, f frame) (frame, error) {
	s, stop, err := c.open(ctx)
	if err != nil {
		return nil, err
	}
	defer stop()
	if _, err := s.Write(encodeFrame(f)); err != nil {
		return nil, lost(ctx, err)
	}
	_ = s.Close()
	ans, err := readFrame(s)
	if err != nil {
		return nil, lost(ctx, err)
	}
	finish(s)
	return ans, nil
}

// finish ends the receive side of a stream whose answer was read, as quic-go's contract
// asks (read to io.EOF, or cancel): the FIN normally came with the answer; if it has not,
// the read side is cancelled instead of waited for.
func finish(s *quic.Stream) {
	_ = s.SetReadDeadline(time.Now())
	var b [1]byte
	if _, err := s.Read(b[:]); err != io.EOF {
		s.CancelRead(0)
	}
}

// lost names a failed stream: the context's end, a protocol violation, or ErrLost.
func lost(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, ErrProtocol) {
		return err
	}
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote && ae.ErrorCode == closeShutdown {
		return fmt.Errorf("%w: the server is shutting down", ErrLost)
	}
	return fmt.Errorf("%w: %v", ErrLost, err)
}

// readFrame reads one frame; a length over FrameBytesMax is refused before its body.
func readFrame(r io.Reader) (frame, error) {
	var h [headerBytes]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(h[:])
	if n > FrameBytesMax {
		return nil, fmt.Errorf("%w: a frame of %d bytes is over the limit", ErrProtocol, n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	f, err := decodeFrame(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	return f, nil
}

// Publish publishes one message to stream; it returns once the message is durable.
func (c *Client) Publish(ctx context.Context, stream string, m Message) (Published, error) {
	r, err := c.PublishBatch(ctx, stream, []Message{m})
	if err != nil {
		return Published{}, err
	}
	return r[0].Published, r[0].Err
}

// PublishBatch publishes messages in order in one commit, and returns once the stored
// ones are durable, with one Result per message: its ID, or the error that refused that
// message alone (ErrTooLarge for an entry over the store's limit) while the others were
// stored. The error is a refusal of the whole batch (ErrNoPermission, a full disk,
// ErrLost). When every message has an idempotency key, a lost connection or ErrBusy is
// retried (up to 5 times): the keys make the retry safe.
func (c *Client) PublishBatch(ctx context.Context, stream string, msgs []Message) ([]Result, error) {
	if len(msgs) == 0 {
		return nil, &Error{Code: CodeInvalidArgument, Message: "a publish needs at least one message"}
	}
	retrySafe := true
	for i := range msgs {
		retrySafe = retrySafe && msgs[i].Key != ""
	}
	f := &publishFrame{Stream: []byte(stream), Messages: msgs}
	for attempt := 1; ; attempt++ {
		ans, err := c.call(ctx, f)
		if err == nil {
			p, ok := ans.(*publishedFrame)
			if !ok {
				err = serverError(ans)
			} else if len(p.Results) != len(msgs) {
				return nil, fmt.Errorf("%w: %d results for %d messages", ErrProtocol,
					len(p.Results), len(msgs))
			} else {
				out := make([]Result, len(p.Results))
				for i, r := range p.Results {
					if r.Stored {
						out[i].Published = Published{ID: r.ID, Duplicate: r.Duplicate}
					} else {
						out[i].Err = &Error{Code: r.Code, Message: r.Message}
					}
				}
				return out, nil
			}
		}
		if retrySafe && attempt < 5 && (errors.Is(err, ErrLost) || errors.Is(err, ErrBusy)) {
			c.log.Debug("cortex: publish retried with its idempotency keys", "err", err)
			select {
			case <-time.After(time.Duration(100*attempt) * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			continue
		}
		if errors.Is(err, ErrLost) {
			return nil, fmt.Errorf("%w (the publish may or may not be stored: give messages an idempotency key to make retries safe)", err)
		}
		return nil, err
	}
}

// Range returns up to count entries with IDs in [start, end], oldest first (newest first
// with rev). An answer may hold fewer than asked: read on after its last ID.
func (c *Client) Range(ctx context.Context, stream string, start, end ID, count uint32, rev bool) ([]Entry, error) {
	ans, err := c.call(ctx, &rangeFrame{Stream: []byte(stream), Start: start, End: end,
		Count: count, Rev: rev})
	if err != nil {
		return nil, err
	}
	if e, ok := ans.(*entriesFrame); ok {
		return e.Items, nil
	}
	return nil, serverError(ans)
}

func (c *Client) admin(ctx context.Context, r adminRequest) (*adminAnswer, error) {
	ans, err := c.call(ctx, &adminFrame{Req: r})
	if err != nil {
		return nil, err
	}
	if a, ok := ans.(*adminAnswerFrame); ok {
		return &a.Ans, nil
	}
	return nil, serverError(ans)
}

// Stat returns the streams the agent may consume (stream "" for all, up to 1,000), with
// their groups, pending counts and lag.
func (c *Client) Stat(ctx context.Context, stream string) ([]StreamStat, error) {
	r := adminRequest{Kind: 0}
	if stream != "" {
		r.Stream = &stream
	}
	a, err := c.admin(ctx, r)
	if err != nil {
		return nil, err
	}
	return a.Stats, nil
}

// DeadLetters lists dead letters (admin).
func (c *Client) DeadLetters(ctx context.Context, sel DLQSelect) ([]DeadLetter, error) {
	a, err := c.admin(ctx, adminRequest{Kind: 2, Select: sel})
	if err != nil {
		return nil, err
	}
	return a.DeadLetters, nil
}

// Policy returns a group's delivery policy (nil: plain Redis semantics), changing it
// first when change is given (admin).
func (c *Client) Policy(ctx context.Context, stream, group string, change *PolicyChange) (*Policy, error) {
	a, err := c.admin(ctx, adminRequest{Kind: 1, Stream: &stream, Group: group, Change: change})
	if err != nil {
		return nil, err
	}
	return a.Policy, nil
}
