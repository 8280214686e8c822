// The Go half of the Go <-> Python interop test (clients/python/tests/test_interop.py,
// which starts this program): agent "go" serves requests, publishes to the Python agent,
// asks it a question, and consumes what it sent, with in-progress, a nack (and its retry)
// and an ack. It prints what it did and exits 0 only if every step went as expected.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"time"

	cortex "github.com/cortex-bus/cortex/clients/go"
)

func main() {
	server := flag.String("server", "127.0.0.1:7400", "the broker's QUIC address")
	dataDir := flag.String("data-dir", "./cortex-data", "the broker's data directory")
	peer := flag.String("peer", "py", "the Python agent's name")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	trust, err := cortex.TrustLocal(*dataDir)
	if err != nil {
		log.Fatal(err)
	}
	c, err := cortex.Connect(ctx, cortex.Options{Servers: []string{*server}, Agent: "go", Trust: trust})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	serving, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		_ = c.Serve(serving, "go", func(_ context.Context, r *cortex.IncomingRequest) (cortex.Fields, error) {
			q, _ := r.Fields.Get("q")
			return cortex.KV("a", "go says: "+q), nil
		}, cortex.ServeOptions{})
	}()

	if _, err := c.Publish(ctx, "interop:to-py", cortex.NewMessage(cortex.KV("hello", "from go"))); err != nil {
		log.Fatal(err)
	}
	// Ask the Python agent (it serves before it starts this program).
	answer, err := c.Ask(ctx, *peer, cortex.KV("q", "ping"), cortex.RequestOptions{Timeout: 10 * time.Second})
	if err != nil {
		log.Fatalf("asking %s: %v", *peer, err)
	}
	if a, _ := answer.Get("a"); a != "py says: ping" {
		log.Fatalf("%s answered %v", *peer, answer.Map())
	}
	fmt.Println("go: asked py, got", answer.Map())

	// What Python sent: in progress, nack, then its retry acked.
	one := uint32(3)
	zero := []uint64{0}
	sub, err := c.Subscribe(ctx, "interop:to-go", cortex.SubscribeOptions{From: cortex.StartAll(), Window: 1})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Policy(ctx, "interop:to-go", sub.Group(), &cortex.PolicyChange{MaxAttempts: &one, BackoffMs: &zero}); err != nil {
		log.Fatal(err)
	}
	d, err := sub.Next(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if v, _ := d.Fields.Get("hello"); v != "from python" || d.Producer != *peer {
		log.Fatalf("got %v from %q", d.Fields.Map(), d.Producer)
	}
	if err := d.InProgress(ctx); err != nil {
		log.Fatal(err)
	}
	if err := d.Nack(ctx, errors.New("once more")); err != nil {
		log.Fatal(err)
	}
	again, err := sub.Next(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if again.ID != d.ID || again.Attempt != 2 {
		log.Fatalf("retry %v attempt %d, want %v attempt 2", again.ID, again.Attempt, d.ID)
	}
	if err := again.Ack(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("go: consumed", d.Fields.Map(), "nacked once, acked attempt", again.Attempt)

	// Stay serving until the Python side says it has asked too (pushed, not polled).
	done, err := c.Subscribe(ctx, "interop:done", cortex.SubscribeOptions{From: cortex.StartAll()})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := done.Next(ctx); err != nil {
		log.Fatalf("waiting for the Python side: %v", err)
	}
	fmt.Println("go: done")
}
