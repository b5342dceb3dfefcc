package local

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// A sandboxed replica runs in a user namespace that maps its ids 0-65535
// to a range of unprivileged ids of the host: root in the image is not
// root on the host. The range is the one /etc/subuid and /etc/subgid give
// the user "slipway" (as Docker's userns-remap takes dockremap's), or
// 100000-165535, useradd's first subordinate range, when they give none.
const (
	idMapSize      = 65536
	defaultIDBase  = 100000
	subIDOwnerName = "slipway"
)

// idMap is the host's first uid and gid of the replicas' range.
type idMap struct {
	UID int `json:"uid"`
	GID int `json:"gid"`
}

// hostUID is the host's uid of the file owner id: an id of the range
// stays, an id below 65536 (an image's) is shifted into the range, and an
// id of another range keeps its offset in a range aligned to 65536.
func (m idMap) hostUID(id int) int { return shiftID(m.UID, id) }
func (m idMap) hostGID(id int) int { return shiftID(m.GID, id) }

func shiftID(base, id int) int {
	switch {
	case id >= base && id < base+idMapSize:
		return id
	case id < idMapSize:
		return base + id
	default:
		return base + id%idMapSize
	}
}

// replicaIDMap reads the replicas' range from /etc/subuid and /etc/subgid.
func replicaIDMap() (idMap, error) {
	uid, err := subIDBase("/etc/subuid")
	if err != nil {
		return idMap{}, err
	}
	gid, err := subIDBase("/etc/subgid")
	if err != nil {
		return idMap{}, err
	}
	return idMap{UID: uid, GID: gid}, nil
}

// subIDBase is the start of the first range of at least idMapSize ids the
// file gives subIDOwnerName, or defaultIDBase when it gives none.
func subIDBase(file string) (int, error) {
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return defaultIDBase, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read subordinate ids: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(fields) != 3 || fields[0] != subIDOwnerName {
			continue
		}
		start, err1 := strconv.Atoi(fields[1])
		count, err2 := strconv.Atoi(fields[2])
		if err1 != nil || err2 != nil || start <= 0 {
			return 0, fmt.Errorf("%s: the line of %s (%q) is not NAME:START:COUNT", file, subIDOwnerName, sc.Text())
		}
		if count < idMapSize {
			return 0, fmt.Errorf("%s: %s has %d ids; replicas need %d: give it a range of %d", file, subIDOwnerName, count, idMapSize, idMapSize)
		}
		return start, nil
	}
	return defaultIDBase, sc.Err()
}

// shiftMarker records, beside an unpacked image's rootfs, the range its
// files were given to.
const shiftMarker = "idmap"

// shiftImage gives the files of the image unpacked in imageDir to the
// replicas' range, once per range (several supervisors may share the
// image: a lock file serializes them).
func shiftImage(imageDir string, m idMap) error {
	want := fmt.Sprintf("%d:%d\n", m.UID, m.GID)
	marker := filepath.Join(imageDir, shiftMarker)
	if b, err := os.ReadFile(marker); err == nil && string(b) == want {
		return nil
	}
	lock, err := os.OpenFile(filepath.Join(imageDir, shiftMarker+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("give the image's files to the replicas' ids: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("give the image's files to the replicas' ids: lock: %w", err)
	}
	if b, err := os.ReadFile(marker); err == nil && string(b) == want {
		return nil
	}
	if err := shiftTree(filepath.Join(imageDir, "rootfs"), m); err != nil {
		return fmt.Errorf("give the image's files to the replicas' ids: %w", err)
	}
	return os.WriteFile(marker, []byte(want), 0o644)
}

// shiftTree gives every file under root, root too, the host ids of its
// ids in the replicas' range (symlinks themselves, not what they point to).
// chown clears set-user-id bits: replicas run with no_new_privs, where
// they would not apply anyway.
func shiftTree(root string, m idMap) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		uid, gid := m.hostUID(int(st.Uid)), m.hostGID(int(st.Gid))
		if int(st.Uid) == uid && int(st.Gid) == gid {
			return nil
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			return err
		}
		if mode := fi.Mode(); mode.IsRegular() && mode&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
			// Keep the mode bits chown cleared; no_new_privs makes
			// them inert in a replica.
			os.Chmod(p, mode.Perm()|mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
		}
		return nil
	})
}

// ownDataDir gives the data directory to the image's user (uid, gid in the
// namespace) and what is in it to the replicas' range, when its owner is
// not that user already.
func ownDataDir(dir string, m idMap, uid, gid int) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) == m.hostUID(uid) && int(st.Gid) == m.hostGID(gid) {
		return nil
	}
	if err := shiftTree(dir, m); err != nil {
		return fmt.Errorf("give the data directory to the replicas' ids: %w", err)
	}
	if err := os.Chown(dir, m.hostUID(uid), m.hostGID(gid)); err != nil {
		return fmt.Errorf("give the data directory to the image's user: %w", err)
	}
	return nil
}
