package registry

import (
	"context"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"

	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

// target is one thing a prune may set aside: a blob's data, or a repository's link to
// a manifest or a blob.
type target struct {
	path string // where it lives when not aside
	l    *link
	kind targetKind
	rs   *repoState // for links
	d    digest.Digest
}

type targetKind int

const (
	blobData targetKind = iota
	revisionLink
	layerLink
)

// targets lists everything a prune tracks for which keep says yes.
func (p *pruner) targets(keep func(target) bool) []target {
	var out []target
	add := func(t target) {
		if keep(t) {
			out = append(out, t)
		}
	}
	for d, b := range p.blobs {
		add(target{path: blobDataPath(d), l: b, kind: blobData, d: d})
	}
	for _, rs := range p.repo {
		for d, l := range rs.revisions {
			add(target{path: revisionLinkPath(rs.name, d), l: l, kind: revisionLink, rs: rs, d: d})
		}
		for d, l := range rs.layers {
			add(target{path: layerLinkPath(rs.name, d), l: l, kind: layerLink, rs: rs, d: d})
		}
	}
	return out
}

// live reports whether what t is is live now.
func (p *pruner) live(t target) bool {
	switch t.kind {
	case revisionLink:
		return t.rs.live[t.d]
	case layerLink:
		b := p.blobs[t.d]
		return b != nil && b.live
	default:
		return t.l.live
	}
}

// setAside renames what was chosen to *.pruning: reads no longer find it, and anyone
// who reaches it legitimately puts it back (pruneGuard).
func (p *pruner) setAside(ctx context.Context) error {
	todo := p.targets(func(t target) bool { return t.l.chosen && !t.l.aside })
	return parallel(ctx, todo, func(ctx context.Context, t target) error {
		err := p.driver.Move(ctx, t.path, t.path+pruneSuffix)
		switch {
		case err == nil:
			t.l.aside = true
		case isPathNotFound(err):
			t.l.chosen = false // deleted by a client meanwhile
		default:
			return err
		}
		return nil
	})
}

// putBack returns what is aside but live: what the pins read after the set-aside
// made live, and what a prune that stopped half way left aside.
func (p *pruner) putBack(ctx context.Context) error {
	todo := p.targets(func(t target) bool { return t.l.aside && p.live(t) })
	err := parallel(ctx, todo, func(ctx context.Context, t target) error {
		if err := p.driver.Move(ctx, t.path+pruneSuffix, t.path); err != nil && !isPathNotFound(err) {
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, t := range todo {
		if t.l.chosen {
			p.unchoose(t)
		}
		t.l.aside = false
	}
	return nil
}

// unchoose counts t as kept after all: set aside, and put back because a write or a
// read named it.
func (p *pruner) unchoose(t target) {
	t.l.chosen = false
	p.rep.Kept++
	switch t.kind {
	case blobData:
		p.rep.Blobs--
		p.rep.Bytes -= t.l.size
	case revisionLink:
		p.rep.Manifests--
	}
}

// sweep deletes what is still aside — only the *.pruning files: whatever a push wrote
// beside them since stays — then clears stale repositories and abandoned uploads.
func (p *pruner) sweep(ctx context.Context, pins []pinned) error {
	todo := p.targets(func(t target) bool { return t.l.chosen })
	gone := make([]bool, len(todo))
	idx := make([]int, len(todo))
	for i := range idx {
		idx[i] = i
	}
	err := parallel(ctx, idx, func(ctx context.Context, i int) error {
		var err error
		gone[i], err = p.deleteAside(ctx, todo[i].path)
		return err
	})
	if err != nil {
		return err
	}
	forgotten := map[*repoState][]digest.Digest{}
	for i, t := range todo {
		switch {
		case !gone[i] && t.kind != layerLink:
			// Put back by a read or a push since the set-aside.
			p.unchoose(t)
		case gone[i] && t.kind == revisionLink:
			forgotten[t.rs] = append(forgotten[t.rs], t.d)
		}
	}
	for rs, ds := range forgotten {
		if err := p.forgetManifests(ctx, rs, ds); err != nil {
			return err
		}
	}
	pinnedRepos := map[string]bool{}
	for _, pin := range pins {
		pinnedRepos[pin.Repository] = true
	}
	for _, rs := range p.repo {
		if err := p.deleteUploads(ctx, rs); err != nil {
			return err
		}
		if rs.stale {
			if err := p.clearStale(ctx, rs, pinnedRepos[rs.name]); err != nil {
				return err
			}
		}
	}
	return nil
}

// deleteAside deletes the file set aside for name and reports whether it was there
// to delete (not put back meanwhile); an emptied directory goes too.
func (p *pruner) deleteAside(ctx context.Context, name string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	err := p.driver.Delete(ctx, name+pruneSuffix)
	if isPathNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	p.removeEmptyDir(path.Dir(name))
	return true, nil
}

// forgetManifests removes what else names rs's deleted manifests ds: their places in
// tag histories and in the referrers index — unless a push has stored one again
// since.
func (p *pruner) forgetManifests(ctx context.Context, rs *repoState, ds []digest.Digest) error {
	deleted := map[digest.Digest]bool{}
	for _, d := range ds {
		if _, err := p.driver.Stat(ctx, revisionLinkPath(rs.name, d)); isPathNotFound(err) {
			deleted[d] = true
		}
	}
	var paths []string
	tags := path.Join(repositoryDir(rs.name), "_manifests", "tags")
	err := walk(ctx, p.driver, tags, func(fi storagedriver.FileInfo) error {
		// <tag>/index/<algorithm>/<hex>
		parts := strings.Split(strings.TrimPrefix(fi.Path(), tags+"/"), "/")
		if !fi.IsDir() || len(parts) < 4 {
			return nil
		}
		if d := digest.NewDigestFromEncoded(digest.Algorithm(parts[2]), parts[3]); parts[1] == "index" && deleted[d] {
			paths = append(paths, fi.Path())
		}
		return storagedriver.ErrSkipDir
	})
	if err != nil && !isPathNotFound(err) {
		return err
	}
	for d := range deleted {
		reverse := path.Join(referrersRoot, rs.name, "referrers", d.Algorithm().String(), d.Encoded())
		if s, ok := rs.subjects[d]; ok {
			paths = append(paths, path.Join(referrersRoot, rs.name, "subjects", s.Algorithm().String(), s.Encoded(), d.Algorithm().String()+"-"+d.Encoded()), reverse)
		}
	}
	return parallel(ctx, paths, func(ctx context.Context, name string) error {
		if err := p.driver.Delete(ctx, name); err != nil && !isPathNotFound(err) {
			return err
		}
		return nil
	})
}

// deleteUploads deletes rs's uploads that nobody has written to for UploadsOlderThan.
func (p *pruner) deleteUploads(ctx context.Context, rs *repoState) error {
	abandoned := p.begin.Add(-p.opts.UploadsOlderThan)
	var dirs []string
	for _, u := range rs.uploads {
		if !u.written.After(abandoned) {
			dirs = append(dirs, u.dir)
		}
	}
	return parallel(ctx, dirs, func(ctx context.Context, dir string) error {
		if err := p.driver.Delete(ctx, dir); err != nil && !isPathNotFound(err) {
			return err
		}
		return nil
	})
}

// clearStale clears a repository whose ImageStream is gone, after asking the API
// again: the prune holds its Lease, and a push that makes the stream from now on
// waits for it before it writes anything (repositories.Ensure), so a stream not found
// now cannot gain a push until the clear is done. A repository a write is pinned in
// is left for the next prune.
func (p *pruner) clearStale(ctx context.Context, rs *repoState, pinned bool) error {
	if pinned {
		p.rep.Repositories--
		return nil
	}
	owner, err := p.repos.storedOwner(ctx, rs.name)
	if err != nil {
		return err
	}
	if namespace, name, ok := tokenauth.SplitRepository(rs.name); ok {
		uid, exists, err := p.repos.streams.Get(ctx, namespace, name)
		if err != nil {
			return fmt.Errorf("repository %s: %w", rs.name, err)
		}
		if exists && (owner == uid || owner == "") {
			p.rep.Repositories--
			return nil
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return p.repos.clear(ctx, rs.name)
}

// removeEmptyDir removes a directory of filesystem storage if nothing is in it (rmdir
// fails on one a push has just written into).
func (p *pruner) removeEmptyDir(dir string) {
	if p.fsRoot != "" {
		_ = syscall.Rmdir(filepath.Join(p.fsRoot, filepath.FromSlash(dir)))
	}
}
