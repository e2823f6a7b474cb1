package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
)

// The fence is the write barrier between pushes and prunes, kept in the storage
// both see (so it holds across any number of replicas and an `adm prune` run from
// elsewhere), with no clock in it:
//
//   - Every write that makes content reachable — a manifest PUT with its tag, a blob
//     upload's commit, a cross-repository mount, a HEAD that finds a blob a push will
//     then name — first writes a pin naming the repository and the digests it will
//     reference, then checks that they exist, then writes. When it is done it deletes
//     its pin, unless a prune is running: then it marks the pin done and leaves it for
//     that prune, which may have read the repository's tags before the write landed.
//   - A prune writes its marker first, then reads the pins (their digests are live),
//     marks from tags, sets aside (renames) what nothing reaches, reads the pins again,
//     puts back whatever the pins now name, and only then deletes what is still aside.
//
// A write whose pin the second read missed began after the set-aside, so it finds
// what it names missing: it puts it back itself (pruneGuard), or, if the prune's
// delete won, it fails and nothing is acknowledged. A write that finished before the
// marker left tags the mark read. Either way nothing acknowledged is lost, whatever
// --keep-younger-than says.

const (
	fenceRoot    = "/pullgate/prune"
	pinsDir      = fenceRoot + "/pins"
	runningPath  = fenceRoot + "/running"
	pinDoneExt   = ".done"
	pinLifetime  = time.Hour // a pin older than this, never done, was left by a dead writer
	pinnedWithin = 10 * time.Minute
)

// fence reads and writes the barrier in a storage driver.
type fence struct {
	driver storagedriver.StorageDriver
}

// pinRecord is what a pin says: a write to repository that will reference digests,
// of which manifests are manifests (a manifest PUT's own, and an index's).
type pinRecord struct {
	Repository string          `json:"repository"`
	Digests    []digest.Digest `json:"digests"`
	Manifests  []digest.Digest `json:"manifests,omitempty"`
}

// blobPin is the pin of a write that links blob d into repo.
func blobPin(repo string, d digest.Digest) pinRecord {
	return pinRecord{Repository: repo, Digests: []digest.Digest{d}}
}

// manifestPin is the pin of a manifest PUT of body into repo: the manifest and
// everything it names.
func manifestPin(repo string, body []byte) pinRecord {
	rec := pinRecord{Repository: repo, Digests: manifestDigests(body)}
	rec.Manifests = append([]digest.Digest{rec.Digests[0]}, indexManifests(body)...)
	return rec
}

// pin is a write in flight.
type pin struct {
	f      fence
	path   string
	cancel context.CancelFunc
}

// pin records what a write will reference, before the write checks that it exists.
// The returned context bounds the write to pinnedWithin, well inside pinLifetime, so a
// prune never takes a live writer's pin for a dead one's.
func (f fence) pin(ctx context.Context, rec pinRecord) (context.Context, *pin, error) {
	var id [16]byte
	_, _ = rand.Read(id[:])
	data, err := json.Marshal(rec)
	if err != nil {
		return ctx, nil, err
	}
	p := &pin{f: f, path: path.Join(pinsDir, hex.EncodeToString(id[:]))}
	if err := f.driver.PutContent(ctx, p.path, data); err != nil {
		return ctx, nil, fmt.Errorf("pinning a write to %s: %w", rec.Repository, err)
	}
	ctx, p.cancel = context.WithTimeout(ctx, pinnedWithin)
	return ctx, p, nil
}

// release ends the write: its pin goes, or, while a prune runs, is marked done for the
// prune to take. A pin that cannot be released stays, keeping what it names for at
// most pinLifetime; the error says why.
func (p *pin) release(ctx context.Context) error {
	p.cancel()
	ctx = context.WithoutCancel(ctx)
	running, err := p.f.running(ctx)
	switch {
	case err != nil:
		return err
	case running:
		// An empty file is whole the moment it exists: a prune never reads half of it.
		return p.f.driver.PutContent(ctx, p.path+pinDoneExt, nil)
	default:
		return p.f.driver.Delete(ctx, p.path)
	}
}

// running reports whether a prune's marker is in storage.
func (f fence) running(ctx context.Context) (bool, error) {
	_, err := f.driver.Stat(ctx, runningPath)
	if isPathNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// begin writes the prune's marker: from now on, finished writes leave their pins.
// Pins left done before it (by writes that finished while an earlier prune ran) go
// first: those writes' tags are in storage for this prune's mark to read.
func (f fence) begin(ctx context.Context, holder string) error {
	listed, err := f.list(ctx)
	if err != nil {
		return err
	}
	var done []pinned
	for _, p := range listed {
		if p.done {
			done = append(done, p)
		}
	}
	if err := f.remove(ctx, done); err != nil {
		return err
	}
	return f.driver.PutContent(ctx, runningPath, []byte(holder))
}

// pinned is one pin as a prune reads it.
type pinned struct {
	pinRecord
	path string
	done bool
	mod  time.Time
}

// list lists the pins, without reading them.
func (f fence) list(ctx context.Context) ([]pinned, error) {
	infos := map[string]storagedriver.FileInfo{}
	err := walk(ctx, f.driver, pinsDir, func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() {
			infos[fi.Path()] = fi
		}
		return nil
	})
	if isPathNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []pinned
	for name, fi := range infos {
		if !isPinID(path.Base(name)) {
			continue // a done mark, or a file distribution is still writing
		}
		_, done := infos[name+pinDoneExt]
		out = append(out, pinned{path: name, done: done, mod: fi.ModTime()})
	}
	return out, nil
}

// pins reads every pin. A pin still being written (a writer that has not yet checked
// anything it names) reads as broken and is skipped: its writer will find anything a
// prune set aside missing.
func (f fence) pins(ctx context.Context) ([]pinned, error) {
	listed, err := f.list(ctx)
	if err != nil {
		return nil, err
	}
	read := make([]bool, len(listed))
	idx := make([]int, len(listed))
	for i := range idx {
		idx[i] = i
	}
	err = parallel(ctx, idx, func(ctx context.Context, i int) error {
		data, err := f.driver.GetContent(ctx, listed[i].path)
		if isPathNotFound(err) {
			return nil // released meanwhile
		}
		if err != nil {
			return err
		}
		read[i] = json.Unmarshal(data, &listed[i].pinRecord) == nil
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []pinned
	for i, p := range listed {
		if read[i] {
			out = append(out, p)
		}
	}
	return out, nil
}

// isPinID reports whether name is a pin's: 32 hexadecimal digits.
func isPinID(name string) bool {
	if len(name) != 32 {
		return false
	}
	_, err := hex.DecodeString(name)
	return err == nil
}

// end removes the pins of writes that finished (seen done by this prune) or died
// (older than pinLifetime), then the marker.
func (f fence) end(ctx context.Context, seen []pinned, now time.Time) error {
	var gone []pinned
	for _, p := range seen {
		if p.done || now.Sub(p.mod) >= pinLifetime {
			gone = append(gone, p)
		}
	}
	err := f.remove(ctx, gone)
	if derr := f.driver.Delete(ctx, runningPath); derr != nil && !isPathNotFound(derr) {
		err = errors.Join(err, derr)
	}
	return err
}

// remove deletes pins and their done marks.
func (f fence) remove(ctx context.Context, pins []pinned) error {
	var names []string
	for _, p := range pins {
		names = append(names, p.path, p.path+pinDoneExt)
	}
	return parallel(ctx, names, func(ctx context.Context, name string) error {
		if err := f.driver.Delete(ctx, name); err != nil && !isPathNotFound(err) {
			return err
		}
		return nil
	})
}
