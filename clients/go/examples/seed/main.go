// The seed's flow on Cortex Bus, as two Go agents in one program: harold asks pink for
// help and pink answers (request/reply, with a progress part), then a critical message
// overtakes routine ones waiting in pink's task stream.
//
//	cargo run --release -- serve              # in the repository, in another terminal
//	go run ./examples/seed -data-dir ../../cortex-data
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
	dataDir := flag.String("data-dir", "./cortex-data", "the broker's data directory (its certificate is trusted)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	trust, err := cortex.TrustLocal(*dataDir)
	if err != nil {
		log.Fatal(err)
	}
	connect := func(agent string) *cortex.Client {
		c, err := cortex.Connect(ctx, cortex.Options{Servers: []string{*server}, Agent: agent, Trust: trust})
		if err != nil {
			log.Fatal(err)
		}
		return c
	}
	harold, pink := connect("harold"), connect("pink")
	defer harold.Close()
	defer pink.Close()

	// pink serves its inbox.
	serving, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		err := pink.Serve(serving, "pink", func(ctx context.Context, r *cortex.IncomingRequest) (cortex.Fields, error) {
			q, _ := r.Fields.Get("q")
			fmt.Printf("pink: %s asks %q\n", r.From(), q)
			if err := r.Progress(ctx, cortex.KV("status", "looking")); err != nil {
				return nil, err
			}
			return cortex.KV("a", "rebase onto main, then rerun the tests"), nil
		}, cortex.ServeOptions{})
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Print(err)
		}
	}()

	// harold asks; until pink's subscription is up there are no responders.
	var reply *cortex.Reply
	for {
		reply, err = harold.Request(ctx, "pink", cortex.KV("q", "why does CI fail on my branch?"), cortex.RequestOptions{Timeout: 10 * time.Second})
		if err == nil {
			_, err = reply.Next()
		}
		if !errors.Is(err, cortex.ErrNoResponders) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("harold: pink is working on it")
	for {
		p, err := reply.Next()
		if errors.Is(err, cortex.ErrDone) {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		if p.Kind == cortex.PartFinal {
			a, _ := p.Fields.Get("a")
			fmt.Printf("harold: %s answered %q\n", p.From, a)
		}
	}
	stop()

	// Routine work waits in pink's stream; a critical message published after it is
	// delivered first.
	stream := fmt.Sprintf("tasks:pink:%d", time.Now().UnixNano())
	for i := 1; i <= 3; i++ {
		m := cortex.NewMessage(cortex.KV("task", fmt.Sprintf("routine %d", i)))
		m.Lane = cortex.Low
		if _, err := harold.Publish(ctx, stream, m); err != nil {
			log.Fatal(err)
		}
	}
	m := cortex.NewMessage(cortex.KV("task", "prod is down"))
	m.Lane = cortex.Critical
	if _, err := harold.Publish(ctx, stream, m); err != nil {
		log.Fatal(err)
	}
	sub, err := pink.Subscribe(ctx, stream, cortex.SubscribeOptions{From: cortex.StartAll(), Window: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	for range 4 {
		d, err := sub.Next(ctx)
		if err != nil {
			log.Fatal(err)
		}
		task, _ := d.Fields.Get("task")
		fmt.Printf("pink: %-9s %s\n", d.Lane, task)
		if err := d.Ack(ctx); err != nil {
			log.Fatal(err)
		}
	}
}
