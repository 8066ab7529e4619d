// Command mkimage builds the nri-execguard image (`make image`): an OCI
// image layout tar holding the static nri-execguard and
// containerd-shim-execguard-v2 in /usr/local/bin, entrypoint nri-execguard,
// user 0, with the org.opencontainers.image.* labels. It needs no registry
// and no daemon, and it is reproducible: the same binaries and flags give
// the same bytes, so the same digest. It prints the manifest digest and
// writes it to OUT.digest.
//
// conf/deploy/Containerfile builds an equivalent image with docker, podman
// or buildah.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/execguard/execguard/internal/ociimage"
)

// Source and license of the image (org.opencontainers.image.*).
const (
	source  = "https://github.com/execguard/execguard"
	license = "Apache-2.0"
)

func main() {
	out := flag.String("o", "bin/nri-execguard-image.tar", "output tar file")
	bin := flag.String("bin", "bin", "directory with nri-execguard and containerd-shim-execguard-v2")
	ref := flag.String("ref", "ghcr.io/execguard/nri-execguard:dev", "image reference it is imported as")
	version := flag.String("version", "dev", "org.opencontainers.image.version")
	revision := flag.String("revision", "", "org.opencontainers.image.revision (git commit)")
	arch := flag.String("arch", "amd64", "GOARCH the binaries were built for")
	license := flag.String("license-file", "LICENSE", "license text put in /usr/share/doc/execguard/LICENSE")
	flag.Parse()
	if flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	digest, err := build(*out, *bin, *ref, *version, *revision, *arch, *license)
	if err != nil {
		log.Fatalf("mkimage: %v", err)
	}
	fmt.Printf("%s %s %s\n", *out, *ref, digest)
}

// Labels returns the image's labels (also its manifest annotations).
func Labels(version, revision string) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       "nri-execguard",
		"org.opencontainers.image.description": "execguard: NRI plugin nri-execguard and containerd shim containerd-shim-execguard-v2",
		"org.opencontainers.image.source":      source,
		"org.opencontainers.image.url":         source,
		"org.opencontainers.image.licenses":    license,
		"org.opencontainers.image.version":     version,
	}
	if revision != "" {
		l["org.opencontainers.image.revision"] = revision
	}
	return l
}

func build(out, bin, ref, version, revision, arch, licenseFile string) (string, error) {
	entries := []ociimage.Entry{
		ociimage.Dir("etc", 0o755),
		ociimage.File("etc/passwd", 0o644, []byte("root:x:0:0:root:/:/sbin/nologin\n")),
		ociimage.File("etc/group", 0o644, []byte("root:x:0:\n")),
		ociimage.Dir("usr", 0o755),
		ociimage.Dir("usr/local", 0o755),
		ociimage.Dir("usr/local/bin", 0o755),
		ociimage.Dir("usr/share", 0o755),
		ociimage.Dir("usr/share/doc", 0o755),
		ociimage.Dir("usr/share/doc/execguard", 0o755),
	}
	for _, b := range []string{"nri-execguard", "containerd-shim-execguard-v2"} {
		data, err := os.ReadFile(filepath.Join(bin, b))
		if err != nil {
			return "", err
		}
		entries = append(entries, ociimage.File("usr/local/bin/"+b, 0o755, data))
	}
	lic, err := os.ReadFile(licenseFile)
	if err != nil {
		return "", err
	}
	entries = append(entries, ociimage.File("usr/share/doc/execguard/LICENSE", 0o644, lic))
	layer, err := ociimage.NewLayer(entries, ociimage.Epoch)
	if err != nil {
		return "", err
	}
	labels := Labels(version, revision)
	img := ociimage.Image{
		Ref:          ref,
		Architecture: arch,
		Config: ociimage.Config{
			User:       "0:0",
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Entrypoint: []string{"/usr/local/bin/nri-execguard"},
			WorkingDir: "/",
			Labels:     labels,
		},
		Layers:      []*ociimage.Layer{layer},
		Annotations: labels,
	}
	res, err := ociimage.WriteFile(out, []ociimage.Image{img}, ociimage.Options{DockerManifest: true})
	if err != nil {
		return "", err
	}
	digest := res.Manifests[0]
	if err := os.WriteFile(out+".digest", []byte(digest+"\n"), 0o644); err != nil {
		return "", err
	}
	return digest, nil
}
