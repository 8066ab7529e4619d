// Command mkimage writes an OCI image layout tar holding two small images built
// from a static busybox, for importing with `ctr images import`:
//
//   - docker.io/library/busybox:e2e   Entrypoint ["/bin/sh"], Cmd ["-c", "exec sleep 2147483647"]
//   - registry.k8s.io/pause:3.10.2    Entrypoint ["/bin/sleep", "2147483647"]
//
// Both share one gzip layer: /bin/busybox with a link for every applet,
// /etc/passwd and /etc/group with root (0) and user (1000), /tmp, /home/user.
// The output is reproducible: same busybox in, same digests out. The tar
// and OCI layout code is shared with `make image` (internal/ociimage).
package main

import (
	"archive/tar"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"sort"
	"strings"

	"github.com/execguard/execguard/internal/ociimage"
)

// Image references. The pause ref must match containerd's sandbox image.
const (
	BusyboxRef = "docker.io/library/busybox:e2e"
	PauseRef   = "registry.k8s.io/pause:3.10.2"
)

// fallbackApplets is used when `busybox --list` cannot be run.
var fallbackApplets = []string{
	"cat", "chmod", "cp", "date", "echo", "env", "false", "grep", "head", "hostname",
	"id", "kill", "ln", "ls", "mkdir", "mv", "ps", "pwd", "rm", "sh", "sleep",
	"stat", "tail", "test", "touch", "true", "uname", "wc", "whoami",
}

func main() {
	out := flag.String("o", "", "output tar file (required)")
	busybox := flag.String("busybox", "/bin/busybox", "static busybox binary to put in the image")
	flag.Parse()
	if *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*out, *busybox); err != nil {
		log.Fatalf("mkimage: %v", err)
	}
}

func run(out, busyboxPath string) error {
	bb, err := os.ReadFile(busyboxPath)
	if err != nil {
		return fmt.Errorf("read busybox: %w", err)
	}
	layer, err := ociimage.NewLayer(entries(bb, applets(busyboxPath)), ociimage.Epoch)
	if err != nil {
		return fmt.Errorf("build layer: %w", err)
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	images := []ociimage.Image{
		{Ref: BusyboxRef, Layers: []*ociimage.Layer{layer}, Config: ociimage.Config{
			Env: env, Entrypoint: []string{"/bin/sh"}, Cmd: []string{"-c", "exec sleep 2147483647"}, WorkingDir: "/"}},
		{Ref: PauseRef, Layers: []*ociimage.Layer{layer}, Config: ociimage.Config{
			Env: env, Entrypoint: []string{"/bin/sleep", "2147483647"}, WorkingDir: "/"}},
	}
	_, err = ociimage.WriteFile(out, images, ociimage.Options{})
	return err
}

// applets lists busybox's applets by running it; the binary is static.
func applets(busybox string) []string {
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return fallbackApplets
	}
	list := strings.Fields(string(out))
	if len(list) == 0 {
		return fallbackApplets
	}
	sort.Strings(list)
	return list
}

func entries(busybox []byte, applets []string) []ociimage.Entry {
	es := []ociimage.Entry{
		ociimage.Dir("bin", 0o755),
		ociimage.Dir("dev", 0o755),
		ociimage.Dir("etc", 0o755),
		ociimage.Dir("home", 0o755),
		{Name: "home/user/", Type: tar.TypeDir, Mode: 0o755, UID: 1000, GID: 1000},
		ociimage.Dir("proc", 0o555),
		ociimage.Dir("root", 0o700),
		ociimage.Dir("sys", 0o555),
		ociimage.Dir("tmp", 0o1777),
		ociimage.Dir("usr", 0o755),
		ociimage.Dir("usr/bin", 0o755),
		ociimage.Dir("var", 0o755),
		ociimage.File("bin/busybox", 0o755, busybox),
		ociimage.Symlink("usr/bin/env", "../../bin/busybox"),
		ociimage.File("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")),
		ociimage.File("etc/group", 0o644, []byte("root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n")),
	}
	for _, a := range applets {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		es = append(es, ociimage.Symlink("bin/"+a, "busybox"))
	}
	return es
}
