//go:build unix

package storage

import "golang.org/x/sys/unix"

// freeBytes is what an unprivileged writer may still use on the filesystem
// holding path.
func freeBytes(path string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}
