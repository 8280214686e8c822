package cortex

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// broker is a cortex process the tests started: the real binary (CORTEX_BIN, or the
// workspace's target/debug/cortex) on loopback ports.
type broker struct {
	t    *testing.T
	data string
	quic string
	cmd  *exec.Cmd
}

func cortexBin() string {
	if b := os.Getenv("CORTEX_BIN"); b != "" {
		return b
	}
	target := os.Getenv("CARGO_TARGET_DIR")
	if target == "" {
		target = filepath.Join("..", "..", "target")
	}
	return filepath.Join(target, "debug", "cortex")
}

// startBroker starts a broker on a fresh data directory.
func startBroker(t *testing.T) *broker {
	t.Helper()
	b := &broker{t: t, data: t.TempDir(), quic: "127.0.0.1:0"}
	b.start()
	t.Cleanup(b.kill)
	return b
}

// start runs the binary and waits for it to report its QUIC address (which a restart
// keeps, so clients find it again).
func (b *broker) start() {
	b.t.Helper()
	cmd := exec.Command(cortexBin(), "serve", "--data-dir", b.data, "--quic", b.quic,
		"--resp", "127.0.0.1:0", "--http", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "RUST_LOG=warn")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("starting %s: %v", cortexBin(), err)
	}
	b.cmd = cmd
	found := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			if a, ok := strings.CutPrefix(s.Text(), "cortex: QUIC listening on "); ok {
				found <- a
			}
		}
	}()
	select {
	case b.quic = <-found:
	case <-time.After(30 * time.Second):
		b.t.Fatal("cortex did not report its QUIC port within 30 s")
	}
}

// kill ends the broker with SIGKILL (a crash: nothing is flushed or said goodbye).
func (b *broker) kill() {
	if b.cmd != nil && b.cmd.Process != nil {
		_ = b.cmd.Process.Kill()
		_ = b.cmd.Wait()
		b.cmd = nil
	}
}

func (b *broker) connect(t *testing.T, agent string) *Client {
	t.Helper()
	trust, err := TrustLocal(b.data)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Connect(ctx, Options{Servers: []string{b.quic}, Agent: agent, Trust: trust})
	if err != nil {
		t.Fatalf("connect %s: %v", agent, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// bound is the most any one step of a test waits for the broker.
const bound = 30 * time.Second

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	t.Cleanup(cancel)
	return ctx
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func fresh(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
}

var errTest = errors.New("tests failed")
