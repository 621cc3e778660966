package logparse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/mailtls/mailtls/delivery"
)

// ErrBadCheckpoint is returned by UnmarshalCheckpoint for bytes that are not
// a checkpoint this version can read, and by the followers for a checkpoint
// whose correlator state cannot be restored.
var ErrBadCheckpoint = errors.New("logparse: invalid checkpoint")

// checkpointVersion is the "v" field written by Marshal. Bump it when the
// meaning of a field changes; readers refuse versions they do not know.
const checkpointVersion = 1

// fingerprintMax is the most bytes of a file's start that its fingerprint
// covers (see Checkpoint.FirstLineHash).
const fingerprintMax = 4096

// Checkpoint is the exact position a follower has reached, together with the
// correlator state after the last consumed line. It is stored in the same
// transaction as the deliveries of that line and the lines before it, so a
// restart from it neither loses nor repeats a delivery.
//
// For a file follower, Dev, Ino, Offset and FirstLineHash describe the file
// that holds the last consumed line; that file may since have been renamed
// away from Path by log rotation, which is why a restart looks for it among
// Path's siblings. For the journald follower only Cursor and State are set.
type Checkpoint struct {
	// Path is the followed path as configured (Follower.Path), not the
	// current name of the file described by Dev and Ino.
	Path string
	// Dev and Ino identify the file (stat st_dev, st_ino).
	Dev, Ino uint64
	// Offset is the byte offset just past the newline of the last line
	// consumed from that file: where reading resumes.
	Offset int64
	// FirstLineHash fingerprints the file's content, so that a copy made by
	// copytruncate can be recognised and an inode number that was reused
	// by a new file is not mistaken for the old one. It is the hex SHA-256
	// of the file's first line including its newline or, when that line is
	// longer, of its first 4096 bytes. It is "" while the file holds
	// neither: hashing a first line that is still being written would give a
	// fingerprint that changes as the file grows.
	FirstLineHash string
	// Cursor is the journald __CURSOR of the last consumed entry.
	Cursor string
	// State is the correlator state (Correlator.MarshalState) after the last
	// consumed line: open sessions that later lines complete.
	State []byte
}

// IsZero reports whether c is the zero Checkpoint: follow from the start.
func (c Checkpoint) IsZero() bool {
	return c.Path == "" && c.Dev == 0 && c.Ino == 0 && c.Offset == 0 &&
		c.FirstLineHash == "" && c.Cursor == "" && len(c.State) == 0
}

// checkpointJSON is the stored form. State is kept as raw JSON when it is
// JSON (it is, for Correlator) so the stored checkpoint stays readable, and
// as base64 otherwise.
type checkpointJSON struct {
	V             int             `json:"v"`
	Path          string          `json:"path,omitempty"`
	Dev           uint64          `json:"dev,omitempty"`
	Ino           uint64          `json:"ino,omitempty"`
	Offset        int64           `json:"offset,omitempty"`
	FirstLineHash string          `json:"first_line_sha256,omitempty"`
	Cursor        string          `json:"cursor,omitempty"`
	State         json.RawMessage `json:"state,omitempty"`
	StateBytes    []byte          `json:"state_b64,omitempty"`
}

// Marshal encodes c as versioned JSON for storage next to the deliveries.
func (c Checkpoint) Marshal() []byte {
	j := checkpointJSON{
		V: checkpointVersion, Path: c.Path, Dev: c.Dev, Ino: c.Ino, Offset: c.Offset,
		FirstLineHash: c.FirstLineHash, Cursor: c.Cursor,
	}
	inline := len(c.State) > 0 && json.Valid(c.State)
	if len(c.State) > 0 && !inline {
		j.StateBytes = c.State
	}
	b, err := json.Marshal(j)
	if err != nil {
		// Every field is a plain string, number or bytes.
		panic("logparse: marshal checkpoint: " + err.Error())
	}
	if inline {
		// Spliced in rather than marshalled as a json.RawMessage, which
		// would validate and compact the (large) state once more.
		out := make([]byte, 0, len(b)+len(c.State)+16)
		out = append(out, b[:len(b)-1]...)
		out = append(out, `,"state":`...)
		out = append(out, c.State...)
		b = append(out, '}')
	}
	return b
}

// UnmarshalCheckpoint decodes what Checkpoint.Marshal wrote. Empty input
// (no checkpoint stored yet) gives the zero Checkpoint: follow from the
// start.
func UnmarshalCheckpoint(b []byte) (Checkpoint, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return Checkpoint{}, nil
	}
	var j checkpointJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %v (want the JSON object written by Checkpoint.Marshal)", ErrBadCheckpoint, err)
	}
	if j.V != checkpointVersion {
		return Checkpoint{}, fmt.Errorf("%w: version %d (this build reads version %d)", ErrBadCheckpoint, j.V, checkpointVersion)
	}
	if j.Offset < 0 {
		return Checkpoint{}, fmt.Errorf("%w: negative offset %d", ErrBadCheckpoint, j.Offset)
	}
	if j.FirstLineHash != "" && !isHexSHA256(j.FirstLineHash) {
		return Checkpoint{}, fmt.Errorf("%w: first_line_sha256 %q is not 64 lowercase hex digits", ErrBadCheckpoint, j.FirstLineHash)
	}
	if len(j.State) > 0 && len(j.StateBytes) > 0 {
		return Checkpoint{}, fmt.Errorf("%w: both state and state_b64 set", ErrBadCheckpoint)
	}
	c := Checkpoint{
		Path: j.Path, Dev: j.Dev, Ino: j.Ino, Offset: j.Offset,
		FirstLineHash: j.FirstLineHash, Cursor: j.Cursor,
	}
	switch {
	case len(j.State) > 0:
		c.State = []byte(j.State)
	case len(j.StateBytes) > 0:
		c.State = j.StateBytes
	}
	return c, nil
}

func isHexSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Batch is what a follower hands to its Commit: the deliveries completed by a
// run of consecutive lines, and the checkpoint just past the last of them.
type Batch struct {
	Deliveries []delivery.Delivery
	Checkpoint Checkpoint
	// Stats are the correlator's, cumulative since the first start (they
	// are restored with its state).
	Stats Stats
}

// Commit stores a Batch. It must store the deliveries and the checkpoint in
// one transaction: if it returns an error, neither may be visible. The
// follower does not retain b.Deliveries after Commit returns.
type Commit func(ctx context.Context, b Batch) error

// Unread returns how many bytes of the file at cp.Path lie past the
// checkpoint, when that file is still the one checkpointed (same device and
// inode). ok is false for a journald checkpoint and for a file rotated
// since; err reports a file that cannot be examined.
func (cp Checkpoint) Unread() (n int64, ok bool, err error) {
	if cp.Cursor != "" || cp.Path == "" {
		return 0, false, nil
	}
	fi, err := os.Stat(cp.Path)
	if err != nil {
		return 0, false, err
	}
	if dev, ino := fileID(fi); dev != cp.Dev || ino != cp.Ino {
		return 0, false, nil
	}
	return max(fi.Size()-cp.Offset, 0), true, nil
}
