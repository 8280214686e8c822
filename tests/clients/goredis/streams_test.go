// go-redis v9, the client the seed's swarm uses, against cortex's RESP port through the
// library's own API: the seed's flows, XADD, XGROUP CREATE MKSTREAM, XREADGROUP (BLOCK
// included), XACK, XPENDING, XCLAIM/XAUTOCLAIM, XINFO, pipelines and TxPipelined, over
// RESP2 and RESP3. It starts the real binary (CORTEX_BIN, or target/debug/cortex).
package goredis

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// addr is the RESP address of the broker TestMain started.
var addr string

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(code)
}

// run starts cortex on ephemeral loopback ports, runs the tests, and stops it.
func run(m *testing.M) (int, error) {
	bin := os.Getenv("CORTEX_BIN")
	if bin == "" {
		target := os.Getenv("CARGO_TARGET_DIR")
		if target == "" {
			target = filepath.Join("..", "..", "..", "target")
		}
		bin = filepath.Join(target, "debug", "cortex")
	}
	data, err := os.MkdirTemp("", "cortex-go-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(data)
	cmd := exec.Command(bin, "serve", "--data-dir", data, "--resp", "127.0.0.1:0",
		"--quic", "127.0.0.1:0", "--http", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "RUST_LOG=warn")
	// The broker dies with the test binary, even when a failing test panics and the
	// deferred kill below never runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting %s: %w", bin, err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	found := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			if a, ok := strings.CutPrefix(s.Text(), "cortex: RESP listening on "); ok {
				found <- a
			}
		}
	}()
	select {
	case addr = <-found:
	case <-time.After(30 * time.Second):
		return 0, errors.New("cortex did not report its RESP port within 30 s")
	}
	return m.Run(), nil
}

func client(t *testing.T, protocol int) *redis.Client {
	t.Helper()
	r := redis.NewClient(&redis.Options{Addr: addr, Protocol: protocol})
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// must returns v, or fails the test (by panicking: Go passes a call's two results on
// only as a function's whole argument list) when err is set.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// must2 is must for a call with two results and an error (XAUTOCLAIM's entries and cursor).
func must2[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		panic(err)
	}
	return a, b
}

// fresh names a test's streams apart from any earlier run's (`go test -count N` runs the
// tests again against the same broker).
func fresh() string {
	return strconv.FormatInt(time.Now().UnixNano(), 36)
}

func ids(ms []redis.XMessage) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func equal(a, b []string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",")
}

func TestStreamFlows(t *testing.T) {
	for _, protocol := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", protocol), func(t *testing.T) {
			flows(t, client(t, protocol), fmt.Sprintf("go:%s:resp%d", fresh(), protocol))
		})
	}
}

func flows(t *testing.T, r *redis.Client, s string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	info := must(r.Info(ctx, "server").Result())
	if !strings.Contains(info, "redis_version:7.4.") {
		t.Fatalf("INFO server does not say Redis 7.4: %q", info)
	}

	// The seed's flow: XGROUP CREATE ... MKSTREAM, XADD with its fields, XREADGROUP.
	must(r.XGroupCreateMkStream(ctx, s, "workers", "$").Result())
	id1 := must(r.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: []string{
		"type", "task", "from", "harold", "body", "build X"}}).Result())
	id2 := must(r.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: map[string]any{
		"type": "task", "from": "pink", "body": "test Y"}}).Result())
	if n := must(r.XLen(ctx, s).Result()); n != 2 {
		t.Fatalf("XLEN %d", n)
	}
	got := must(r.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: "workers", Consumer: "w1", Streams: []string{s, ">"}, Count: 10, Block: -1,
	}).Result())
	if len(got) != 1 || got[0].Stream != s || !equal(ids(got[0].Messages), []string{id1, id2}) {
		t.Fatalf("XREADGROUP %+v", got)
	}
	if b := got[0].Messages[0].Values["body"]; b != "build X" {
		t.Fatalf("body %v", b)
	}

	// XPENDING, summary and extended.
	p := must(r.XPending(ctx, s, "workers").Result())
	if p.Count != 2 || p.Lower != id1 || p.Higher != id2 || p.Consumers["w1"] != 2 {
		t.Fatalf("XPENDING %+v", p)
	}
	ext := must(r.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: s, Group: "workers", Start: "-", End: "+", Count: 10,
	}).Result())
	if len(ext) != 2 || ext[0].ID != id1 || ext[0].Consumer != "w1" || ext[0].RetryCount != 1 {
		t.Fatalf("XPENDING extended %+v", ext)
	}

	// XCLAIM, XAUTOCLAIM (entries and JUSTID).
	claimed := must(r.XClaim(ctx, &redis.XClaimArgs{
		Stream: s, Group: "workers", Consumer: "w2", Messages: []string{id1},
	}).Result())
	if !equal(ids(claimed), []string{id1}) {
		t.Fatalf("XCLAIM %+v", claimed)
	}
	msgs, next := must2(r.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream: s, Group: "workers", Consumer: "w2", Start: "0-0", Count: 10,
	}).Result())
	if next != "0-0" || !equal(ids(msgs), []string{id1, id2}) {
		t.Fatalf("XAUTOCLAIM %v %+v", next, msgs)
	}
	just, next, err := r.XAutoClaimJustID(ctx, &redis.XAutoClaimArgs{
		Stream: s, Group: "workers", Consumer: "w1", Start: "0-0", Count: 10,
	}).Result()
	if err != nil || next != "0-0" || !equal(just, []string{id1, id2}) {
		t.Fatalf("XAUTOCLAIM JUSTID %v %v %v", just, next, err)
	}

	// XACK.
	if n := must(r.XAck(ctx, s, "workers", id1, id2).Result()); n != 2 {
		t.Fatalf("XACK %d", n)
	}
	if p := must(r.XPending(ctx, s, "workers").Result()); p.Count != 0 {
		t.Fatalf("XPENDING after XACK %+v", p)
	}

	// XINFO STREAM [FULL], GROUPS, CONSUMERS.
	st := must(r.XInfoStream(ctx, s).Result())
	if st.Length != 2 || st.LastGeneratedID != id2 || st.FirstEntry.ID != id1 || st.Groups != 1 {
		t.Fatalf("XINFO STREAM %+v", st)
	}
	full := must(r.XInfoStreamFull(ctx, s, 10).Result())
	if len(full.Groups) != 1 || full.Groups[0].Name != "workers" || len(full.Entries) != 2 {
		t.Fatalf("XINFO STREAM FULL %+v", full)
	}
	groups := must(r.XInfoGroups(ctx, s).Result())
	if len(groups) != 1 || groups[0].Name != "workers" || groups[0].Lag != 0 || groups[0].Pending != 0 {
		t.Fatalf("XINFO GROUPS %+v", groups)
	}
	consumers := must(r.XInfoConsumers(ctx, s, "workers").Result())
	if len(consumers) != 2 || consumers[0].Name != "w1" || consumers[1].Name != "w2" {
		t.Fatalf("XINFO CONSUMERS %+v", consumers)
	}

	// MULTI/EXEC through TxPipelined, and a plain pipeline.
	var a, b *redis.StringCmd
	var n *redis.IntCmd
	must(r.TxPipelined(ctx, func(p redis.Pipeliner) error {
		a = p.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: []string{"n", "1"}})
		b = p.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: []string{"n", "2"}})
		n = p.XLen(ctx, s)
		return nil
	}))
	if a.Val() >= b.Val() || n.Val() != 4 {
		t.Fatalf("TxPipelined %s %s %d", a.Val(), b.Val(), n.Val())
	}
	cmds := must(r.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range 100 {
			p.XAdd(ctx, &redis.XAddArgs{Stream: s + ":pipe", Values: []any{"i", i}})
		}
		return nil
	}))
	if len(cmds) != 100 {
		t.Fatalf("pipelined %d", len(cmds))
	}
	if n := must(r.XLen(ctx, s+":pipe").Result()); n != 100 {
		t.Fatalf("XLEN after the pipeline %d", n)
	}

	// A blocking group read on another connection, released by an append. No waiting for
	// it to block first: `>` hands out what the group has not seen, so the read returns the
	// entry whether the append lands before or after it blocks (the Rust integration tests
	// check blocking itself, on the server's blocked-client count).
	must(r.XGroupCreateMkStream(ctx, s+":block", "g", "$").Result())
	type read struct {
		got []redis.XStream
		err error
	}
	done := make(chan read, 1)
	go func() {
		got, err := r.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: "g", Consumer: "c", Streams: []string{s + ":block", ">"}, Block: 10 * time.Second,
		}).Result()
		done <- read{got, err}
	}()
	idb := must(r.XAdd(ctx, &redis.XAddArgs{Stream: s + ":block", Values: []string{"wake", "up"}}).Result())
	select {
	case rd := <-done:
		if rd.err != nil || len(rd.got) != 1 || !equal(ids(rd.got[0].Messages), []string{idb}) {
			t.Fatalf("blocked XREADGROUP %+v %v", rd.got, rd.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the blocked XREADGROUP was not released by the append")
	}
	// With nothing new, BLOCK times out with redis.Nil, as on Redis.
	_, err = r.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: "g", Consumer: "c", Streams: []string{s + ":block", ">"}, Block: 50 * time.Millisecond,
	}).Result()
	if !errors.Is(err, redis.Nil) {
		t.Fatalf("an empty BLOCK read gave %v, not redis.Nil", err)
	}

	// Trimming through the library's options; a wrong one comes back as Redis's error.
	must(r.XAdd(ctx, &redis.XAddArgs{Stream: s + ":trim", Values: []string{"a", "1"}}).Result())
	must(r.XAdd(ctx, &redis.XAddArgs{Stream: s + ":trim", MaxLen: 1, Values: []string{"a", "2"}}).Result())
	if n := must(r.XLen(ctx, s+":trim").Result()); n != 1 {
		t.Fatalf("XLEN after MAXLEN 1: %d", n)
	}
	err = r.Do(ctx, "XTRIM", s+":trim", "MAXLEN", "0", "LIMIT", "5").Err()
	if err == nil || !strings.Contains(err.Error(), "LIMIT cannot be used without the special ~ option") {
		t.Fatalf("XTRIM LIMIT without ~ gave %v", err)
	}
}

// seedClient is the seed's `internal/streams` client, as written there: XADD to publish,
// XGROUP CREATE MKSTREAM "0" (its BUSYGROUP on the second call ignored, as the seed does)
// and a read loop of XREADGROUP BLOCK + XACK to subscribe.
type seedClient struct{ rdb *redis.Client }

func (c *seedClient) Publish(ctx context.Context, stream string, msg map[string]any) error {
	return c.rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: msg}).Err()
}

// Subscribe's loop hands each entry on and acknowledges it, until stop is closed; then it
// closes the channel (every entry it handed on is acknowledged by then).
func (c *seedClient) Subscribe(ctx context.Context, stream, group, consumer string, stop <-chan struct{}) <-chan redis.XMessage {
	c.rdb.XGroupCreateMkStream(ctx, stream, group, "0")
	ch := make(chan redis.XMessage)
	go func() {
		defer close(ch)
		for {
			select {
			case <-stop:
				return
			default:
			}
			got, err := c.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
				Group: group, Consumer: consumer, Streams: []string{stream, ">"},
				Count: 10, Block: 100 * time.Millisecond,
			}).Result()
			if err != nil {
				continue // redis.Nil: nothing new within the block
			}
			for _, m := range got[0].Messages {
				select {
				case ch <- m:
				case <-stop:
					return
				}
				c.rdb.XAck(ctx, stream, group, m.ID)
			}
		}
	}()
	return ch
}

// The seed's flow: harold hands pink a task on cortex:tasks, pink's read loop gets it and
// answers on cortex:results, harold's gets the answer; every delivery is acknowledged.
func TestSeedFlow(t *testing.T) {
	for _, protocol := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", protocol), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			harold := &seedClient{client(t, protocol)}
			pink := &seedClient{client(t, protocol)}
			tasks := fmt.Sprintf("cortex:tasks:%s:resp%d", fresh(), protocol)
			results := fmt.Sprintf("cortex:results:%s:resp%d", fresh(), protocol)
			stop := make(chan struct{})
			work := pink.Subscribe(ctx, tasks, "coding", "pink", stop)
			answers := harold.Subscribe(ctx, results, "harold", "harold", stop)
			// A second Subscribe meets BUSYGROUP, which the seed ignores.
			if err := pink.rdb.XGroupCreateMkStream(ctx, tasks, "coding", "0").Err(); err == nil ||
				!strings.HasPrefix(err.Error(), "BUSYGROUP") {
				t.Fatalf("creating the group again gave %v, not BUSYGROUP", err)
			}
			must(0, harold.Publish(ctx, tasks, map[string]any{
				"id": "task-001", "from": "harold", "to": "pink", "type": "code_task",
				"priority": "high", "payload": `{"repo":"cortex"}`,
				"created_at": "2026-02-06T11:45:00Z", "ttl": "3600",
			}))
			var task redis.XMessage
			select {
			case task = <-work:
			case <-ctx.Done():
				t.Fatal("pink's read loop got no task")
			}
			if task.Values["id"] != "task-001" || task.Values["from"] != "harold" {
				t.Fatalf("task %+v", task.Values)
			}
			must(0, pink.Publish(ctx, results, map[string]any{
				"id": "result-001", "task": task.Values["id"], "from": "pink", "status": "done",
			}))
			select {
			case a := <-answers:
				if a.Values["task"] != "task-001" || a.Values["status"] != "done" {
					t.Fatalf("answer %+v", a.Values)
				}
			case <-ctx.Done():
				t.Fatal("harold's read loop got no answer")
			}
			// Once both loops have stopped, what they handed on is acknowledged.
			close(stop)
			for range work {
				t.Fatal("pink got a second task")
			}
			for range answers {
				t.Fatal("harold got a second answer")
			}
			for _, sg := range [][2]string{{tasks, "coding"}, {results, "harold"}} {
				if p := must(pink.rdb.XPending(ctx, sg[0], sg[1]).Result()); p.Count != 0 {
					t.Fatalf("%s/%s still has %d pending", sg[0], sg[1], p.Count)
				}
			}
		})
	}
}
