package cortex

// Administration and inspection frames (Admin, AdminAnswer) and their types.

// StreamStat is a stream as Stat reports it.
type StreamStat struct {
	Name   string
	Length uint64
	LastID ID
	// Entries per lane, critical first.
	Lanes  []uint64
	Groups []GroupStat
}

// GroupStat is a consumer group in a StreamStat.
type GroupStat struct {
	Name          string
	Consumers     uint64
	Pending       uint64
	Lag           *uint64 // nil: unknown
	LastDelivered ID
	Policy        bool
}

// Policy is a group's delivery policy.
type Policy struct {
	AckWaitMs   *uint64
	MaxAttempts uint32
	BackoffMs   []uint64
	MaxAgeMs    *uint64
	DeadLetter  string
}

// PolicyChange changes a group's policy; nil fields keep their value. For AckWaitMs and
// MaxAgeMs, a non-nil pointer to nil removes the limit.
type PolicyChange struct {
	MaxAttempts *uint32
	BackoffMs   *[]uint64
	AckWaitMs   **uint64
	MaxAgeMs    **uint64
	DeadLetter  *string
}

// DLQSelect chooses dead letters; nil fields do not filter.
type DLQSelect struct {
	DLQ    *string // nil: cortex:dlq
	ID     *ID
	Origin *string
	Group  *string
	Reason *string // max_attempts, expired, stale, rejected, canceled
	Count  uint32
}

// DeadLetter is an entry of a dead-letter stream.
type DeadLetter struct {
	ID        ID
	Origin    string
	OriginID  ID
	Group     string
	Consumer  string
	Reason    string
	Failures  uint32
	LastError *string
	DeadAtMs  uint64
	Fields    Fields
}

// clusterChange is a membership change: Add (with Addr) or Remove.
type clusterChange struct {
	Add  bool
	ID   uint64
	Addr string
}

// adminRequest is the AdminRequest enum: Kind is its variant.
type adminRequest struct {
	Kind      uint32 // 0 Stat, 1 Policy, 2 DlqList, 3 DlqRedrive, 4 DlqPurge, 5 Backup, 6 Cluster, 7 Task, 8 Agents
	Stream    *string
	Group     string
	Change    *PolicyChange
	Select    DLQSelect
	Dir       string
	Cluster   *clusterChange
	Task      *taskCall
	hasStream bool
}

type adminFrame struct{ Req adminRequest }

func (*adminFrame) tag() uint32  { return 20 }
func (*adminFrame) name() string { return "Admin" }

func encOptStrBytes(e *enc, s *string) {
	if s == nil {
		e.u8(0)
		return
	}
	e.u8(1)
	e.bytes([]byte(*s))
}

func decOptStrBytes(d *dec) *string {
	b, ok := d.optBytes()
	if !ok {
		return nil
	}
	s := string(b)
	return &s
}

func encOptOptU64(e *enc, v **uint64) {
	if v == nil {
		e.u8(0)
		return
	}
	e.u8(1)
	e.optU64(*v)
}

func decOptOptU64(d *dec) **uint64 {
	if !d.some() {
		return nil
	}
	v := d.optU64()
	return &v
}

func (s *DLQSelect) encode(e *enc) {
	encOptStrBytes(e, s.DLQ)
	e.optID(s.ID)
	encOptStrBytes(e, s.Origin)
	encOptStrBytes(e, s.Group)
	e.optStr(s.Reason)
	e.u32(s.Count)
}

func (s *DLQSelect) decode(d *dec) {
	s.DLQ, s.ID, s.Origin, s.Group = decOptStrBytes(d), d.optID(), decOptStrBytes(d), decOptStrBytes(d)
	s.Reason, s.Count = d.optStr(), d.u32()
}

func (f *adminFrame) encode(e *enc) {
	r := &f.Req
	e.u32(r.Kind)
	switch r.Kind {
	case 0:
		encOptStrBytes(e, r.Stream)
	case 1:
		e.bytes([]byte(*r.Stream))
		e.bytes([]byte(r.Group))
		if r.Change == nil {
			e.u8(0)
		} else {
			c := r.Change
			e.u8(1)
			e.optU32(c.MaxAttempts)
			if c.BackoffMs == nil {
				e.u8(0)
			} else {
				e.u8(1)
				e.u64s(*c.BackoffMs)
			}
			encOptOptU64(e, c.AckWaitMs)
			encOptOptU64(e, c.MaxAgeMs)
			encOptStrBytes(e, c.DeadLetter)
		}
	case 2, 3, 4:
		r.Select.encode(e)
	case 5:
		e.str(r.Dir)
	case 6:
		if r.Cluster == nil {
			e.u8(0)
		} else if r.Cluster.Add {
			e.u8(1)
			e.u32(0)
			e.u64(r.Cluster.ID)
			e.str(r.Cluster.Addr)
		} else {
			e.u8(1)
			e.u32(1)
			e.u64(r.Cluster.ID)
		}
	case 7:
		r.Task.encode(e)
	case 8:
	}
}

func (f *adminFrame) decode(d *dec) {
	r := &f.Req
	r.Kind = d.u32()
	switch r.Kind {
	case 0:
		r.Stream = decOptStrBytes(d)
	case 1:
		s := string(d.bytes())
		r.Stream = &s
		r.Group = string(d.bytes())
		if d.some() {
			c := &PolicyChange{}
			c.MaxAttempts = d.optU32()
			if d.some() {
				b := d.u64s()
				c.BackoffMs = &b
			}
			c.AckWaitMs = decOptOptU64(d)
			c.MaxAgeMs = decOptOptU64(d)
			c.DeadLetter = decOptStrBytes(d)
			r.Change = c
		}
	case 2, 3, 4:
		r.Select.decode(d)
	case 5:
		r.Dir = d.str()
	case 6:
		if d.some() {
			c := &clusterChange{}
			switch d.u32() {
			case 0:
				c.Add, c.ID, c.Addr = true, d.u64(), d.str()
			case 1:
				c.ID = d.u64()
			default:
				d.fail("unknown cluster change")
			}
			r.Cluster = c
		}
	case 7:
		r.Task = &taskCall{}
		r.Task.decode(d)
	case 8:
	default:
		d.fail("unknown admin request %d", r.Kind)
	}
}

// adminAnswer is the AdminAnswer enum: Kind is its variant.
type adminAnswer struct {
	Kind        uint32 // 0 Stat, 1 Policy, 2 DeadLetters, 3 Count, 4 Backup, 5 Cluster, 6 Task, 7 Tasks, 8 Agents
	Stats       []StreamStat
	Policy      *Policy
	DeadLetters []DeadLetter
	Count       uint64
	Backup      [3]uint64 // streams, keys, bytes
	Cluster     string
	Tasks       []Task
	Next        *string
	Agents      []Agent
}

type adminAnswerFrame struct{ Ans adminAnswer }

func (*adminAnswerFrame) tag() uint32  { return 21 }
func (*adminAnswerFrame) name() string { return "AdminAnswer" }

func (f *adminAnswerFrame) encode(e *enc) {
	a := &f.Ans
	e.u32(a.Kind)
	switch a.Kind {
	case 0:
		e.u64(uint64(len(a.Stats)))
		for _, s := range a.Stats {
			e.bytes([]byte(s.Name))
			e.u64(s.Length)
			e.id(s.LastID)
			e.u64s(s.Lanes)
			e.u64(uint64(len(s.Groups)))
			for _, g := range s.Groups {
				e.bytes([]byte(g.Name))
				e.u64(g.Consumers)
				e.u64(g.Pending)
				e.optU64(g.Lag)
				e.id(g.LastDelivered)
				e.boolean(g.Policy)
			}
		}
	case 1:
		if a.Policy == nil {
			e.u8(0)
		} else {
			p := a.Policy
			e.u8(1)
			e.optU64(p.AckWaitMs)
			e.u32(p.MaxAttempts)
			e.u64s(p.BackoffMs)
			e.optU64(p.MaxAgeMs)
			e.bytes([]byte(p.DeadLetter))
		}
	case 2:
		e.u64(uint64(len(a.DeadLetters)))
		for _, x := range a.DeadLetters {
			e.id(x.ID)
			e.bytes([]byte(x.Origin))
			e.id(x.OriginID)
			e.bytes([]byte(x.Group))
			e.bytes([]byte(x.Consumer))
			e.str(x.Reason)
			e.u32(x.Failures)
			encOptStrBytes(e, x.LastError)
			e.u64(x.DeadAtMs)
			e.pairs(x.Fields)
		}
	case 3:
		e.u64(a.Count)
	case 4:
		e.u64(a.Backup[0])
		e.u64(a.Backup[1])
		e.u64(a.Backup[2])
	case 5:
		e.str(a.Cluster)
	case 6:
		a.Tasks[0].encode(e)
	case 7:
		e.u64(uint64(len(a.Tasks)))
		for i := range a.Tasks {
			a.Tasks[i].encode(e)
		}
		encOptStrBytes(e, a.Next)
	case 8:
		e.u64(uint64(len(a.Agents)))
		for i := range a.Agents {
			a.Agents[i].encode(e)
		}
	}
}

func (f *adminAnswerFrame) decode(d *dec) {
	a := &f.Ans
	a.Kind = d.u32()
	switch a.Kind {
	case 0:
		n := d.count(48)
		for i := 0; i < n && d.err == nil; i++ {
			var s StreamStat
			s.Name, s.Length, s.LastID, s.Lanes = string(d.bytes()), d.u64(), d.id(), d.u64s()
			m := d.count(42)
			for j := 0; j < m && d.err == nil; j++ {
				var g GroupStat
				g.Name, g.Consumers, g.Pending, g.Lag = string(d.bytes()), d.u64(), d.u64(), d.optU64()
				g.LastDelivered, g.Policy = d.id(), d.boolean()
				s.Groups = append(s.Groups, g)
			}
			a.Stats = append(a.Stats, s)
		}
	case 1:
		if d.some() {
			p := &Policy{}
			p.AckWaitMs, p.MaxAttempts, p.BackoffMs = d.optU64(), d.u32(), d.u64s()
			p.MaxAgeMs, p.DeadLetter = d.optU64(), string(d.bytes())
			a.Policy = p
		}
	case 2:
		n := d.count(85)
		for i := 0; i < n && d.err == nil; i++ {
			var x DeadLetter
			x.ID, x.Origin, x.OriginID = d.id(), string(d.bytes()), d.id()
			x.Group, x.Consumer, x.Reason = string(d.bytes()), string(d.bytes()), d.str()
			x.Failures, x.LastError, x.DeadAtMs = d.u32(), decOptStrBytes(d), d.u64()
			x.Fields = d.pairs()
			a.DeadLetters = append(a.DeadLetters, x)
		}
	case 3:
		a.Count = d.u64()
	case 4:
		a.Backup = [3]uint64{d.u64(), d.u64(), d.u64()}
	case 5:
		a.Cluster = d.str()
	case 6:
		var t Task
		t.decode(d)
		a.Tasks = []Task{t}
	case 7:
		n := d.count(76)
		for i := 0; i < n && d.err == nil; i++ {
			var t Task
			t.decode(d)
			a.Tasks = append(a.Tasks, t)
		}
		a.Next = decOptStrBytes(d)
	case 8:
		n := d.count(24)
		for i := 0; i < n && d.err == nil; i++ {
			var x Agent
			x.decode(d)
			a.Agents = append(a.Agents, x)
		}
	default:
		d.fail("unknown admin answer %d", a.Kind)
	}
}
