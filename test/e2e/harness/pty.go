//go:build e2e

package harness

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// PTY runs a command on a new pseudo-terminal, as a person at a terminal
// would: crictl exec -it needs one to send a tty session.
type PTY struct {
	Cmd    *exec.Cmd
	master *os.File

	mu  sync.Mutex
	out bytes.Buffer
}

// StartPTY starts name with args on a new pty (its session leader, the
// pty as controlling terminal).
func StartPTY(name string, args ...string) (*PTY, error) {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, fmt.Errorf("ptsname: %w", err)
	}
	slave, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, err
	}
	defer slave.Close()
	if err := unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 30, Col: 100}); err != nil {
		master.Close()
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		master.Close()
		return nil, err
	}
	p := &PTY{Cmd: cmd, master: master}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			p.mu.Lock()
			p.out.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return p, nil
}

// Type writes s to the terminal, as typed keys.
func (p *PTY) Type(s string) error {
	_, err := p.master.WriteString(s)
	return err
}

// Output is everything the terminal showed so far.
func (p *PTY) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Expect waits until the terminal has shown want (after what it showed
// before the call) or timeout passes.
func (p *PTY) Expect(want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(p.Output(), want) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("terminal did not show %q within %v; it showed %q", want, timeout, p.Output())
}

// Wait waits for the command to end, at most timeout, and closes the pty.
func (p *PTY) Wait(timeout time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- p.Cmd.Wait() }()
	defer p.master.Close()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		p.Cmd.Process.Kill()
		return fmt.Errorf("%s still running after %v", p.Cmd.Path, timeout)
	}
}

// CrictlArgv is the program and arguments of crictl against this
// instance, for a test that runs it itself (on a pty, say).
func (e *Env) CrictlArgv(args ...string) (string, []string) {
	return filepath.Join(e.Bin, "crictl"), append([]string{"--config", e.crictlY}, args...)
}
