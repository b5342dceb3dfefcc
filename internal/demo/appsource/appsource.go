// Package appsource packs the sample service's source tree into the
// deterministic tar archive that the slipway binary carries for `slipway
// demo`, and unpacks it again. The same tree always gives the same bytes:
// entries are sorted, and times, owners and modes are normalised.
package appsource

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// epoch is the modification time written for every entry.
var epoch = time.Date(2018, 1, 1, 0, 0, 0, 0, time.UTC)

// Files lists the files of the source tree at dir, as slash-separated paths
// relative to dir, sorted. It asks git, so that what the repository ignores
// (built binaries, local databases) stays out; files that git tracks but that
// were deleted from the working tree are left out too.
func Files(dir string) ([]string, error) {
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", ".")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("list files of %s with git (is it inside a git checkout?): %s: %w", dir, strings.TrimSpace(stderr.String()), err)
	}
	var files []string
	for _, name := range strings.Split(string(out), "\x00") {
		if name == "" {
			continue
		}
		fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(name)))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list files of %s: %w", dir, err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		files = append(files, name)
	}
	slices.Sort(files)
	files = slices.Compact(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("list files of %s: no files found", dir)
	}
	return files, nil
}

// Pack writes the deterministic archive of files (from Files) under dir.
func Pack(w io.Writer, dir string, files []string) error {
	tw := tar.NewWriter(w)
	for _, name := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("pack %s: %w", name, err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("pack %s: %w", name, err)
		}
		mode := int64(0o644)
		if fi.Mode()&0o111 != 0 {
			mode = 0o755
		}
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     name,
			Mode:     mode,
			Size:     int64(len(data)),
			ModTime:  epoch,
			Format:   tar.FormatPAX,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("pack %s: %w", name, err)
		}
		if _, err := tw.Write(data); err != nil {
			return fmt.Errorf("pack %s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("pack %s: %w", dir, err)
	}
	return nil
}

// PackDir lists and packs dir in one step.
func PackDir(dir string) ([]byte, error) {
	files, err := Files(dir)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := Pack(&buf, dir, files); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Unpack writes the files of an archive made by Pack under dir. It refuses any
// entry that is not a plain file or whose path would land outside dir.
func Unpack(archive []byte, dir string) error {
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read source archive: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return fmt.Errorf("source archive entry %q: only plain files are allowed", hdr.Name)
		}
		clean := path.Clean(hdr.Name)
		if !fs.ValidPath(clean) || clean != hdr.Name {
			return fmt.Errorf("source archive entry %q: path is not a clean relative path", hdr.Name)
		}
		dst := filepath.Join(dir, filepath.FromSlash(clean))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("unpack %s: %w", hdr.Name, err)
		}
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fs.FileMode(hdr.Mode)&0o755)
		if err != nil {
			return fmt.Errorf("unpack %s: %w", hdr.Name, err)
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("unpack %s: %w", hdr.Name, err)
		}
	}
}
