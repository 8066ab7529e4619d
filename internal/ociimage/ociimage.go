// Package ociimage writes OCI image layouts as tar files, reproducibly, for
// importing with `ctr images import` (and `docker load`) without a registry
// or a daemon. Same inputs give the same bytes: layer entries are sorted by
// name, every time stamp is fixed, owners are numeric, gzip carries no
// time or name, and JSON is encoded with sorted keys.
//
// `make image` (the nri-execguard image) and test/e2e/mkimage (the e2e
// busybox and pause images) both build with it.
package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Media types of the layout.
const (
	MediaManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaIndex    = "application/vnd.oci.image.index.v1+json"
	MediaConfig   = "application/vnd.oci.image.config.v1+json"
	MediaLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// AnnotationName is the index annotation containerd's importer names an
// image by; AnnotationRefName is the OCI one (the tag).
const (
	AnnotationName    = "io.containerd.image.name"
	AnnotationRefName = "org.opencontainers.image.ref.name"
)

// Epoch is the default time stamp of every file and of the image config:
// 2000-01-01T00:00:00Z.
var Epoch = time.Unix(946684800, 0).UTC()

// Entry is one file of a layer.
type Entry struct {
	Name     string // relative path; a directory's ends with "/"
	Type     byte   // tar.TypeReg, tar.TypeDir or tar.TypeSymlink
	Mode     int64
	UID, GID int
	Data     []byte // TypeReg
	Linkname string // TypeSymlink
}

// Dir is a directory owned by root.
func Dir(name string, mode int64) Entry {
	return Entry{Name: strings.TrimSuffix(name, "/") + "/", Type: tar.TypeDir, Mode: mode}
}

// File is a regular file owned by root.
func File(name string, mode int64, data []byte) Entry {
	return Entry{Name: name, Type: tar.TypeReg, Mode: mode, Data: data}
}

// Symlink is a symbolic link.
func Symlink(name, target string) Entry {
	return Entry{Name: name, Type: tar.TypeSymlink, Mode: 0o777, Linkname: target}
}

// Layer is a built layer: the gzip blob and the digest of its tar.
type Layer struct {
	Blob   Blob
	DiffID string // sha256 of the uncompressed tar
}

// Blob is content with its digest.
type Blob struct {
	Digest string // "sha256:<hex>"
	Data   []byte
}

// NewBlob computes data's digest.
func NewBlob(data []byte) Blob {
	return Blob{Digest: fmt.Sprintf("sha256:%x", sha256.Sum256(data)), Data: data}
}

// NewLayer writes entries, sorted by name, as a tar with every time stamp
// at mtime, and gzips it (best compression, no name, time mtime).
func NewLayer(entries []Entry, mtime time.Time) (*Layer, error) {
	es := append([]Entry(nil), entries...)
	sort.SliceStable(es, func(i, j int) bool { return es[i].Name < es[j].Name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[string]bool{}
	for _, e := range es {
		if seen[e.Name] {
			return nil, fmt.Errorf("layer: %s twice", e.Name)
		}
		seen[e.Name] = true
		h := &tar.Header{Typeflag: e.Type, Name: e.Name, Mode: e.Mode, Uid: e.UID, Gid: e.GID,
			Linkname: e.Linkname, ModTime: mtime}
		if e.Type == tar.TypeReg {
			h.Size = int64(len(e.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer: %s: %w", e.Name, err)
		}
		if e.Type == tar.TypeReg {
			if _, err := tw.Write(e.Data); err != nil {
				return nil, fmt.Errorf("layer: %s: %w", e.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	raw := buf.Bytes()
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	zw.ModTime = mtime
	if _, err := zw.Write(raw); err != nil {
		return nil, fmt.Errorf("gzip layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip layer: %w", err)
	}
	return &Layer{Blob: NewBlob(gz.Bytes()), DiffID: fmt.Sprintf("sha256:%x", sha256.Sum256(raw))}, nil
}

// Config is the runtime part of an image config ("config" in the OCI image
// config).
type Config struct {
	User       string            `json:"User,omitempty"`
	Env        []string          `json:"Env,omitempty"`
	Entrypoint []string          `json:"Entrypoint,omitempty"`
	Cmd        []string          `json:"Cmd,omitempty"`
	WorkingDir string            `json:"WorkingDir,omitempty"`
	Labels     map[string]string `json:"Labels,omitempty"`
}

// Image is one image of a layout.
type Image struct {
	// Ref names the image when imported (containerd's and the OCI ref
	// annotations, docker's RepoTags).
	Ref          string
	Architecture string // GOARCH; "" is amd64
	Created      time.Time
	Config       Config
	Layers       []*Layer
	// Annotations go on the manifest (e.g. org.opencontainers.image.*).
	Annotations map[string]string
}

// Options of WriteLayout.
type Options struct {
	// DockerManifest adds manifest.json, so that `docker load` of a Docker
	// without OCI layout support takes the tar too. containerd's importer
	// reads index.json when oci-layout is present and ignores it.
	DockerManifest bool
}

// Result describes a written layout.
type Result struct {
	Manifests []string // manifest digest of each image, in order
	Configs   []string // config digest (the image id) of each image
}

// WriteLayout renders images as an OCI image layout tar and returns its
// bytes with the digests.
func WriteLayout(images []Image, opts Options) ([]byte, Result, error) {
	var res Result
	var blobs []Blob
	have := map[string]bool{}
	add := func(b Blob) {
		if !have[b.Digest] {
			have[b.Digest] = true
			blobs = append(blobs, b)
		}
	}
	type dockerManifest struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	var manifests []descriptor
	var docker []dockerManifest
	for _, img := range images {
		arch := img.Architecture
		if arch == "" {
			arch = "amd64"
		}
		created := img.Created
		if created.IsZero() {
			created = Epoch
		}
		var diffIDs []string
		var layers []descriptor
		var dockerLayers []string
		for _, l := range img.Layers {
			add(l.Blob)
			diffIDs = append(diffIDs, l.DiffID)
			layers = append(layers, descriptor{MediaType: MediaLayer, Digest: l.Blob.Digest, Size: int64(len(l.Blob.Data))})
			dockerLayers = append(dockerLayers, blobPath(l.Blob.Digest))
		}
		cfg, err := json.Marshal(map[string]any{
			"created":      created.UTC().Format(time.RFC3339),
			"architecture": arch,
			"os":           "linux",
			"config":       img.Config,
			"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
		})
		if err != nil {
			return nil, res, fmt.Errorf("marshal config: %w", err)
		}
		config := NewBlob(cfg)
		man, err := json.Marshal(manifestJSON{
			SchemaVersion: 2,
			MediaType:     MediaManifest,
			Config:        descriptor{MediaType: MediaConfig, Digest: config.Digest, Size: int64(len(config.Data))},
			Layers:        layers,
			Annotations:   img.Annotations,
		})
		if err != nil {
			return nil, res, fmt.Errorf("marshal manifest: %w", err)
		}
		manifest := NewBlob(man)
		add(config)
		add(manifest)
		ann := map[string]string{AnnotationName: img.Ref}
		if i := strings.LastIndex(img.Ref, ":"); i > strings.LastIndex(img.Ref, "/") {
			ann[AnnotationRefName] = img.Ref[i+1:]
		}
		manifests = append(manifests, descriptor{
			MediaType:   MediaManifest,
			Digest:      manifest.Digest,
			Size:        int64(len(manifest.Data)),
			Platform:    &platform{Architecture: arch, OS: "linux"},
			Annotations: ann,
		})
		docker = append(docker, dockerManifest{Config: blobPath(config.Digest), RepoTags: []string{img.Ref}, Layers: dockerLayers})
		res.Manifests = append(res.Manifests, manifest.Digest)
		res.Configs = append(res.Configs, config.Digest)
	}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaIndex,
		"manifests":     manifests,
	})
	if err != nil {
		return nil, res, fmt.Errorf("marshal index: %w", err)
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: Epoch}); err != nil {
			return nil, res, err
		}
	}
	files := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
	}
	if opts.DockerManifest {
		dm, err := json.Marshal(docker)
		if err != nil {
			return nil, res, err
		}
		files = append(files, struct {
			name string
			data []byte
		}{"manifest.json", dm})
	}
	for _, b := range blobs {
		files = append(files, struct {
			name string
			data []byte
		}{blobPath(b.Digest), b.Data})
	}
	for _, f := range files {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: Epoch}
		if err := tw.WriteHeader(h); err != nil {
			return nil, res, fmt.Errorf("tar header %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, res, fmt.Errorf("tar write %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, res, fmt.Errorf("close tar: %w", err)
	}
	return buf.Bytes(), res, nil
}

// WriteFile writes a layout tar (WriteLayout) to path through a temporary
// file in its directory and a rename.
func WriteFile(path string, images []Image, opts Options) (Result, error) {
	data, res, err := WriteLayout(images, opts)
	if err != nil {
		return res, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return res, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return res, fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return res, err
	}
	if err := tmp.Close(); err != nil {
		return res, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return res, fmt.Errorf("rename to %s: %w", path, err)
	}
	return res, nil
}

func blobPath(digest string) string {
	return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:")
}

type manifestJSON struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	Config        descriptor        `json:"config"`
	Layers        []descriptor      `json:"layers"`
	Annotations   map[string]string `json:"annotations,omitempty"`
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
