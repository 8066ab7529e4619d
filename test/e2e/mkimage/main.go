// Command mkimage writes an OCI image layout tar holding two small images built
// from a static busybox, for importing with `ctr images import`:
//
//   - docker.io/library/busybox:e2e   Entrypoint ["/bin/sh"], Cmd ["-c", "exec sleep 2147483647"]
//   - registry.k8s.io/pause:3.10.2    Entrypoint ["/bin/sleep", "2147483647"]
//
// Both share one gzip layer: /bin/busybox with a link for every applet,
// /etc/passwd and /etc/group with root (0) and user (1000), /tmp, /home/user.
// The output is reproducible: same busybox in, same digests out.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// Image references. The pause ref must match containerd's sandbox image.
const (
	BusyboxRef = "docker.io/library/busybox:e2e"
	PauseRef   = "registry.k8s.io/pause:3.10.2"
)

const (
	mediaManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaIndex    = "application/vnd.oci.image.index.v1+json"
	mediaConfig   = "application/vnd.oci.image.config.v1+json"
	mediaLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

var epoch = time.Unix(946684800, 0).UTC() // 2000-01-01, fixed for reproducible output

// fallbackApplets is used when `busybox --list` cannot be run.
var fallbackApplets = []string{
	"cat", "chmod", "cp", "date", "echo", "env", "false", "grep", "head", "hostname",
	"id", "kill", "ln", "ls", "mkdir", "mv", "ps", "pwd", "rm", "sh", "sleep",
	"stat", "tail", "test", "touch", "true", "uname", "wc", "whoami",
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type blob struct {
	digest string
	data   []byte
}

func newBlob(data []byte) blob {
	return blob{digest: fmt.Sprintf("sha256:%x", sha256.Sum256(data)), data: data}
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
	layerTar, err := buildLayer(bb, applets(busyboxPath))
	if err != nil {
		return fmt.Errorf("build layer: %w", err)
	}
	diffID := fmt.Sprintf("sha256:%x", sha256.Sum256(layerTar))
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return err
	}
	zw.ModTime = epoch
	if _, err := zw.Write(layerTar); err != nil {
		return fmt.Errorf("gzip layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("gzip layer: %w", err)
	}
	layer := newBlob(gz.Bytes())

	blobs := []blob{layer}
	var manifests []descriptor
	for _, img := range []struct {
		ref        string
		entrypoint []string
		cmd        []string
	}{
		{BusyboxRef, []string{"/bin/sh"}, []string{"-c", "exec sleep 2147483647"}},
		{PauseRef, []string{"/bin/sleep", "2147483647"}, nil},
	} {
		cfg, err := json.Marshal(map[string]any{
			"created":      epoch.Format(time.RFC3339),
			"architecture": "amd64",
			"os":           "linux",
			"config": map[string]any{
				"Env":        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
				"Entrypoint": img.entrypoint,
				"Cmd":        img.cmd,
				"WorkingDir": "/",
			},
			"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}},
		})
		if err != nil {
			return fmt.Errorf("marshal config: %w", err)
		}
		config := newBlob(cfg)
		man, err := json.Marshal(map[string]any{
			"schemaVersion": 2,
			"mediaType":     mediaManifest,
			"config":        descriptor{MediaType: mediaConfig, Digest: config.digest, Size: int64(len(config.data))},
			"layers":        []descriptor{{MediaType: mediaLayer, Digest: layer.digest, Size: int64(len(layer.data))}},
		})
		if err != nil {
			return fmt.Errorf("marshal manifest: %w", err)
		}
		manifest := newBlob(man)
		blobs = append(blobs, config, manifest)
		manifests = append(manifests, descriptor{
			MediaType:   mediaManifest,
			Digest:      manifest.digest,
			Size:        int64(len(manifest.data)),
			Platform:    &platform{Architecture: "amd64", OS: "linux"},
			Annotations: map[string]string{"io.containerd.image.name": img.ref},
		})
	}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaIndex,
		"manifests":     manifests,
	})
	if err != nil {
		return fmt.Errorf("marshal index: %w", err)
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	type file struct {
		name string
		data []byte
	}
	files := []file{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
	}
	for _, b := range blobs {
		files = append(files, file{"blobs/sha256/" + strings.TrimPrefix(b.digest, "sha256:"), b.data})
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: epoch}); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := writeFile(tw, f.name, 0o644, 0, 0, f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("close tar: %w", err)
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
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

func buildLayer(busybox []byte, applets []string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := []struct {
		name     string
		mode     int64
		uid, gid int
	}{
		{"bin/", 0o755, 0, 0},
		{"dev/", 0o755, 0, 0},
		{"etc/", 0o755, 0, 0},
		{"home/", 0o755, 0, 0},
		{"home/user/", 0o755, 1000, 1000},
		{"proc/", 0o555, 0, 0},
		{"root/", 0o700, 0, 0},
		{"sys/", 0o555, 0, 0},
		{"tmp/", 0o1777, 0, 0},
		{"usr/", 0o755, 0, 0},
		{"usr/bin/", 0o755, 0, 0},
		{"var/", 0o755, 0, 0},
	}
	for _, d := range dirs {
		h := &tar.Header{Typeflag: tar.TypeDir, Name: d.name, Mode: d.mode, Uid: d.uid, Gid: d.gid, ModTime: epoch}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
	}
	if err := writeFile(tw, "bin/busybox", 0o755, 0, 0, busybox); err != nil {
		return nil, err
	}
	for _, a := range applets {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		h := &tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: epoch}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
	}
	h := &tar.Header{Typeflag: tar.TypeSymlink, Name: "usr/bin/env", Linkname: "../../bin/busybox", Mode: 0o777, ModTime: epoch}
	if err := tw.WriteHeader(h); err != nil {
		return nil, err
	}
	etc := []struct{ name, data string }{
		{"etc/passwd", "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"},
		{"etc/group", "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n"},
	}
	for _, f := range etc {
		if err := writeFile(tw, f.name, 0o644, 0, 0, []byte(f.data)); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeFile(tw *tar.Writer, name string, mode int64, uid, gid int, data []byte) error {
	h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Uid: uid, Gid: gid, Size: int64(len(data)), ModTime: epoch}
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("tar header %s: %w", name, err)
	}
	if _, err := io.Copy(tw, bytes.NewReader(data)); err != nil {
		return fmt.Errorf("tar write %s: %w", name, err)
	}
	return nil
}
