// cortex-go-bench measures the Go client against a running broker, as `cortex bench`
// measures the Rust one: durable publish acks (one publisher, one message per call) or
// request/reply round trips (the same client serves its own inbox). It prints one JSON
// line: count, rate and latency p50/p99/p99.9 in microseconds. benches/clients.sh runs it
// beside the Rust and Python clients against one broker.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log"
	"os"
	"slices"
	"strings"
	"time"

	cortex "github.com/cortex-bus/cortex/clients/go"
)

func main() {
	server := flag.String("server", "127.0.0.1:7400", "the broker's QUIC address")
	dataDir := flag.String("data-dir", "./cortex-data", "the broker's data directory (its certificate is trusted)")
	workload := flag.String("workload", "publish", "publish or reqrep")
	seconds := flag.Int("duration", 10, "seconds to run")
	size := flag.Int("size", 100, "bytes per message body")
	flag.Parse()
	ctx := context.Background()
	trust, err := cortex.TrustLocal(*dataDir)
	if err != nil {
		log.Fatal(err)
	}
	agent := "bench-go"
	c, err := cortex.Connect(ctx, cortex.Options{Servers: []string{*server}, Agent: agent, Trust: trust})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	body := cortex.KV("body", strings.Repeat("x", *size))
	var op func() error
	switch *workload {
	case "publish":
		stream := "bench:go:" + time.Now().Format("150405.000")
		op = func() error {
			_, err := c.Publish(ctx, stream, cortex.NewMessage(body))
			return err
		}
	case "reqrep":
		responder, err := cortex.Connect(ctx, cortex.Options{Servers: []string{*server}, Agent: agent, Trust: trust})
		if err != nil {
			log.Fatal(err)
		}
		defer responder.Close()
		sctx, stop := context.WithCancel(ctx)
		defer stop()
		go func() {
			_ = responder.Serve(sctx, agent, func(_ context.Context, r *cortex.IncomingRequest) (cortex.Fields, error) {
				return r.Fields, nil
			}, cortex.ServeOptions{Concurrency: 64})
		}()
		ask := func() error {
			_, err := c.Ask(ctx, agent, body, cortex.RequestOptions{Timeout: 10 * time.Second})
			return err
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			err := ask()
			if err == nil {
				break
			}
			if !errors.Is(err, cortex.ErrNoResponders) || time.Now().After(deadline) {
				log.Fatal(err)
			}
		}
		op = ask
	default:
		log.Fatalf("unknown workload %q", *workload)
	}
	var lat []time.Duration
	started := time.Now()
	until := started.Add(time.Duration(*seconds) * time.Second)
	for time.Now().Before(until) {
		t := time.Now()
		if err := op(); err != nil {
			log.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	elapsed := time.Since(started).Seconds()
	slices.Sort(lat)
	q := func(p float64) int64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds() }
	_ = json.NewEncoder(os.Stdout).Encode(map[string]any{
		"client": "go", "workload": *workload, "count": len(lat),
		"rate":   float64(len(lat)) / elapsed,
		"p50_us": q(0.50), "p99_us": q(0.99), "p999_us": q(0.999),
	})
}
