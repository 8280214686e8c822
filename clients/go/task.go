package cortex

// Tasks: a durable message to an agent with a state (A2A's: submitted, working,
// input-required, completed, failed, canceled, rejected), moved by the worker's calls.

import (
	"context"
	"fmt"
	"time"
)

// Task is a task as the server reports it.
type Task struct {
	ID        string
	State     string
	Stream    string
	Entry     ID
	Submitter *string
	Group     *string
	Consumer  *string
	CreatedMs uint64
	UpdatedMs uint64
	// FinishedMs is set once the task reached a final state.
	FinishedMs *uint64
	// Changes counts every change ever made; History holds the ones asked for.
	Changes uint64
	History []TaskChange
}

// TaskChange is one change of a task.
type TaskChange struct {
	Seq    uint64
	AtMs   uint64
	State  string
	Event  string // submitted, delivered, part, acked, retry, rejected, dead-lettered, canceled, removed, redriven, deadline
	Detail string
	// Late: it came after the task had finished (a reply after a cancel).
	Late bool
}

// NewTask is a task to submit.
type NewTask struct {
	// ID of the task ("" : the server makes one).
	ID     string
	Fields Fields
	// Headers (a schedule: HeaderDeliverAt or HeaderDelay).
	Headers Fields
	Lane    Lane
	// Deadline is how long it may wait for a worker (0: the server's default, 1 hour).
	Deadline time.Duration
	// DeadLetterOnCancel sends it to the dead-letter stream (reason "canceled") when it is
	// canceled before a worker took it; otherwise it is dropped.
	DeadLetterOnCancel bool
}

// taskCall is the TaskCall enum: Kind 0 Submit, 1 Status, 2 Cancel, 3 List, 4 Watch.
type taskCall struct {
	Kind     uint32
	Agent    string
	AgentOpt *string
	Task     *string
	Fields   Fields
	Headers  Fields
	Lane     Lane
	Deadline uint64
	Stream   *string
	State    *string
	After    string
	Count    uint32
	From     uint64
	WaitMs   uint32
}

func (t *taskCall) encode(e *enc) {
	e.u32(t.Kind)
	switch t.Kind {
	case 0:
		e.str(t.Agent)
		encOptStrBytes(e, t.Task)
		e.pairs(t.Fields)
		e.pairs(t.Headers)
		e.u8(uint8(t.Lane))
		e.u64(t.Deadline)
	case 1, 2:
		e.bytes([]byte(*t.Task))
	case 3:
		e.optStr(t.AgentOpt)
		encOptStrBytes(e, t.Stream)
		e.optStr(t.State)
		e.bytes([]byte(t.After))
		e.u32(t.Count)
	case 4:
		e.bytes([]byte(*t.Task))
		e.u64(t.From)
		e.u32(t.WaitMs)
	}
}

func (t *taskCall) decode(d *dec) {
	t.Kind = d.u32()
	switch t.Kind {
	case 0:
		t.Agent, t.Task = d.str(), decOptStrBytes(d)
		t.Fields, t.Headers = d.pairs(), d.pairs()
		t.Lane, t.Deadline = Lane(d.u8()), d.u64()
	case 1, 2:
		s := string(d.bytes())
		t.Task = &s
	case 3:
		t.AgentOpt, t.Stream, t.State = d.optStr(), decOptStrBytes(d), d.optStr()
		t.After, t.Count = string(d.bytes()), d.u32()
	case 4:
		s := string(d.bytes())
		t.Task, t.From, t.WaitMs = &s, d.u64(), d.u32()
	default:
		d.fail("unknown task call %d", t.Kind)
	}
}

func (t *Task) encode(e *enc) {
	e.bytes([]byte(t.ID))
	e.str(t.State)
	e.bytes([]byte(t.Stream))
	e.id(t.Entry)
	encOptStrBytes(e, t.Submitter)
	encOptStrBytes(e, t.Group)
	encOptStrBytes(e, t.Consumer)
	e.u64(t.CreatedMs)
	e.u64(t.UpdatedMs)
	e.optU64(t.FinishedMs)
	e.u64(t.Changes)
	e.u64(uint64(len(t.History)))
	for _, c := range t.History {
		e.u64(c.Seq)
		e.u64(c.AtMs)
		e.str(c.State)
		e.str(c.Event)
		e.str(c.Detail)
		e.boolean(c.Late)
	}
}

func (t *Task) decode(d *dec) {
	t.ID, t.State, t.Stream, t.Entry = string(d.bytes()), d.str(), string(d.bytes()), d.id()
	t.Submitter, t.Group, t.Consumer = decOptStrBytes(d), decOptStrBytes(d), decOptStrBytes(d)
	t.CreatedMs, t.UpdatedMs, t.FinishedMs, t.Changes = d.u64(), d.u64(), d.optU64(), d.u64()
	n := d.count(41)
	for i := 0; i < n && d.err == nil; i++ {
		var c TaskChange
		c.Seq, c.AtMs, c.State, c.Event, c.Detail = d.u64(), d.u64(), d.str(), d.str(), d.str()
		c.Late = d.boolean()
		t.History = append(t.History, c)
	}
}

// canceledFrame (22, server): a task the subscriber holds was canceled.
type canceledFrame struct {
	Task []byte
	ID   ID
}

func (*canceledFrame) tag() uint32  { return 22 }
func (*canceledFrame) name() string { return "Canceled" }
func (f *canceledFrame) encode(e *enc) {
	e.bytes(f.Task)
	e.id(f.ID)
}
func (f *canceledFrame) decode(d *dec) { f.Task, f.ID = d.bytes(), d.id() }

func (c *Client) taskCall(ctx context.Context, t *taskCall) (*adminAnswer, error) {
	a, err := c.admin(ctx, adminRequest{Kind: 7, Task: t})
	if err != nil {
		return nil, err
	}
	return a, nil
}

func oneTask(a *adminAnswer, err error) (*Task, error) {
	if err != nil {
		return nil, err
	}
	if a.Kind != 6 || len(a.Tasks) != 1 {
		return nil, fmt.Errorf("%w: answer %d to a task call", ErrProtocol, a.Kind)
	}
	return &a.Tasks[0], nil
}

// SubmitTask submits a task to agent (durable when it returns); the agent's worker
// answers it as a request (Respond), each part moving the task.
func (c *Client) SubmitTask(ctx context.Context, agent string, t NewTask) (*Task, error) {
	headers := t.Headers
	if t.DeadLetterOnCancel {
		headers = append(append(Fields(nil), headers...), Field{[]byte(HeaderOnCancel), []byte("dlq")})
	}
	call := &taskCall{Kind: 0, Agent: agent, Fields: t.Fields, Headers: headers, Lane: t.Lane,
		Deadline: uint64(t.Deadline.Milliseconds())}
	if t.ID != "" {
		call.Task = &t.ID
	}
	return oneTask(c.taskCall(ctx, call))
}

// Task returns a task with its history.
func (c *Client) Task(ctx context.Context, id string) (*Task, error) {
	return oneTask(c.taskCall(ctx, &taskCall{Kind: 1, Task: &id}))
}

// CancelTask cancels a task: not yet delivered, it never is; held, its holder's
// subscription is told before anything else. An unknown task fails with CodeNotFound, a
// finished one with CodeConflict.
func (c *Client) CancelTask(ctx context.Context, id string) (*Task, error) {
	return oneTask(c.taskCall(ctx, &taskCall{Kind: 2, Task: &id}))
}

// WatchTask returns the task with its changes from position from on, waiting up to wait
// (at most a minute) for one. Resume with from = the last change's Seq + 1.
func (c *Client) WatchTask(ctx context.Context, id string, from uint64, wait time.Duration) (*Task, error) {
	ms := min(wait.Milliseconds(), 60_000)
	return oneTask(c.taskCall(ctx, &taskCall{Kind: 4, Task: &id, From: from, WaitMs: uint32(ms)}))
}

// Tasks lists tasks addressed to agent ("" : any) in state ("" : any) after the task ID
// after; next is the ID to continue after when there may be more.
func (c *Client) Tasks(ctx context.Context, agent, state, after string, count uint32) (tasks []Task, next string, err error) {
	call := &taskCall{Kind: 3, After: after, Count: count}
	if agent != "" {
		call.AgentOpt = &agent
	}
	if state != "" {
		call.State = &state
	}
	a, err := c.taskCall(ctx, call)
	if err != nil {
		return nil, "", err
	}
	if a.Kind != 7 {
		return nil, "", fmt.Errorf("%w: answer %d to a task listing", ErrProtocol, a.Kind)
	}
	if a.Next != nil {
		next = *a.Next
	}
	return a.Tasks, next, nil
}
