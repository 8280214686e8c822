package cortex

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// Start is where a subscription's group starts when the subscription creates it.
type Start struct{ s start }

// StartNew starts at entries published from now on (the default).
func StartNew() Start { return Start{start{Kind: 0}} }

// StartAll starts at the stream's first entry.
func StartAll() Start { return Start{start{Kind: 1}} }

// StartAfter starts after this ID.
func StartAfter(id ID) Start { return Start{start{Kind: 2, ID: id}} }

// StartAt starts at entries published at or after t.
func StartAt(t time.Time) Start { return Start{start{Kind: 3, Ms: uint64(t.UnixMilli())}} }

// SubscribeOptions shape a subscription; the zero value is usable.
type SubscribeOptions struct {
	// Group (default: the agent's name, so each agent sees everything: a broadcast).
	Group string
	// Consumer (default: the agent's name).
	Consumer string
	// From is where a group this subscription creates starts (default StartNew).
	From Start
	// Window is the most deliveries in flight, not yet acked (default 100).
	Window uint32
	// Heartbeat is the server's heartbeat on a quiet subscription (default 5 s); three
	// missed heartbeats count as a lost subscription, which is then resumed.
	Heartbeat time.Duration
	// NoAck: deliveries need no ack (nothing pending, nothing retried).
	NoAck bool
}

// Delivery is one pushed entry. Ack, Nack, Reject or InProgress it on the subscription
// that delivered it (they are answered once applied).
type Delivery struct {
	Stream string
	ID     ID
	Fields Fields
	Lane   Lane
	// Attempt counts how many times the group handed the entry out (1 the first time).
	Attempt  uint32
	Headers  Fields
	Producer string
	// CanceledTask, when set, makes this no message but a signal: the task it names, which
	// this consumer holds (entry ID), was canceled; stop working on it. It comes before
	// any message sent after the cancel. The entry is no longer pending: an Ack of it is
	// harmless, a reply is kept and marked late.
	CanceledTask string
	sub          *Subscription
}

// Ack acknowledges the delivery: it will not be delivered again.
func (d *Delivery) Ack(ctx context.Context) error {
	return d.sub.control(ctx, ctlAck, []ID{d.ID}, nil, false)
}

// Nack fails the delivery: it is retried after the group's backoff, or dead-lettered
// after its last attempt. cause (may be nil) is kept with the entry.
func (d *Delivery) Nack(ctx context.Context, cause error) error {
	var text *string
	if cause != nil {
		s := cause.Error()
		text = &s
	}
	return d.sub.control(ctx, ctlNack, []ID{d.ID}, text, false)
}

// Reject dead-letters the delivery at once (reason "rejected").
func (d *Delivery) Reject(ctx context.Context, cause error) error {
	var text *string
	if cause != nil {
		s := cause.Error()
		text = &s
	}
	return d.sub.control(ctx, ctlNack, []ID{d.ID}, text, true)
}

// InProgress says the agent still works on it: its ack deadline starts again.
func (d *Delivery) InProgress(ctx context.Context) error {
	return d.sub.control(ctx, ctlProgress, []ID{d.ID}, nil, false)
}

type ctlKind int

const (
	ctlAck ctlKind = iota
	ctlNack
	ctlProgress
)

// pendingCtl is an ack, nack or in-progress not yet answered.
type pendingCtl struct {
	frame frame
	kind  ctlKind
	done  chan error
}

// Subscription is a push subscription. It survives reconnects: on a new connection it
// subscribes again (the broker delivers the consumer's unacknowledged entries first),
// re-sends acks and in-progress not yet answered, and fails unanswered nacks with ErrLost
// (a nack may have counted already).
type Subscription struct {
	c    *Client
	sub  subscribeFrame
	hb   time.Duration
	out  chan *Delivery
	ctx  context.Context
	stop context.CancelFunc

	mu      sync.Mutex
	stream  *quic.Stream // nil between streams
	writeMu sync.Mutex
	seq     uint64
	waiting map[uint64]*pendingCtl
	queue   []*Delivery
	wake    chan struct{}
	err     error
	group   string
	cons    string
	ended   chan struct{}
}

// Subscribe opens a push subscription on stream. It returns once the server confirmed
// it; deliveries then arrive on C (or through Next / All).
func (c *Client) Subscribe(ctx context.Context, stream string, o SubscribeOptions) (*Subscription, error) {
	if o.Window == 0 {
		o.Window = 100
	}
	f := subscribeFrame{Stream: []byte(stream), From: o.From.s, Window: o.Window,
		NoAck: o.NoAck}
	if o.Group != "" {
		f.Group, f.HasGroup = []byte(o.Group), true
	}
	if o.Consumer != "" {
		f.Consumer, f.HasConsumer = []byte(o.Consumer), true
	}
	hb := defaultHeartbeat
	if o.Heartbeat > 0 {
		hb = max(o.Heartbeat, minHeartbeat)
		f.HeartbeatMs = uint32(hb / time.Millisecond)
	}
	sctx, stop := context.WithCancel(context.Background())
	s := &Subscription{c: c, sub: f, hb: hb, out: make(chan *Delivery), ctx: sctx, stop: stop,
		waiting: map[uint64]*pendingCtl{}, wake: make(chan struct{}, 1),
		ended: make(chan struct{})}
	first, err := s.open(ctx)
	if err != nil {
		stop()
		return nil, err
	}
	go s.pump()
	go s.run(first)
	return s, nil
}

// Group and Consumer are the names the server confirmed.
func (s *Subscription) Group() string    { s.mu.Lock(); defer s.mu.Unlock(); return s.group }
func (s *Subscription) Consumer() string { s.mu.Lock(); defer s.mu.Unlock(); return s.cons }

// C yields deliveries until the subscription ends (Close, or the client's).
func (s *Subscription) C() <-chan *Delivery { return s.out }

// Next waits for the next delivery.
func (s *Subscription) Next(ctx context.Context) (*Delivery, error) {
	select {
	case d, ok := <-s.out:
		if !ok {
			return nil, s.Err()
		}
		return d, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// All iterates over deliveries until ctx ends or the subscription does; the error, if
// any, is the last item.
func (s *Subscription) All(ctx context.Context) iter.Seq2[*Delivery, error] {
	return func(yield func(*Delivery, error) bool) {
		for {
			d, err := s.Next(ctx)
			if err != nil {
				yield(nil, err)
				return
			}
			if !yield(d, nil) {
				return
			}
		}
	}
}

// Err is why the subscription ended (ErrClosed after Close), nil while it runs.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// SetWindow changes the window (0 pauses delivery). It holds across reconnects.
func (s *Subscription) SetWindow(ctx context.Context, window uint32) error {
	s.mu.Lock()
	s.sub.Window = window
	st := s.stream
	s.mu.Unlock()
	if st == nil {
		return nil // sent with the next Subscribe
	}
	return s.write(st, &creditFrame{Window: window})
}

// Close ends the subscription: deliveries not acknowledged stay pending in the group.
func (s *Subscription) Close() error {
	s.finish(ErrClosed)
	<-s.ended
	return nil
}

func (s *Subscription) finish(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	st := s.stream
	s.mu.Unlock()
	s.stop()
	if st != nil {
		st.CancelRead(0)
		_ = st.Close()
	}
}

// open opens a stream and subscribes on it.
func (s *Subscription) open(ctx context.Context) (*quic.Stream, error) {
	st, stop, err := s.c.open(ctx)
	if err != nil {
		return nil, err
	}
	defer stop()
	s.mu.Lock()
	f := s.sub
	s.mu.Unlock()
	if _, err := st.Write(encodeFrame(&f)); err != nil {
		return nil, lost(ctx, err)
	}
	ans, err := readFrame(st)
	if err != nil {
		return nil, lost(ctx, err)
	}
	ok, isOK := ans.(*subscribedFrame)
	if !isOK {
		st.CancelRead(0)
		_ = st.Close()
		return nil, serverError(ans)
	}
	s.mu.Lock()
	s.group, s.cons = string(ok.Group), string(ok.Consumer)
	s.mu.Unlock()
	return st, nil
}

func (s *Subscription) write(st *quic.Stream, f frame) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	_, err := st.Write(encodeFrame(f))
	return err
}

// run reads the stream; when it fails, it subscribes again on the next connection.
func (s *Subscription) run(st *quic.Stream) {
	defer close(s.ended)
	defer close(s.wake)
	for {
		s.mu.Lock()
		s.stream = st
		// Re-send what the last stream left unanswered: acks and in-progress are
		// idempotent; a nack may have counted, so it fails instead.
		var resend []frame
		for seq, p := range s.waiting {
			if p.kind == ctlNack {
				p.done <- fmt.Errorf("%w: the nack may or may not have been applied", ErrLost)
				delete(s.waiting, seq)
			} else {
				resend = append(resend, p.frame)
			}
		}
		s.mu.Unlock()
		for _, f := range resend {
			_ = s.write(st, f)
		}
		err := s.read(st)
		s.mu.Lock()
		s.stream = nil
		s.mu.Unlock()
		if s.ctx.Err() != nil {
			s.failWaiting(ErrClosed)
			return
		}
		if e := new(Error); errors.As(err, &e) {
			// The server ended the subscription (its group was destroyed, say).
			s.finish(err)
			s.failWaiting(err)
			return
		}
		s.c.log.Debug("cortex: subscription lost, resubscribing", "err", err)
		for {
			var e2 error
			st, e2 = s.open(s.ctx)
			if e2 == nil {
				break
			}
			if s.ctx.Err() != nil || errors.Is(e2, ErrClosed) {
				s.finish(e2)
				s.failWaiting(ErrClosed)
				return
			}
			var se *Error
			if errors.As(e2, &se) && !errors.Is(e2, ErrBusy) && !errors.Is(e2, ErrShuttingDown) {
				s.finish(e2)
				s.failWaiting(e2)
				return
			}
			select {
			case <-time.After(200 * time.Millisecond):
			case <-s.ctx.Done():
			}
		}
	}
}

func (s *Subscription) failWaiting(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for seq, p := range s.waiting {
		p.done <- err
		delete(s.waiting, seq)
	}
}

// read handles one stream's frames until it fails or goes silent for three heartbeats.
func (s *Subscription) read(st *quic.Stream) error {
	for {
		_ = st.SetReadDeadline(time.Now().Add(3*s.hb + time.Second))
		f, err := readFrame(st)
		if err != nil {
			st.CancelRead(0)
			_ = st.Close()
			return err
		}
		switch x := f.(type) {
		case *deliveriesFrame:
			s.mu.Lock()
			for _, w := range x.Items {
				d := &Delivery{Stream: string(w.Stream), ID: w.ID, Fields: w.Fields, Lane: w.Lane,
					Attempt: w.Attempt, Headers: w.Headers, Producer: string(w.Producer), sub: s}
				s.queue = append(s.queue, d)
			}
			s.mu.Unlock()
			select {
			case s.wake <- struct{}{}:
			default:
			}
		case *canceledFrame:
			s.mu.Lock()
			s.queue = append(s.queue, &Delivery{Stream: string(s.sub.Stream), ID: x.ID, CanceledTask: string(x.Task), sub: s})
			s.mu.Unlock()
			select {
			case s.wake <- struct{}{}:
			default:
			}
		case *heartbeatFrame:
		case *doneFrame:
			s.answer(x.Seq, nil)
		case *failedFrame:
			s.answer(x.Seq, &Error{Code: x.Code, Message: x.Message})
		case *errorFrame:
			st.CancelRead(0)
			_ = st.Close()
			return &Error{Code: x.Code, Message: x.Message}
		default:
			return fmt.Errorf("%w: unexpected %s on a subscription", ErrProtocol, f.name())
		}
	}
}

func (s *Subscription) answer(seq uint64, err error) {
	s.mu.Lock()
	p := s.waiting[seq]
	delete(s.waiting, seq)
	s.mu.Unlock()
	if p != nil {
		p.done <- err
	}
}

// pump hands queued deliveries to C, so that reading the stream (and the answers to
// acks) never waits for the application.
func (s *Subscription) pump() {
	defer close(s.out)
	for {
		s.mu.Lock()
		var d *Delivery
		if len(s.queue) > 0 {
			d = s.queue[0]
			s.queue[0] = nil
			s.queue = s.queue[1:]
		}
		s.mu.Unlock()
		if d == nil {
			select {
			case _, ok := <-s.wake:
				if !ok {
					return
				}
			case <-s.ctx.Done():
				return
			}
			continue
		}
		select {
		case s.out <- d:
		case <-s.ctx.Done():
			return
		}
	}
}

// control sends an ack, nack or in-progress and waits for its answer.
func (s *Subscription) control(ctx context.Context, kind ctlKind, ids []ID, text *string, reject bool) error {
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return err
	}
	s.seq++
	seq := s.seq
	var f frame
	switch kind {
	case ctlAck:
		f = &ackFrame{Seq: seq, IDs: ids}
	case ctlNack:
		f = &nackFrame{Seq: seq, IDs: ids, Error: text, Reject: reject}
	default:
		f = &progressFrame{Seq: seq, IDs: ids}
	}
	p := &pendingCtl{frame: f, kind: kind, done: make(chan error, 1)}
	s.waiting[seq] = p
	st := s.stream
	s.mu.Unlock()
	if st != nil {
		// A failed write is resent on the next stream (or failed, for a nack).
		_ = s.write(st, f)
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		s.mu.Lock()
		delete(s.waiting, seq)
		s.mu.Unlock()
		return ctx.Err()
	}
}
