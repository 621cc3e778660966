package logparse

// Recovery on start and after Reopen: fileRun's openPath, resolve,
// resolveCompressed and catchUp find the checkpointed file among Path's
// rotated siblings (findSibling, findCompressed, rotatedSince) and read
// what was rotated while the follower was stopped, gzip files included
// (readCompressed); the rotated-name rules and the import command that
// recovers what cannot be read are here too.

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// openPath opens Path when no file is open. If a remembered position is
// unresolved, it resumes in the file at Path, or finds the remembered file
// among the siblings first (see resolve).
func (r *fileRun) openPath(ctx context.Context) error {
	file, err := os.Open(r.f.Path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if !r.missing {
				r.log.Info("log file does not exist; waiting for it to appear")
				r.missing = true
			}
			if r.unresolved {
				r.unresolved = false
				return r.resolve(ctx, nil)
			}
			return nil
		}
		if msg := err.Error(); msg != r.lastOpenErr {
			r.log.Warn("cannot open log file; will retry", "err", err)
			r.lastOpenErr = msg
		}
		return nil
	}
	r.missing, r.lastOpenErr = false, ""
	live, err := newFileState(file, r.f.Path)
	if err != nil {
		file.Close()
		return err
	}
	if r.unresolved {
		r.unresolved = false
		old := r.src
		if sameFile(live, old) {
			fp, err := fingerprint(live.file)
			if err != nil {
				live.file.Close()
				return err
			}
			if (old.fp == "" || fp == old.fp) && live.size >= old.offset {
				live.fp, live.offset, live.pos = old.fp, old.offset, old.offset
				r.log.Info("resuming log file", "offset", old.offset)
				r.cur, r.src = live, live
				return nil
			}
		}
		// Rotated or truncated while we were stopped.
		if err := r.resolve(ctx, live); err != nil || r.cur != nil || ctx.Err() != nil {
			// A renamed file was adopted, or reading a copy was
			// cancelled (the checkpoint must go on describing it).
			live.file.Close()
			return err
		}
	}
	r.log.Info("following log file from its start", "inode", live.ino)
	r.cur, r.src = live, live
	return nil
}

// resolve finds the remembered file r.src among Path's siblings (the file
// at Path, live, may be nil). A file renamed by rotation becomes the current
// file again: a syslog daemon may still be writing to it, so it is read as
// on a rotation seen while running, and left for the file at Path once it
// stops growing. A copy made by copytruncate is final: it is read from the
// offset to its end, and committed.
func (r *fileRun) resolve(ctx context.Context, live *fileState) error {
	old := r.src
	if old.offset == 0 && old.fp == "" && old.ino == 0 {
		return nil
	}
	var exDev, exIno uint64
	if live != nil {
		// When Path is still the old file, truncated, only a copy
		// can hold the unread lines.
		exDev, exIno = live.dev, live.ino
	}
	sib, byID, err := r.findSibling(old, exDev, exIno)
	if err != nil {
		return err
	}
	if sib == nil {
		return r.resolveCompressed(ctx, old, exDev, exIno)
	}
	var between []string
	if fi, err := sib.file.Stat(); err == nil {
		// Files rotated after the one that renamed or copied sib:
		// read after it, before the file at Path.
		between = r.rotatedSince(fi.ModTime(), sib.dev, sib.ino)
	}
	sib.fp, sib.offset, sib.pos = old.fp, old.offset, old.offset
	r.resetLine()
	r.src = sib
	if byID && len(between) == 0 {
		r.log.Info("resuming the rotated log file; the new one follows when it stops growing",
			"file", sib.name, "offset", old.offset)
		r.cur = sib
		r.rotWait = 0
		return nil
	}
	// A copy, or a file rotated more than once since: final.
	defer sib.file.Close()
	r.log.Info("reading the rest of a rotated log file", "file", sib.name, "offset", old.offset, "size", sib.size)
	if _, err := r.read(ctx, sib, true); err != nil || ctx.Err() != nil {
		return err
	}
	if err := r.commit(ctx); err != nil {
		return err
	}
	sib.file = nil
	return r.catchUp(ctx, between)
}

// resolveCompressed finds the remembered file old among Path's
// gzip-compressed rotated siblings, by its first line, reads it from the
// remembered offset, and then the files rotated after it (see catchUp).
// When it is not there (or its first line was never known), the lines
// after the offset cannot be placed: a warning names the rotated files and
// the import command that recovers them.
func (r *fileRun) resolveCompressed(ctx context.Context, old *fileState, exDev, exIno uint64) error {
	if old.offset == 0 && old.fp == "" {
		return nil
	}
	gz, err := r.findCompressed(old)
	if err != nil {
		return err
	}
	if gz == nil {
		args := []any{"inode", old.ino, "offset", old.offset}
		if names := r.rotatedSince(time.Time{}, exDev, exIno); len(names) > 0 {
			args = append(args, "recover_with", recoverCommand(names))
		}
		r.log.Warn("checkpointed log file not found among rotated files; lines after its offset are lost unless imported", args...)
		return nil
	}
	defer gz.file.Close()
	fi, err := gz.file.Stat()
	if err != nil {
		return fmt.Errorf("logparse: stat %s: %w", gz.name, err)
	}
	between := r.rotatedSince(fi.ModTime(), gz.dev, gz.ino)
	gz.fp, gz.offset, gz.pos = old.fp, old.offset, old.offset
	r.resetLine()
	r.src = gz
	r.log.Info("reading the rest of a compressed rotated log file", "file", gz.name, "offset", old.offset)
	if err := r.skipUnreadable(gz, r.readCompressed(ctx, gz, old.offset)); err != nil || ctx.Err() != nil {
		return err
	}
	if err := r.commit(ctx); err != nil {
		return err
	}
	return r.catchUp(ctx, between)
}

// catchUp reads whole files that were rotated while the follower was
// stopped, oldest first, before it goes on with the file at Path; gzip
// files are decompressed. Each becomes the file that checkpoints describe
// while it is read, so a restart resumes inside it. The last one, if plain,
// is followed like a file renamed by a rotation seen while running (a
// syslog daemon may still be writing to it), and the file at Path follows
// once it stops growing. A file that cannot be read (another compression
// format, a corrupt gzip stream) is skipped with a warning giving the
// command that imports it: it must not keep the follower from the live log.
func (r *fileRun) catchUp(ctx context.Context, names []string) error {
	for i, name := range names {
		if ctx.Err() != nil {
			return nil
		}
		file, err := os.Open(name)
		if err != nil {
			r.log.Warn("cannot open a log file rotated while the follower was stopped; its lines are lost unless imported",
				"file", name, "err", err, "recover_with", recoverCommand([]string{name}))
			continue
		}
		compressed, ok := isGzip(file)
		if !ok {
			file.Close()
			r.log.Warn("cannot read this compressed log file; decompress it and import it",
				"file", name, "recover_with", recoverCommand([]string{name}))
			continue
		}
		s, err := newFileState(file, name)
		if err != nil {
			file.Close()
			return err
		}
		r.resetLine()
		r.src = s
		if !compressed && i == len(names)-1 {
			r.log.Info("following the last log file rotated while the follower was stopped; the new one follows when it stops growing", "file", name)
			r.cur = s
			r.rotWait = 0
			return nil
		}
		r.log.Info("reading a log file rotated while the follower was stopped", "file", name)
		if compressed {
			err = r.readCompressed(ctx, s, 0)
		} else {
			_, err = r.read(ctx, s, true)
		}
		file.Close()
		s.file = nil
		if err = r.skipUnreadable(s, err); err != nil || ctx.Err() != nil {
			return err
		}
		if err := r.commit(ctx); err != nil {
			return err
		}
	}
	return nil
}

// skipUnreadable turns an error reading rotated file s (not a failed
// commit) into a warning: the lines read so far stay pending, the rest of
// the file is named with the command that imports it.
func (r *fileRun) skipUnreadable(s *fileState, err error) error {
	if err == nil || errors.Is(err, ErrCommit) {
		return err
	}
	r.log.Warn("cannot read the rest of a rotated log file; its remaining lines are lost unless imported (lines already stored are skipped)",
		"file", s.name, "err", err, "recover_with", recoverCommand([]string{s.name}))
	r.resetLine()
	return nil
}

// readCompressed reads the gzip file s to its end from offset skip of the
// decompressed content, as read does for a final plain file.
func (r *fileRun) readCompressed(ctx context.Context, s *fileState, skip int64) error {
	if _, err := s.file.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("logparse: read %s: %w", s.name, err)
	}
	zr, err := gzip.NewReader(s.file)
	if err != nil {
		return fmt.Errorf("logparse: read %s: %w", s.name, err)
	}
	if n, err := io.CopyN(io.Discard, zr, skip); err != nil {
		return fmt.Errorf("logparse: read %s: only %d of the %d bytes already read: %w", s.name, n, skip, err)
	}
	s.pos, s.offset = skip, skip
	for ctx.Err() == nil {
		n, err := zr.Read(r.buf)
		if n > 0 {
			if cerr := r.consume(ctx, s, r.buf[:n]); cerr != nil {
				return cerr
			}
			if r.dirty && time.Since(r.dirtySince) >= r.batchEvery {
				if cerr := r.commit(ctx); cerr != nil {
					return cerr
				}
			}
		}
		if err == io.EOF {
			r.finish(s)
			return nil
		}
		if err != nil {
			return fmt.Errorf("logparse: read %s: %w", s.name, err)
		}
	}
	return nil
}

// isGzip reports whether file starts with the gzip magic (compressed), and
// false for ok when it has the name of another compression format.
func isGzip(file *os.File) (compressed, ok bool) {
	var magic [2]byte
	if n, _ := file.ReadAt(magic[:], 0); n == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		return true, true
	}
	return false, !isCompressedName(file.Name())
}

// findCompressed returns the open gzip-compressed rotated sibling of Path
// whose decompressed content starts with old's first line.
func (r *fileRun) findCompressed(old *fileState) (*fileState, error) {
	if old.fp == "" {
		return nil, nil
	}
	dir, base, ents := r.siblings()
	for _, e := range ents {
		name := e.Name()
		if !isRotatedAny(base, name) || isRotatedName(base, name) {
			continue
		}
		file, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		if compressed, _ := isGzip(file); compressed {
			if zr, err := gzip.NewReader(file); err == nil {
				b := make([]byte, fingerprintMax)
				n, _ := io.ReadFull(zr, b)
				if fingerprintOf(b[:n]) == old.fp {
					s, err := newFileState(file, file.Name())
					if err != nil {
						file.Close()
					}
					return s, err
				}
			}
		}
		file.Close()
	}
	return nil, nil
}

// findSibling returns the open sibling of Path that holds old's content:
// the same device and inode (and first line, when known; byID), else the
// same first line; in both cases at least old.offset long. The file with
// identity excludeDev, excludeIno is never returned.
func (r *fileRun) findSibling(old *fileState, excludeDev, excludeIno uint64) (sib *fileState, byID bool, err error) {
	dir, base, ents := r.siblings()
	var withID, byFP *fileState
	for _, e := range ents {
		name := e.Name()
		if !isRotatedName(base, name) {
			continue
		}
		file, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		s, err := newFileState(file, file.Name())
		keep := false
		if err == nil && s.size >= old.offset && (s.dev != excludeDev || s.ino != excludeIno) {
			fp, ferr := fingerprint(file)
			switch {
			case ferr != nil:
			case s.dev == old.dev && s.ino == old.ino && (old.fp == "" || fp == old.fp):
				if withID == nil {
					withID, keep = s, true
				}
			case old.fp != "" && fp == old.fp:
				// Of several copies, prefer the longest.
				if byFP == nil || s.size > byFP.size {
					if byFP != nil {
						byFP.file.Close()
					}
					byFP, keep = s, true
				}
			}
		}
		if !keep {
			file.Close()
		}
	}
	if withID != nil {
		if byFP != nil {
			byFP.file.Close()
		}
		return withID, true, nil
	}
	return byFP, false, nil
}

// rotatedSince returns the paths of Path's rotated siblings, compressed or
// not, modified after since, oldest first; the file with identity
// exDev/exIno and the file at Path are left out.
func (r *fileRun) rotatedSince(since time.Time, exDev, exIno uint64) []string {
	dir, base, ents := r.siblings()
	type rotated struct {
		path string
		mod  time.Time
	}
	var found []rotated
	for _, e := range ents {
		name := e.Name()
		if !isRotatedAny(base, name) {
			continue
		}
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path)
		if err != nil || !fi.Mode().IsRegular() || !fi.ModTime().After(since) {
			continue
		}
		if dev, ino := fileID(fi); dev == exDev && ino == exIno {
			continue
		}
		found = append(found, rotated{path, fi.ModTime()})
	}
	sort.SliceStable(found, func(i, j int) bool { return found[i].mod.Before(found[j].mod) })
	out := make([]string, len(found))
	for i, f := range found {
		out[i] = f.path
	}
	return out
}

// siblings lists the directory of Path: the directory, Path's base name and
// the entries. A listing error is logged and leaves no entries.
func (r *fileRun) siblings() (dir, base string, ents []os.DirEntry) {
	dir, base = filepath.Split(r.f.Path)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		r.log.Warn("cannot list rotated log files", "err", err)
	}
	return dir, base, ents
}

// isRotatedAny reports whether name looks like a rotated copy of base,
// compressed or not: base.anything or base-anything.
func isRotatedAny(base, name string) bool {
	return name != base && (strings.HasPrefix(name, base+".") || strings.HasPrefix(name, base+"-"))
}

// isRotatedName reports whether name looks like a rotated, uncompressed
// copy of base: base.N, base-DATE, base.anything.
func isRotatedName(base, name string) bool {
	return isRotatedAny(base, name) && !isCompressedName(name)
}

// recoverCommand is the shell command that imports files in order:
// mailtls import reads plain and gzip files; others are piped through
// their decompressor.
func recoverCommand(files []string) string {
	var cmds, run []string
	flush := func() {
		if len(run) > 0 {
			cmds = append(cmds, "mailtls import "+strings.Join(run, " "))
			run = nil
		}
	}
	for _, f := range files {
		ext := strings.ToLower(filepath.Ext(f))
		if ext == ".gz" || !isCompressedName(f) {
			run = append(run, f)
			continue
		}
		flush()
		cat := map[string]string{".xz": "xzcat", ".lzma": "xzcat", ".bz2": "bzcat", ".zst": "zstdcat", ".lz4": "lz4cat",
			".lz": "lzip -dc", ".z": "uncompress -c", ".zip": "unzip -p", ".br": "brotli -dc", ".7z": "7z x -so"}[ext]
		cmds = append(cmds, cat+" "+f+" | mailtls import -")
	}
	flush()
	return strings.Join(cmds, " && ")
}

// isCompressedName reports whether name ends like a compressed file's.
func isCompressedName(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".gz", ".bz2", ".xz", ".zst", ".lz4", ".lzma", ".lz", ".z", ".zip", ".br", ".7z":
		return true
	}
	return false
}
