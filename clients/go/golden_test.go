package cortex

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestGoldenVectors decodes every vector the Rust codec generated (protocol/golden/) and
// re-encodes it to the same bytes; a few are checked field by field, so that a
// consistent misreading (two fields swapped both ways) fails too.
func TestGoldenVectors(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "protocol", "golden", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden vectors found: %v", err)
	}
	tags := map[uint32]bool{}
	decoded := map[string]frame{}
	for _, path := range files {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		kv := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
			k, v, ok := strings.Cut(line, ": ")
			if !ok {
				t.Fatalf("%s: bad line %q", path, line)
			}
			kv[k] = v
		}
		want, err := hex.DecodeString(kv["hex"])
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		tagText, name, _ := strings.Cut(kv["frame"], " ")
		tag, _ := strconv.Atoi(tagText)
		f, err := readFrame(bytes.NewReader(want))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if f.name() != name || f.tag() != uint32(tag) {
			t.Fatalf("%s: decoded as %d %s, the file says %d %s", path, f.tag(), f.name(), tag, name)
		}
		if got := encodeFrame(f); !bytes.Equal(got, want) {
			t.Fatalf("%s: re-encoded differently\n got %x\nwant %x", path, got, want)
		}
		tags[f.tag()] = true
		decoded[filepath.Base(path)] = f
	}
	for tag := uint32(0); tag <= 22; tag++ {
		if !tags[tag] {
			t.Errorf("no golden vector decodes to frame %d", tag)
		}
	}

	p := decoded["03-publish.txt"].(*publishFrame)
	m := p.Messages[0]
	if string(p.Stream) != "tasks" || len(p.Messages) != 2 || m.Lane != High ||
		m.TTL.Milliseconds() != 60000 || m.Key != "k-1" || m.Fields.Map()["pr"] != "42" ||
		m.Headers.Map()["trace"] != "t1" || p.Messages[1].Lane != Heartbeat {
		t.Errorf("Publish read wrongly: %+v", p)
	}
	r := decoded["04-published.txt"].(*publishedFrame).Results
	if !r[0].Stored || r[0].ID.String() != "1764000000123-7" || r[1].Stored ||
		r[1].Code != CodeTooLarge || !r[2].Duplicate {
		t.Errorf("Published read wrongly: %+v", r)
	}
	d := decoded["08-deliveries.txt"].(*deliveriesFrame).Items[0]
	if d.Attempt != 2 || d.Lane != Critical || string(d.Producer) != "harold" ||
		d.Headers.Map()[HeaderReplyTo] != "cortex:replies:harold" {
		t.Errorf("Deliveries read wrongly: %+v", d)
	}
	w := decoded["01-welcome.txt"].(*welcome)
	if w.Limits.Batch != 1000 || w.Limits.FrameBytes != FrameBytesMax || w.Limits.RangeCount != 10000 {
		t.Errorf("Welcome read wrongly: %+v", w)
	}
	tk := decoded["21-admin-answer-task.txt"].(*adminAnswerFrame).Ans.Tasks[0]
	if tk.ID != "T1" || tk.State != "canceled" || *tk.Consumer != "pink" || len(tk.History) != 2 ||
		tk.History[1].Event != "canceled" || tk.History[0].Seq != 1 || *tk.FinishedMs != 1764000000200 {
		t.Errorf("Task read wrongly: %+v", tk)
	}
	sub := decoded["20-admin-task-submit.txt"].(*adminFrame).Req.Task
	if sub.Agent != "pink" || *sub.Task != "T1" || sub.Lane != High || sub.Deadline != 60000 ||
		sub.Headers.Map()["cortex-delay-ms"] != "500" {
		t.Errorf("Task submit read wrongly: %+v", sub)
	}
	ag := decoded["21-admin-answer-agents.txt"].(*adminAnswerFrame).Ans.Agents
	if len(ag) != 1 || ag[0].Name != "pink" || ag[0].Sessions[0].Client != "cortex-py/0.1.0" || ag[0].Sessions[0].Node != 2 ||
		ag[0].Sessions[0].Serves[0] != (Served{"cortex:inbox:pink", "cortex-responders"}) {
		t.Errorf("Agents read wrongly: %+v", ag)
	}
	cf := decoded["22-canceled.txt"].(*canceledFrame)
	if string(cf.Task) != "T1" || cf.ID.String() != "1764000000123-7" {
		t.Errorf("Canceled read wrongly: %+v", cf)
	}
	e := decoded["02-error.txt"].(*errorFrame)
	if err := serverError(e); err.Error() != "cortex: NoResponders: nobody serves pink" {
		t.Errorf("Error read wrongly: %v", err)
	}
}

// TestDecoderRefusesLiesAboutLengths: a length larger than what follows is refused
// without allocating it.
func TestDecoderRefusesLiesAboutLengths(t *testing.T) {
	body := []byte{3, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f}
	if _, err := decodeFrame(body); err == nil {
		t.Fatal("a stream name claiming 2^60 bytes decoded")
	}
	if _, err := decodeFrame([]byte{23, 0, 0, 0}); err == nil {
		t.Fatal("an unknown tag decoded")
	}
	credit := encodeFrame(&creditFrame{Window: 5})
	if !bytes.Equal(credit, []byte{8, 0, 0, 0, 6, 0, 0, 0, 5, 0, 0, 0}) {
		t.Fatalf("Credit{5} is %x", credit)
	}
	if _, err := decodeFrame(append(credit[4:], 0)); err == nil {
		t.Fatal("trailing bytes decoded")
	}
}
