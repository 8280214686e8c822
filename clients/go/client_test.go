package cortex

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// One broker for the tests that need no restart (each names its streams apart).
var (
	sharedOnce sync.Once
	shared     *broker
)

func sharedBroker(t *testing.T) *broker {
	sharedOnce.Do(func() {
		// Outlives the test that started it: killed with the test binary (Pdeathsig).
		b := &broker{t: t, data: mustTemp(t), quic: "127.0.0.1:0"}
		b.start()
		shared = b
	})
	shared.t = t
	return shared
}

func mustTemp(t *testing.T) string {
	d, err := os.MkdirTemp("", "cortex-go-")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.kill()
		_ = os.RemoveAll(shared.data)
	}
	os.Exit(code)
}

func TestPublishBatchAnswersEveryMessage(t *testing.T) {
	b := sharedBroker(t)
	c := b.connect(t, "harold")
	ctx := ctxT(t)
	stream := fresh("mixed")
	big := NewMessage(KV("body", strings.Repeat("x", 1<<20+10)))
	res := must[[]Result](t)(c.PublishBatch(ctx, stream, []Message{
		NewMessage(KV("n", "1")), big, NewMessage(KV("n", "3")), NewMessage(KV("n", "4")),
	}))
	if len(res) != 4 {
		t.Fatalf("%d results", len(res))
	}
	if !errors.Is(res[1].Err, ErrTooLarge) {
		t.Fatalf("the 1 MiB message: %v", res[1].Err)
	}
	var want []ID
	for _, i := range []int{0, 2, 3} {
		if res[i].Err != nil {
			t.Fatalf("message %d: %v", i+1, res[i].Err)
		}
		want = append(want, res[i].ID)
	}
	got := must[[]Entry](t)(c.Range(ctx, stream, ID{}, ID{^uint64(0), ^uint64(0)}, 10, false))
	if len(got) != 3 {
		t.Fatalf("%d entries stored, want 3", len(got))
	}
	for i, e := range got {
		if e.ID != want[i] {
			t.Fatalf("entry %d is %v, the answer said %v", i, e.ID, want[i])
		}
	}
	// An idempotency key makes the repeat a duplicate with the first ID.
	m := NewMessage(KV("n", "5"))
	m.Key = "k-" + stream
	first := must[Published](t)(c.Publish(ctx, stream, m))
	again := must[Published](t)(c.Publish(ctx, stream, m))
	if !again.Duplicate || again.ID != first.ID || first.Duplicate {
		t.Fatalf("first %+v, again %+v", first, again)
	}
}

func TestSubscribeAckNackRejectInProgress(t *testing.T) {
	b := sharedBroker(t)
	c := b.connect(t, "pink")
	ctx := ctxT(t)
	stream := fresh("work")
	must[[]Result](t)(c.PublishBatch(ctx, stream, []Message{
		NewMessage(KV("job", "a")), NewMessage(KV("job", "b")), NewMessage(KV("job", "c")),
	}))
	sub := must[*Subscription](t)(c.Subscribe(ctx, stream, SubscribeOptions{
		Group: "workers", From: StartAll(), Window: 8}))
	defer sub.Close()
	// Retries come back at once, and a second failure dead-letters.
	two := uint32(2)
	zero := []uint64{0}
	must[*Policy](t)(c.Policy(ctx, stream, "workers", &PolicyChange{MaxAttempts: &two, BackoffMs: &zero}))

	a := must[*Delivery](t)(sub.Next(ctx))
	if v, _ := a.Fields.Get("job"); v != "a" || a.Attempt != 1 || a.Producer != "pink" {
		t.Fatalf("first delivery %+v", a)
	}
	if err := a.InProgress(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	bd := must[*Delivery](t)(sub.Next(ctx))
	if err := bd.Nack(ctx, errTest); err != nil {
		t.Fatal(err)
	}
	cd := must[*Delivery](t)(sub.Next(ctx))
	if err := cd.Reject(ctx, errors.New("not for me")); err != nil {
		t.Fatal(err)
	}
	// b comes back as its second attempt.
	again := must[*Delivery](t)(sub.Next(ctx))
	if again.ID != bd.ID || again.Attempt != 2 {
		t.Fatalf("retry %+v, want %v attempt 2", again, bd.ID)
	}
	if err := again.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	origin := stream
	dead := must[[]DeadLetter](t)(c.DeadLetters(ctx, DLQSelect{Origin: &origin, Count: 10}))
	if len(dead) != 1 || dead[0].OriginID != cd.ID || dead[0].Reason != "rejected" ||
		dead[0].LastError == nil || *dead[0].LastError != "not for me" {
		t.Fatalf("dead letters %+v", dead)
	}
	stats := must[[]StreamStat](t)(c.Stat(ctx, stream))
	if len(stats) != 1 || len(stats[0].Groups) != 1 || stats[0].Groups[0].Pending != 0 {
		t.Fatalf("stat %+v", stats)
	}
	// An ack of something not pending is answered, with nothing changed.
	if err := a.Ack(ctx); err != nil {
		t.Fatal(err)
	}
}

// The seed's flow: harold asks pink for help and pink answers; a critical message
// overtakes routine ones waiting in the same stream.
func TestSeedFlow(t *testing.T) {
	b := sharedBroker(t)
	harold := b.connect(t, "harold")
	pink := b.connect(t, "pink-"+fresh("s"))
	ctx := ctxT(t)

	serveCtx, stopServing := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() {
		served <- pink.Serve(serveCtx, pink.Agent(), func(ctx context.Context, r *IncomingRequest) (Fields, error) {
			q, _ := r.Fields.Get("q")
			switch q {
			case "fail":
				return nil, errors.New("cannot")
			case "slow":
				if err := r.Progress(ctx, KV("pct", "50")); err != nil {
					return nil, err
				}
				if err := r.InputRequired(ctx, KV("need", "branch")); err != nil {
					return nil, err
				}
			case "never":
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return KV("a", "re: "+q, "from", r.From()), nil
		}, ServeOptions{})
	}()
	// Requests wait for Serve's subscription: until then there are no responders.
	var answer Fields
	for deadline := time.Now().Add(bound); ; {
		var err error
		answer, err = harold.Ask(ctx, pink.Agent(), KV("q", "help?"), RequestOptions{})
		if err == nil {
			break
		}
		if !errors.Is(err, ErrNoResponders) || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if m := answer.Map(); m["a"] != "re: help?" || m["from"] != "harold" {
		t.Fatalf("answer %v", m)
	}
	// Parts stream: progress, then final.
	// A request is a task: named here, its state follows the parts.
	reqTask := fresh("req")
	r := must[*Reply](t)(harold.Request(ctx, pink.Agent(), KV("q", "slow"), RequestOptions{TaskID: reqTask}))
	p1 := must[*Part](t)(r.Next())
	pIn := must[*Part](t)(r.Next())
	p2 := must[*Part](t)(r.Next())
	if p1.Kind != PartProgress || pIn.Kind != PartInputRequired || p2.Kind != PartFinal || p1.From != pink.Agent() {
		t.Fatalf("parts %+v %+v %+v", p1, pIn, p2)
	}
	if _, err := r.Next(); !errors.Is(err, ErrDone) {
		t.Fatalf("after the final part: %v", err)
	}
	if task := must[*Task](t)(harold.Task(ctx, reqTask)); task.State != "completed" || len(task.History) != 5 || task.History[3].State != "input-required" {
		t.Fatalf("the request's task: %+v", task)
	}
	// The responder's failure, a timeout, and nobody serving: each its own error.
	if _, err := harold.Ask(ctx, pink.Agent(), KV("q", "fail"), RequestOptions{}); !errors.Is(err, ErrReplyFailed) {
		t.Fatalf("failing responder: %v", err)
	}
	if _, err := harold.Ask(ctx, pink.Agent(), KV("q", "never"), RequestOptions{Timeout: 300 * time.Millisecond}); !errors.Is(err, ErrTimeout) {
		t.Fatalf("silent responder: %v", err)
	}
	if _, err := harold.Ask(ctx, "nobody-"+fresh("x"), KV("q", "?"), RequestOptions{}); !errors.Is(err, ErrNoResponders) {
		t.Fatalf("unknown agent: %v", err)
	}
	stopServing()
	if err := <-served; !errors.Is(err, context.Canceled) {
		t.Fatalf("Serve ended with %v", err)
	}

	// Five routine messages wait; a critical one published after them is delivered first.
	stream := fresh("pink-tasks")
	var routine []Message
	for i := range 5 {
		m := NewMessage(KV("task", fmt.Sprint("routine-", i)))
		m.Lane = Low
		routine = append(routine, m)
	}
	must[[]Result](t)(harold.PublishBatch(ctx, stream, routine))
	crit := NewMessage(KV("task", "prod is down"))
	crit.Lane = Critical
	must[Published](t)(harold.Publish(ctx, stream, crit))
	sub := must[*Subscription](t)(pink.Subscribe(ctx, stream, SubscribeOptions{From: StartAll(), Window: 1}))
	defer sub.Close()
	first := must[*Delivery](t)(sub.Next(ctx))
	if v, _ := first.Fields.Get("task"); v != "prod is down" || first.Lane != Critical {
		t.Fatalf("first delivery %v on lane %v", first.Fields.Map(), first.Lane)
	}
}

func TestErrorsAndTrust(t *testing.T) {
	b := sharedBroker(t)
	ctx := ctxT(t)
	// A certificate that is not the pinned one is refused: there is no skipping.
	_, err := Connect(ctx, Options{Servers: []string{b.quic}, Agent: "x",
		Trust: TrustFingerprint(strings.Repeat("ab", 32)), ConnectTimeout: 5 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "not a trusted one") {
		t.Fatalf("wrong pin: %v", err)
	}
	if _, err := Connect(ctx, Options{Servers: []string{b.quic}, Agent: "x"}); err == nil {
		t.Fatal("connected without any trust")
	}
	// The pinned fingerprint of the right certificate works like the file.
	tr := must[Trust](t)(TrustLocal(b.data))
	c := must[*Client](t)(Connect(ctx, Options{Servers: []string{b.quic}, Agent: "x",
		Trust: TrustFingerprint(strings.Join(tr.fingerprints, ","))}))
	defer c.Close()
	// Server refusals are typed.
	if _, err := c.Publish(ctx, "", NewMessage(KV("a", "b"))); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("empty stream name: %v", err)
	}
	var se *Error
	if _, err := c.Publish(ctx, "s", Message{Lane: 9, Fields: KV("a", "b")}); !errors.As(err, &se) ||
		se.Code != CodeInvalidArgument || !strings.Contains(se.Message, "lane") {
		t.Fatalf("lane 9: %v", err)
	}
	_ = c.Close()
	if _, err := c.Publish(ctx, "s", NewMessage(KV("a", "b"))); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// A broker killed (SIGKILL) and restarted: the client reconnects by itself, the
// subscription resumes, every delivery not acked before the crash comes again, nothing
// acked comes again, and publishes with keys go through.
func TestSurvivesABrokerRestart(t *testing.T) {
	b := startBroker(t)
	c := b.connect(t, "pink")
	ctx := ctxT(t)
	const n = 10
	var msgs []Message
	for i := range n {
		m := NewMessage(KV("n", fmt.Sprint(i)))
		m.Key = fmt.Sprint("k", i)
		msgs = append(msgs, m)
	}
	must[[]Result](t)(c.PublishBatch(ctx, "jobs", msgs))
	sub := must[*Subscription](t)(c.Subscribe(ctx, "jobs", SubscribeOptions{Group: "g",
		From: StartAll(), Window: 4, Heartbeat: 500 * time.Millisecond}))
	defer sub.Close()
	acked := map[ID]bool{}
	for range 3 {
		d := must[*Delivery](t)(sub.Next(ctx))
		if err := d.Ack(ctx); err != nil {
			t.Fatal(err)
		}
		acked[d.ID] = true
	}
	// One handed out, not acked: it must come back after the crash.
	held := must[*Delivery](t)(sub.Next(ctx))

	b.kill()
	b.start()

	// Publish during the reconnect: the key makes the retry safe.
	extra := NewMessage(KV("n", "after"))
	extra.Key = "k-after"
	if _, err := c.Publish(ctx, "jobs", extra); err != nil {
		t.Fatalf("publish across the restart: %v", err)
	}
	seen := map[ID]bool{}
	for len(seen) < n-len(acked)+1 {
		d := must[*Delivery](t)(sub.Next(ctx))
		if acked[d.ID] {
			t.Fatalf("%v was acked before the crash and came again", d.ID)
		}
		seen[d.ID] = true
		if err := d.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if !seen[held.ID] {
		t.Fatalf("the delivery held at the crash (%v) did not come back", held.ID)
	}
	if c.Connections() < 2 {
		t.Fatalf("%d connections: the client did not reconnect", c.Connections())
	}
	stats := must[[]StreamStat](t)(c.Stat(ctx, "jobs"))
	if stats[0].Length != n+1 || stats[0].Groups[0].Pending != 0 {
		t.Fatalf("after the restart: %+v", stats[0])
	}
}

// With a cluster's addresses, a node that does not answer is skipped: the client connects
// to the next one, and reconnects there too.
func TestConnectsToTheNextNode(t *testing.T) {
	b := sharedBroker(t)
	ctx := ctxT(t)
	// A UDP port nobody answers on: bound here, never read.
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	trust := must[Trust](t)(TrustLocal(b.data))
	c := must[*Client](t)(Connect(ctx, Options{Servers: []string{dead.LocalAddr().String(), b.quic},
		Agent: "harold", Trust: trust}))
	defer c.Close()
	if _, err := c.Publish(ctx, fresh("nodes"), NewMessage(KV("a", "b"))); err != nil {
		t.Fatal(err)
	}
}

// A delayed message is stored at once (the range shows it with its time) and pushed once
// its time has come, never before: the message published behind it needs no wait. (Which
// of the two arrives first is the scheduler's to decide on a loaded machine: a
// subscription that was slowed down past the delay is handed both at once, in ID order.)
func TestDelayedMessageComesAtItsTime(t *testing.T) {
	b := sharedBroker(t)
	c := b.connect(t, "pink")
	ctx := ctxT(t)
	stream := fresh("later")
	sub := must[*Subscription](t)(c.Subscribe(ctx, stream, SubscribeOptions{Group: "w", From: StartAll()}))
	defer sub.Close()
	later := must[Published](t)(c.Publish(ctx, stream, NewMessage(KV("job", "later")).Delay(300*time.Millisecond)))
	now := must[Published](t)(c.Publish(ctx, stream, NewMessage(KV("job", "now"))))
	got := must[[]Entry](t)(c.Range(ctx, stream, ID{}, ID{^uint64(0), ^uint64(0)}, 10, false))
	if len(got) != 2 {
		t.Fatalf("%d entries stored, want 2", len(got))
	}
	at, ok := got[0].Headers.Get(HeaderDeliverAt)
	if !ok || at == "" {
		t.Fatalf("the scheduled entry has no %s header: %+v", HeaderDeliverAt, got[0].Headers)
	}
	due, err := strconv.ParseInt(at, 10, 64)
	if err != nil {
		t.Fatalf("%s %q: %v", HeaderDeliverAt, at, err)
	}
	first := must[*Delivery](t)(sub.Next(ctx))
	firstAt := time.Now().UnixMilli()
	second := must[*Delivery](t)(sub.Next(ctx))
	secondAt := time.Now().UnixMilli()
	for _, x := range []struct {
		d  *Delivery
		at int64
	}{{first, firstAt}, {second, secondAt}} {
		if x.d.ID == later.ID && x.at < due {
			t.Fatalf("the delayed message came at %d, before its time %d", x.at, due)
		}
	}
	ids := map[ID]bool{first.ID: true, second.ID: true}
	if !ids[now.ID] || !ids[later.ID] || first.Attempt != 1 || second.Attempt != 1 {
		t.Fatalf("deliveries %v then %v, want %v and %v once each", first.ID, second.ID, now.ID, later.ID)
	}
	for _, d := range []*Delivery{first, second} {
		if err := d.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTaskCancelComesBeforeTheNextTask is the seed's T1/T2: T1 submitted and delivered,
// then canceled, then T2 submitted; the worker hears of the cancel before T2 arrives, T1
// ends canceled, and the worker's late reply is kept, marked late.
func TestTaskCancelComesBeforeTheNextTask(t *testing.T) {
	b := sharedBroker(t)
	worker := fresh("pink")
	harold := b.connect(t, fresh("harold"))
	pink := b.connect(t, worker)
	ctx := ctxT(t)
	sub := must[*Subscription](t)(pink.Subscribe(ctx, InboxPrefix+worker, SubscribeOptions{Group: RespondersGroup}))
	defer sub.Close()
	t1 := fresh("T1")
	if _, err := harold.SubmitTask(ctx, worker, NewTask{ID: t1, Fields: KV("do", "start"), Lane: Normal}); err != nil {
		t.Fatal(err)
	}
	d1 := must[*Delivery](t)(sub.Next(ctx))
	if id, _ := d1.Headers.Get("cortex-task-id"); id != t1 || d1.CanceledTask != "" {
		t.Fatalf("first delivery %+v, want task %s", d1, t1)
	}
	c := must[*Task](t)(harold.CancelTask(ctx, t1))
	if c.State != "canceled" {
		t.Fatalf("canceled task is %s", c.State)
	}
	t2 := must[*Task](t)(harold.SubmitTask(ctx, worker, NewTask{Fields: KV("do", "instead"), Lane: Normal}))
	sig := must[*Delivery](t)(sub.Next(ctx))
	if sig.CanceledTask != t1 || sig.ID != d1.ID {
		t.Fatalf("after the cancel came %+v, want the cancel of %s", sig, t1)
	}
	d2 := must[*Delivery](t)(sub.Next(ctx))
	if id, _ := d2.Headers.Get("cortex-task-id"); id != t2.ID {
		t.Fatalf("then %+v, want task %s", d2, t2.ID)
	}
	if err := pink.Respond(ctx, t1, PartFinal, KV("done", "anyway")); err != nil {
		t.Fatal(err)
	}
	got := must[*Task](t)(harold.Task(ctx, t1))
	last := got.History[len(got.History)-1]
	if got.State != "canceled" || !last.Late || last.Event != "part" {
		t.Fatalf("T1 after a late reply: %s, last change %+v", got.State, last)
	}
	if _, err := harold.CancelTask(ctx, t1); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("a second cancel answered %v", err)
	}
	list, _, err := harold.Tasks(ctx, worker, "working", "", 10)
	if err != nil || len(list) != 1 || list[0].ID != t2.ID {
		t.Fatalf("working tasks of %s: %+v, %v (want T2 alone)", worker, list, err)
	}
	// Presence: pink is connected over QUIC with this client, serving its inbox.
	agents := must[[]Agent](t)(harold.Agents(ctx))
	var found *Agent
	for i := range agents {
		if agents[i].Name == worker {
			found = &agents[i]
		}
	}
	if found == nil || found.Sessions[0].Front != "quic" ||
		!strings.HasPrefix(found.Sessions[0].Client, "cortex-go") ||
		len(found.Sessions[0].Serves) != 1 || found.Sessions[0].Serves[0].Group != RespondersGroup {
		t.Fatalf("%s among the agents: %+v", worker, agents)
	}
}

// A task that asks for it goes to the dead-letter stream when it is canceled before a
// worker took it (here it waits for its time); its task stays canceled.
func TestTaskCanceledBeforeAWorkerTookItIsDeadLettered(t *testing.T) {
	b := sharedBroker(t)
	worker := fresh("pink")
	harold := b.connect(t, fresh("harold"))
	ctx := ctxT(t)
	id := fresh("T")
	later := NewMessage(nil).Delay(time.Hour)
	task := must[*Task](t)(harold.SubmitTask(ctx, worker, NewTask{ID: id, Fields: KV("do", "later"),
		Headers: later.Headers, DeadLetterOnCancel: true}))
	canceled := must[*Task](t)(harold.CancelTask(ctx, id))
	if canceled.State != "canceled" {
		t.Fatalf("state %q after the cancel", canceled.State)
	}
	origin := InboxPrefix + worker
	reason := "canceled"
	dead := must[[]DeadLetter](t)(harold.DeadLetters(ctx, DLQSelect{Origin: &origin, Reason: &reason, Count: 10}))
	if len(dead) != 1 || dead[0].OriginID != task.Entry || dead[0].Reason != "canceled" {
		t.Fatalf("dead letters %+v, want the entry %v", dead, task.Entry)
	}
}
