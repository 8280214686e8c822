package cortex

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// RequestOptions shape a request; the zero value is usable.
type RequestOptions struct {
	// Timeout for the whole reply (default: the context's deadline, else 30 s).
	Timeout time.Duration
	// Lane of the request in the responder's inbox (default Normal).
	Lane *Lane
	// Headers are extra headers the responder sees.
	Headers Fields
	// TaskID names the request's task (1 to 64 bytes, unique while kept), so Task,
	// WatchTask and CancelTask reach it; empty: the server names it. The ID is also the
	// correlation ID that lets a responder's parts in: make it one nobody can guess.
	TaskID string
}

// Part is one part of a reply.
type Part struct {
	Kind PartKind
	// From is the responding agent, when known.
	From   string
	Fields Fields
}

// Reply is a request in flight: its parts, in order, then the end.
type Reply struct {
	s    *quic.Stream
	stop func() bool
	ctx  context.Context
	done bool
}

// Request sends fields to agent's inbox and returns the reply as it streams back. It
// fails at once with ErrNoResponders when nobody serves agent. Close the Reply to abandon
// the request.
func (c *Client) Request(ctx context.Context, agent string, fields Fields, o RequestOptions) (*Reply, error) {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			timeout = time.Until(dl)
		}
	}
	if timeout < time.Millisecond {
		return nil, ErrTimeout
	}
	lane := Normal
	if o.Lane != nil {
		lane = *o.Lane
	}
	st, stop, err := c.open(ctx)
	if err != nil {
		return nil, err
	}
	headers := o.Headers
	if o.TaskID != "" {
		headers = append(append(Fields(nil), headers...), Field{[]byte(HeaderTaskID), []byte(o.TaskID)})
	}
	f := &requestFrame{Agent: agent, Fields: fields, Headers: headers,
		TimeoutMs: uint32(min(timeout/time.Millisecond, 1<<32-1)), Lane: lane}
	if _, err := st.Write(encodeFrame(f)); err != nil {
		stop()
		return nil, lost(ctx, err)
	}
	_ = st.Close()
	return &Reply{s: st, stop: stop, ctx: ctx}, nil
}

// Next returns the next part; after the last part (Final or Error) it returns ErrDone.
// A responder's Error part is returned as a part (Kind PartError); a server refusal
// (ErrNoResponders, ErrTimeout, ...) as the error.
func (r *Reply) Next() (*Part, error) {
	if r.done {
		return nil, ErrDone
	}
	f, err := readFrame(r.s)
	if err != nil {
		r.Close()
		return nil, lost(r.ctx, err)
	}
	switch x := f.(type) {
	case *replyPartFrame:
		p := &Part{Kind: x.Kind, Fields: x.Fields}
		if x.From != nil {
			p.From = *x.From
		}
		if x.Kind.Ends() {
			r.done = true
			finish(r.s)
			r.stop()
		}
		return p, nil
	default:
		r.Close()
		return nil, serverError(f)
	}
}

// Close abandons the request if it is not complete (the server stops waiting for it).
func (r *Reply) Close() {
	if !r.done {
		r.done = true
		r.s.CancelRead(0)
	}
	r.stop()
}

// ErrDone is returned by Reply.Next after the last part.
var ErrDone = errors.New("cortex: reply complete")

// Ask sends a request and waits for its final part, skipping progress parts. A responder's
// Error part is returned as an error matching ErrReplyFailed (*ReplyError holds its
// fields).
func (c *Client) Ask(ctx context.Context, agent string, fields Fields, o RequestOptions) (Fields, error) {
	r, err := c.Request(ctx, agent, fields, o)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	for {
		p, err := r.Next()
		if err != nil {
			return nil, err
		}
		switch p.Kind {
		case PartFinal:
			return p.Fields, nil
		case PartError:
			return nil, &ReplyError{From: p.From, Fields: p.Fields}
		}
	}
}

// ReplyError is a responder's Error part.
type ReplyError struct {
	From   string
	Fields Fields
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("cortex: %s answered with an error: %v", e.From, e.Fields.Map())
}

// Is makes errors.Is(err, ErrReplyFailed) true.
func (e *ReplyError) Is(target error) bool { return target == ErrReplyFailed }

// Respond sends one part of the reply to a request this agent was delivered (the
// request's correlation header says which). The Final or Error part also acknowledges
// the request in the same commit.
func (c *Client) Respond(ctx context.Context, correlation string, kind PartKind, fields Fields) error {
	ans, err := c.call(ctx, &respondFrame{Correlation: []byte(correlation), Kind: kind, Fields: fields})
	if err != nil {
		return err
	}
	if _, ok := ans.(*doneFrame); ok {
		return nil
	}
	return serverError(ans)
}

// IncomingRequest is a request delivered to a server of this agent.
type IncomingRequest struct {
	*Delivery
	c *Client
}

// From is the requesting agent.
func (r *IncomingRequest) From() string { return r.Producer }

// Correlation is the request's correlation ID.
func (r *IncomingRequest) Correlation() string {
	v, _ := r.Headers.Get(HeaderCorrelation)
	return v
}

// Progress sends a progress part ("working on it"), and extends the request's ack
// deadline.
func (r *IncomingRequest) Progress(ctx context.Context, fields Fields) error {
	if err := r.c.Respond(ctx, r.Correlation(), PartProgress, fields); err != nil {
		return err
	}
	return r.InProgress(ctx)
}

// InputRequired sends an input-required part: the responder needs more input (what, in
// fields) before it goes on; the request's task is input-required until the next part.
func (r *IncomingRequest) InputRequired(ctx context.Context, fields Fields) error {
	if err := r.c.Respond(ctx, r.Correlation(), PartInputRequired, fields); err != nil {
		return err
	}
	return r.InProgress(ctx)
}

// Handler answers one request: the fields of the final part, or an error whose text
// becomes an Error part ({"error": text}); a *ReplyError's fields are sent as they are.
type Handler func(ctx context.Context, r *IncomingRequest) (Fields, error)

// ServeOptions shape Serve.
type ServeOptions struct {
	// Concurrency is how many requests are handled at once (default 16): the
	// subscription's window.
	Concurrency uint32
}

// Serve receives the requests sent to agent (its inbox, shared by every instance of the
// agent through the group cortex-responders; an agent may always serve its own, c.Agent())
// and answers each with handler, until ctx ends (it then returns ctx's error) or the
// subscription fails. A request is acknowledged after its answer is stored; if the process
// dies first, it is delivered again.
func (c *Client) Serve(ctx context.Context, agent string, handler Handler, o ServeOptions) error {
	if o.Concurrency == 0 {
		o.Concurrency = 16
	}
	sub, err := c.Subscribe(ctx, Inbox(agent), SubscribeOptions{
		Group: RespondersGroup, Window: o.Concurrency})
	if err != nil {
		return err
	}
	defer sub.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		d, err := sub.Next(ctx)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.answer(ctx, &IncomingRequest{Delivery: d, c: c}, handler)
		}()
	}
}

func (c *Client) answer(ctx context.Context, r *IncomingRequest, handler Handler) {
	if r.Correlation() == "" {
		// Not a request (someone published to the inbox directly): dead-letter it.
		_ = r.Reject(ctx, errors.New("not a request: no correlation header"))
		return
	}
	out, herr := handler(ctx, r)
	kind, fields := PartFinal, out
	if herr != nil {
		kind = PartError
		var re *ReplyError
		if errors.As(herr, &re) {
			fields = re.Fields
		} else {
			fields = KV("error", herr.Error())
		}
	}
	if len(fields) == 0 {
		fields = KV("ok", "")
	}
	if err := c.Respond(ctx, r.Correlation(), kind, fields); err != nil {
		if errors.Is(err, ErrNotFound) {
			// The request completed or timed out meanwhile: nobody waits for it.
			_ = r.Ack(ctx)
			return
		}
		if ctx.Err() != nil {
			return // Serve is ending: the request stays pending and comes again
		}
		c.log.Warn("cortex: could not answer a request", "id", r.ID, "err", err)
		_ = r.Nack(ctx, err)
		return
	}
	_ = r.Ack(ctx)
}
