package registry

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

// streamState is an ImageStream as a prune reads it, once, at its start.
type streamState struct {
	uid     string
	history []string
}

// repoState is what a prune found in one repository.
type repoState struct {
	name string
	// servable: its ImageStream exists and owns it, so its content is marked; stale:
	// its ImageStream is gone, so it is cleared.
	servable, stale bool
	history         []string // its stream's tags' history
	tags            []digest.Digest
	revisions       map[digest.Digest]*link // its manifests
	layers          map[digest.Digest]*link // its links to blobs
	live            map[digest.Digest]bool  // its live manifests
	subjects        map[digest.Digest]digest.Digest
	uploads         []upload
}

// link is a repository's link to a manifest or blob, or a blob's data.
type link struct {
	mod    time.Time
	size   int64
	aside  bool // renamed *.pruning: by this prune, or one that stopped half way
	chosen bool // to be deleted
	live   bool // blobs only: something live names it
}

// upload is an upload in progress, and when it was last written.
type upload struct {
	dir     string
	written time.Time
	size    int64
}

func newRepoState(name string) *repoState {
	return &repoState{name: name, revisions: map[digest.Digest]*link{}, layers: map[digest.Digest]*link{}, live: map[digest.Digest]bool{}}
}

// pruneParallelism is how many storage requests a prune has in flight at once: on S3
// each is a round trip.
const pruneParallelism = 16

// parallel runs fn for every item, pruneParallelism at a time, and returns the first
// error.
func parallel[T any](ctx context.Context, items []T, fn func(context.Context, T) error) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(pruneParallelism)
	for _, item := range items {
		g.Go(func() error { return fn(ctx, item) })
	}
	return g.Wait()
}

// load reads the ImageStreams (one list) and what storage holds: every repository's
// tags, revisions, links, referrers and uploads, and every blob.
func (p *pruner) load(ctx context.Context) error {
	streams, err := p.repos.streams.List(ctx)
	if err != nil {
		return fmt.Errorf("listing imagestreams: %w", err)
	}
	p.streams = map[string]streamState{}
	for _, is := range streams {
		p.streams[is.Namespace+"/"+is.Name] = streamState{uid: string(is.UID), history: is.Status.History()}
	}
	names, err := p.repositories(ctx)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	err = parallel(ctx, names, func(ctx context.Context, name string) error {
		rs, err := p.scan(ctx, name)
		if err != nil {
			return fmt.Errorf("repository %s: %w", name, err)
		}
		mu.Lock()
		p.repo[name] = rs
		mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	return p.scanBlobs(ctx)
}

// repositories lists every repository in storage: a directory holding _manifests,
// _layers or _uploads.
func (p *pruner) repositories(ctx context.Context) ([]string, error) {
	var out []string
	root := path.Join(v2Root, "repositories")
	err := walk(ctx, p.driver, root, func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() {
			return nil
		}
		switch path.Base(fi.Path()) {
		case "_manifests", "_layers", "_uploads":
			repo := strings.TrimPrefix(path.Dir(fi.Path()), root+"/")
			if len(out) == 0 || out[len(out)-1] != repo {
				out = append(out, repo)
			}
			return storagedriver.ErrSkipDir
		}
		return nil
	})
	if isPathNotFound(err) {
		return nil, nil
	}
	return out, err
}

// scan reads one repository.
func (p *pruner) scan(ctx context.Context, name string) (*repoState, error) {
	rs := newRepoState(name)
	owner, err := p.repos.storedOwner(ctx, name)
	if err != nil {
		return nil, err
	}
	namespace, streamName, ok := tokenauth.SplitRepository(name)
	stream, exists := p.streams[namespace+"/"+streamName]
	switch {
	case ok && exists && (owner == stream.uid || owner == ""):
		// Storage from before owners is adopted by its stream, as the registry does.
		rs.servable, rs.history = true, stream.history
	case owner != "":
		rs.stale = true
	default:
		// No owner and no stream: a push that never made its stream, left alone while
		// anything in it is younger than the cutoff.
		rs.stale = p.untouchedSince(ctx, repositoryDir(name), p.cutoff)
	}
	dir := repositoryDir(name)
	if err := p.walkLinks(ctx, path.Join(dir, "_manifests", "revisions"), func(d digest.Digest, l *link) { rs.revisions[d] = l }); err != nil {
		return nil, err
	}
	if err := p.walkLinks(ctx, path.Join(dir, "_layers"), func(d digest.Digest, l *link) { rs.layers[d] = l }); err != nil {
		return nil, err
	}
	err = walk(ctx, p.driver, path.Join(dir, "_manifests", "tags"), func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() && strings.HasSuffix(fi.Path(), "/current/link") {
			if d, err := p.readLink(ctx, fi.Path()); err == nil {
				rs.tags = append(rs.tags, d)
			}
		}
		return nil
	})
	if err != nil && !isPathNotFound(err) {
		return nil, err
	}
	if rs.subjects, err = p.subjectsOf(ctx, name); err != nil {
		return nil, err
	}
	rs.uploads, err = p.uploadsOf(ctx, name)
	return rs, err
}

// walkLinks calls fn for every <algorithm>/<hex>/link (or link.pruning) under dir.
func (p *pruner) walkLinks(ctx context.Context, dir string, fn func(digest.Digest, *link)) error {
	err := walk(ctx, p.driver, dir, func(fi storagedriver.FileInfo) error {
		base := path.Base(fi.Path())
		if fi.IsDir() || base != "link" && base != "link"+pruneSuffix {
			return nil
		}
		hex := path.Base(path.Dir(fi.Path()))
		alg := path.Base(path.Dir(path.Dir(fi.Path())))
		d := digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
		if d.Validate() == nil {
			fn(d, &link{mod: fi.ModTime(), aside: base != "link"})
		}
		return nil
	})
	if isPathNotFound(err) {
		return nil
	}
	return err
}

// subjectsOf reads repo's referrers index: each referrer and its subject.
func (p *pruner) subjectsOf(ctx context.Context, repo string) (map[digest.Digest]digest.Digest, error) {
	out := map[digest.Digest]digest.Digest{}
	err := walk(ctx, p.driver, path.Join(referrersRoot, repo, "referrers"), func(fi storagedriver.FileInfo) error {
		if fi.IsDir() {
			return nil
		}
		d := digest.NewDigestFromEncoded(digest.Algorithm(path.Base(path.Dir(fi.Path()))), path.Base(fi.Path()))
		if d.Validate() != nil {
			return nil
		}
		subject, err := p.driver.GetContent(ctx, fi.Path())
		if err != nil {
			return nil
		}
		if s, err := digest.Parse(string(subject)); err == nil {
			out[d] = s
		}
		return nil
	})
	if isPathNotFound(err) {
		err = nil
	}
	return out, err
}

// uploadsOf lists repo's uploads with when each was last written (one walk: on S3 a
// list of keys).
func (p *pruner) uploadsOf(ctx context.Context, repo string) ([]upload, error) {
	dir := path.Join(repositoryDir(repo), "_uploads")
	byID := map[string]*upload{}
	err := walk(ctx, p.driver, dir, func(fi storagedriver.FileInfo) error {
		rest := strings.TrimPrefix(fi.Path(), dir+"/")
		id, within, _ := strings.Cut(rest, "/")
		if id == "" || fi.IsDir() {
			return nil
		}
		u := byID[id]
		if u == nil {
			u = &upload{dir: path.Join(dir, id)}
			byID[id] = u
		}
		if fi.ModTime().After(u.written) {
			u.written = fi.ModTime()
		}
		if within == "data" {
			u.size = fi.Size()
		}
		return nil
	})
	if isPathNotFound(err) {
		return nil, nil
	}
	var out []upload
	for _, u := range byID {
		out = append(out, *u)
	}
	return out, err
}

// scanBlobs reads every blob's data: its size, when it was written, whether it is
// aside. A blob's age is that of the newest of its data and every link to it.
func (p *pruner) scanBlobs(ctx context.Context) error {
	err := walk(ctx, p.driver, path.Join(v2Root, "blobs"), func(fi storagedriver.FileInfo) error {
		base := path.Base(fi.Path())
		if fi.IsDir() || base != "data" && base != "data"+pruneSuffix {
			return nil
		}
		d := digest.NewDigestFromEncoded(digest.Algorithm(path.Base(path.Dir(path.Dir(path.Dir(fi.Path()))))), path.Base(path.Dir(fi.Path())))
		if d.Validate() != nil {
			return nil
		}
		b := p.blob(d)
		b.size, b.aside = fi.Size(), base != "data"
		if fi.ModTime().After(b.mod) {
			b.mod = fi.ModTime()
		}
		return nil
	})
	if err != nil && !isPathNotFound(err) {
		return err
	}
	for _, rs := range p.repo {
		for _, links := range []map[digest.Digest]*link{rs.revisions, rs.layers} {
			for d, l := range links {
				if b, ok := p.blobs[d]; ok && l.mod.After(b.mod) {
					b.mod = l.mod
				}
			}
		}
	}
	return nil
}

// blob is the state of blob d, made when first named.
func (p *pruner) blob(d digest.Digest) *link {
	b, ok := p.blobs[d]
	if !ok {
		b = &link{}
		p.blobs[d] = b
	}
	return b
}

// mark marks what is live: from every servable repository's tags, its stream's
// history and its young revisions, and from the pins read before.
func (p *pruner) mark(ctx context.Context, pins []pinned) error {
	roots := map[*repoState][]digest.Digest{}
	var manifests []digest.Digest
	for _, rs := range p.repo {
		if !rs.servable {
			continue
		}
		candidates := append([]digest.Digest{}, rs.tags...)
		for _, h := range rs.history {
			if d, err := digest.Parse(h); err == nil {
				candidates = append(candidates, d)
			}
		}
		for d, l := range rs.revisions {
			if l.mod.After(p.cutoff) {
				candidates = append(candidates, d)
			}
		}
		for _, d := range candidates {
			if _, stored := rs.revisions[d]; stored {
				roots[rs] = append(roots[rs], d)
				manifests = append(manifests, d)
			}
		}
	}
	if err := p.prefetch(ctx, manifests); err != nil {
		return err
	}
	for rs, ds := range roots {
		for _, d := range ds {
			p.markManifest(ctx, rs, d)
		}
		p.markReferrers(ctx, rs)
	}
	return p.markPinned(ctx, pins)
}

// markPinned marks what pins name, with everything a pinned manifest names, and the
// referrers of what that made live. A pinned manifest may have been stored since its
// repository was read, or in a repository made since: its pin says it is one.
func (p *pruner) markPinned(ctx context.Context, pins []pinned) error {
	var manifests []digest.Digest
	for _, pin := range pins {
		manifests = append(manifests, pin.Manifests...)
	}
	if err := p.prefetch(ctx, manifests); err != nil {
		return err
	}
	touched := map[*repoState]bool{}
	for _, pin := range pins {
		rs := p.repo[pin.Repository]
		if rs == nil {
			rs = newRepoState(pin.Repository)
			p.repo[pin.Repository] = rs
		}
		for _, d := range pin.Digests {
			p.blob(d).live = true
		}
		for _, d := range pin.Manifests {
			p.markManifest(ctx, rs, d)
		}
		touched[rs] = true
	}
	for rs := range touched {
		p.markReferrers(ctx, rs)
	}
	return nil
}

// markManifest marks manifest d of rs live, with what it names: the manifests of an
// index that rs stores, and blobs.
func (p *pruner) markManifest(ctx context.Context, rs *repoState, d digest.Digest) {
	if rs.live[d] {
		return
	}
	rs.live[d] = true
	p.blob(d).live = true
	for _, ref := range p.references(ctx, d) {
		if _, isManifest := rs.revisions[ref]; isManifest {
			p.markManifest(ctx, rs, ref)
		} else {
			p.blob(ref).live = true
		}
	}
}

// markReferrers marks the referrers of rs's live manifests: a signature lives as long
// as its image.
func (p *pruner) markReferrers(ctx context.Context, rs *repoState) {
	for grew := true; grew; {
		grew = false
		for d, subject := range rs.subjects {
			if _, stored := rs.revisions[d]; stored && !rs.live[d] && rs.live[subject] {
				p.markManifest(ctx, rs, d)
				grew = true
			}
		}
	}
}

// prefetch reads the manifests ds, many at once, for references to find.
func (p *pruner) prefetch(ctx context.Context, ds []digest.Digest) error {
	seen := map[digest.Digest]bool{}
	var todo []digest.Digest
	for _, d := range ds {
		if !seen[d] {
			seen[d] = true
			todo = append(todo, d)
		}
	}
	return parallel(ctx, todo, func(ctx context.Context, d digest.Digest) error {
		p.references(ctx, d)
		return nil
	})
}

// references are the digests manifest d names: config, layers, and an index's
// manifests. A manifest set aside is read where it is.
func (p *pruner) references(ctx context.Context, d digest.Digest) []digest.Digest {
	p.refsMu.Lock()
	refs, ok := p.refs[d]
	p.refsMu.Unlock()
	if ok || d.Validate() != nil {
		return refs
	}
	data, err := p.driver.GetContent(ctx, blobDataPath(d))
	if isPathNotFound(err) {
		data, err = p.driver.GetContent(ctx, blobDataPath(d)+pruneSuffix)
	}
	if err == nil && len(data) <= maxManifestSize {
		refs = manifestDigests(data)[1:]
	}
	p.refsMu.Lock()
	p.refs[d] = refs
	p.refsMu.Unlock()
	return refs
}

// choose decides what goes: manifests not live in their repository and older than
// the cutoff, blobs nothing live names and older than the cutoff, the links to those
// blobs, stale repositories, and uploads nobody writes to any more.
func (p *pruner) choose() {
	for _, b := range p.blobs {
		if !b.live && !b.mod.IsZero() && (b.aside || !b.mod.After(p.cutoff)) {
			b.chosen = true
			p.rep.Blobs++
			p.rep.Bytes += b.size
		}
	}
	abandoned := p.begin.Add(-p.opts.UploadsOlderThan)
	for _, rs := range p.repo {
		for _, u := range rs.uploads {
			if !u.written.After(abandoned) {
				p.rep.Uploads++
				p.rep.Bytes += u.size
			}
		}
		if rs.stale {
			p.rep.Repositories++
			continue
		}
		if !rs.servable {
			continue
		}
		for d, l := range rs.revisions {
			if !rs.live[d] && (l.aside || !l.mod.After(p.cutoff)) {
				l.chosen = true
				p.rep.Manifests++
			}
		}
		for d, l := range rs.layers {
			b := p.blobs[d]
			// A link to a blob that goes, or to one not stored at all.
			if b == nil || b.chosen || b.mod.IsZero() && !b.live {
				l.chosen = true
			}
		}
	}
}

// readLink reads the digest a link file holds.
func (p *pruner) readLink(ctx context.Context, name string) (digest.Digest, error) {
	data, err := p.driver.GetContent(ctx, name)
	if err != nil {
		return "", err
	}
	return digest.Parse(strings.TrimSpace(string(data)))
}

// untouchedSince reports whether nothing under dir changed after t.
func (p *pruner) untouchedSince(ctx context.Context, dir string, t time.Time) bool {
	errYoung := errors.New("young")
	err := walk(ctx, p.driver, dir, func(fi storagedriver.FileInfo) error {
		if fi.ModTime().After(t) {
			return errYoung
		}
		return nil
	})
	return !errors.Is(err, errYoung)
}
