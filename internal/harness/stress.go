package harness

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/go-units"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// StressOptions is a push load: Pushers clients pushing images that share base
// layers into Repositories repositories of Namespace, re-tagging, copying (a
// cross-repository mount), reusing layers of images they deleted, and deleting tags
// and manifests, until Duration has passed.
type StressOptions struct {
	Registry     string // host:port, plain HTTP
	Namespace    string
	Token        string // a Kubernetes token allowed to push and delete there
	Pushers      int
	Repositories int
	Duration     time.Duration
}

// Stress is the ledger of a push load: every operation the registry acknowledged.
type Stress struct {
	opts  StressOptions
	auth  authn.Authenticator
	bases []v1.Layer

	mu      sync.Mutex
	began   time.Time
	live    map[string]string // repository:tag → digest, acknowledged and not deleted
	counts  map[string]int    // acknowledged operations by kind, and failures
	errs    []string          // a sample of the failures
	journal []string          // every acknowledged operation, in order
}

// RunStress runs the load and returns its ledger.
func RunStress(ctx context.Context, opts StressOptions) (*Stress, error) {
	s := &Stress{opts: opts, auth: authn.FromConfig(authn.AuthConfig{Username: "pullgate", Password: opts.Token}),
		live: map[string]string{}, counts: map[string]int{}, began: time.Now()}
	for range 4 {
		l, err := random.Layer(256<<10, types.OCILayer)
		if err != nil {
			return nil, err
		}
		s.bases = append(s.bases, l)
	}
	// Operations in flight when the time is up finish (ctx bounds them): one cut short
	// would leave the ledger not knowing whether the registry did it.
	until := time.Now().Add(opts.Duration)
	var wg sync.WaitGroup
	for i := range opts.Pushers {
		wg.Go(func() { s.pusher(ctx, i, until) })
	}
	wg.Wait()
	return s, ctx.Err()
}

// pushed is one of a pusher's images where it is tagged.
type pushed struct {
	repo, tag string
	img       v1.Image
}

func (s *Stress) pusher(ctx context.Context, id int, until time.Time) {
	rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	var mine []pushed      // acknowledged and not deleted
	var deleted []v1.Layer // own layers of images deleted, to upload again
	for n := 0; ctx.Err() == nil && time.Now().Before(until); n++ {
		tag := fmt.Sprintf("w%d-%d", id, n)
		repo := s.repo(rng.IntN(s.opts.Repositories))
		switch op := rng.IntN(100); {
		case op < 45 || len(mine) == 0:
			own, reused := s.ownLayer(rng, deleted)
			img, err := mutate.AppendLayers(empty.Image, s.bases[rng.IntN(len(s.bases))], own)
			if err == nil {
				img, err = mutate.Config(img, v1.Config{Labels: map[string]string{"push": repo + ":" + tag}})
			}
			if err == nil {
				err = remote.Write(s.ref(repo, tag), img, s.remote(ctx)...)
			}
			kind := "push"
			if reused {
				kind = "push-reusing-deleted-layer"
			}
			if s.record(kind, err, repo, tag, img) {
				mine = append(mine, pushed{repo, tag, img})
			}
		case op < 60:
			src := mine[rng.IntN(len(mine))]
			err := remote.Tag(s.ref(src.repo, tag), src.img, s.remote(ctx)...)
			if s.record("retag", err, src.repo, tag, src.img) {
				mine = append(mine, pushed{src.repo, tag, src.img})
			}
		case op < 70:
			// A copy from another repository: go-containerregistry mounts its layers.
			src := mine[rng.IntN(len(mine))]
			from, err := remote.Image(s.ref(src.repo, src.tag), s.remote(ctx)...)
			if err == nil {
				err = remote.Write(s.ref(repo, tag), from, s.remote(ctx)...)
			}
			if s.record("copy", err, repo, tag, src.img) {
				mine = append(mine, pushed{repo, tag, src.img})
			}
		case op < 88:
			i := rng.IntN(len(mine))
			victim := mine[i]
			ref, _ := name.ParseReference(s.opts.Registry + "/" + victim.repo + ":" + victim.tag)
			if err := remote.Delete(ref, s.remote(ctx)...); s.recordDelete("delete-tag", err, victim.repo, victim.tag, victim.tag) {
				mine = slices.Delete(mine, i, i+1)
			}
		default:
			// A manifest deleted by digest takes every tag of it in its repository.
			victim := mine[rng.IntN(len(mine))]
			d, _ := victim.img.Digest()
			ref, _ := name.ParseReference(s.opts.Registry + "/" + victim.repo + "@" + d.String())
			err := remote.Delete(ref, s.remote(ctx)...)
			var gone []string
			kept := mine[:0]
			for _, p := range mine {
				if pd, _ := p.img.Digest(); p.repo == victim.repo && pd == d {
					gone = append(gone, p.tag)
					continue
				}
				kept = append(kept, p)
			}
			if s.recordDelete("delete-manifest", err, victim.repo, d.String(), gone...) {
				mine = kept
				if layers, err := victim.img.Layers(); err == nil {
					deleted = append(deleted, layers[len(layers)-1])
				}
			}
		}
	}
}

// ownLayer is a new layer, or, one time in four, one of an image this pusher deleted
// (a client uploading again a layer a prune may be reclaiming).
func (s *Stress) ownLayer(rng *rand.Rand, deleted []v1.Layer) (v1.Layer, bool) {
	if len(deleted) > 0 && rng.IntN(4) == 0 {
		return deleted[rng.IntN(len(deleted))], true
	}
	l, err := random.Layer(32<<10, types.OCILayer)
	if err != nil {
		panic(err)
	}
	return l, false
}

func (s *Stress) repo(i int) string { return fmt.Sprintf("%s/stress-%d", s.opts.Namespace, i) }

func (s *Stress) ref(repo, tag string) name.Tag {
	t, err := name.NewTag(s.opts.Registry + "/" + repo + ":" + tag)
	if err != nil {
		panic(err)
	}
	return t
}

func (s *Stress) remote(ctx context.Context) []remote.Option {
	return []remote.Option{remote.WithAuth(s.auth), remote.WithContext(ctx), remote.WithTransport(http.DefaultTransport)}
}

// record notes an operation that tags img as repo:tag; it reports whether the
// registry acknowledged it. An operation the load's end cut short is not counted.
func (s *Stress) record(kind string, err error, repo, tag string, img v1.Image) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.failed(kind, err)
		return false
	}
	d, _ := img.Digest()
	s.live[repo+":"+tag] = d.String()
	s.counts[kind]++
	s.note("%s %s:%s %s", kind, repo, tag, d)
	return true
}

// note adds an acknowledged operation to the journal.
func (s *Stress) note(format string, args ...any) {
	s.journal = append(s.journal, fmt.Sprintf("%8.3fs ", time.Since(s.began).Seconds())+fmt.Sprintf(format, args...))
}

// Journal is every acknowledged operation, in the order the registry acknowledged
// them, each with its time since the load began.
func (s *Stress) Journal() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.journal)
}

func (s *Stress) recordDelete(kind string, err error, repo string, what string, tags ...string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, tag := range tags {
		// A delete that failed may have been done in part: its tags are no longer
		// known to be there.
		delete(s.live, repo+":"+tag)
	}
	if err != nil {
		s.failed(kind, err)
		return false
	}
	s.counts[kind]++
	s.note("%s %s@%s (tags %s)", kind, repo, what, strings.Join(tags, ","))
	return true
}

func (s *Stress) failed(kind string, err error) {
	s.counts["failed "+kind]++
	if len(s.errs) < 20 {
		s.errs = append(s.errs, kind+": "+err.Error())
	}
}

// Acknowledged is how many operations the registry acknowledged.
func (s *Stress) Acknowledged() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for kind, c := range s.counts {
		if !strings.HasPrefix(kind, "failed ") {
			n += c
		}
	}
	return n
}

// Live is every acknowledged tag not deleted since, and its digest.
func (s *Stress) Live() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.live)
}

// Summary is the counts by kind, and a sample of the failures.
func (s *Stress) Summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var kinds []string
	for kind, c := range s.counts {
		kinds = append(kinds, fmt.Sprintf("%s %d", kind, c))
	}
	sort.Strings(kinds)
	out := strings.Join(kinds, ", ")
	if len(s.errs) > 0 {
		out += "\nfailures (a sample; a push the registry refused was never acknowledged):\n  " + strings.Join(s.errs, "\n  ")
	}
	return out
}

// Verify pulls every acknowledged, undeleted tag whole and checks every blob's
// digest: lost is what no longer answers (or answers another image), corrupt what
// answers with a missing or wrong blob.
func (s *Stress) Verify(ctx context.Context) (lost, corrupt []string) {
	live := s.Live()
	type result struct{ ref, lost, corrupt string }
	refs := make(chan string)
	results := make(chan result)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for ref := range refs {
				want := live[ref]
				r := result{ref: ref}
				i := strings.LastIndex(ref, ":")
				img, err := remote.Image(s.ref(ref[:i], ref[i+1:]), s.remote(ctx)...)
				if err == nil {
					var d v1.Hash
					if d, err = img.Digest(); err == nil && d.String() != want {
						err = fmt.Errorf("digest %s, acknowledged %s", d, want)
					}
					if err != nil {
						r.lost = fmt.Sprintf("%s: %v", ref, err)
					} else if err := validate.Image(img); err != nil {
						r.corrupt = fmt.Sprintf("%s: %v", ref, err)
					}
				} else {
					r.lost = fmt.Sprintf("%s: %v", ref, err)
				}
				results <- r
			}
		})
	}
	go func() {
		for ref := range live {
			refs <- ref
		}
		close(refs)
		wg.Wait()
		close(results)
	}()
	for r := range results {
		if r.lost != "" {
			lost = append(lost, r.lost)
		}
		if r.corrupt != "" {
			corrupt = append(corrupt, r.corrupt)
		}
	}
	sort.Strings(lost)
	sort.Strings(corrupt)
	return lost, corrupt
}

// Repositories are the repositories the load pushed to.
func (s *Stress) Repositories() []string {
	var out []string
	for i := range s.opts.Repositories {
		out = append(out, s.repo(i))
	}
	return out
}

// PruneLoop is what a loop of `pullgate adm prune --confirm --keep-younger-than 0s`
// did: how many prunes finished, how many were killed part way, what they reclaimed.
type PruneLoop struct {
	Runs, Killed int
	Reclaimed    int64
}

// LoopPrunes runs `pullgate adm prune --confirm --keep-younger-than 0s` with args, one
// after another, until ctx ends, killing every killEvery-th one (0: none) with SIGKILL
// at a random moment of its first 400 ms; it stops at the first that fails.
func LoopPrunes(ctx context.Context, killEvery int, args ...string) (PruneLoop, error) {
	args = append([]string{"adm", "prune", "--confirm", "--keep-younger-than", "0s"}, args...)
	var l PruneLoop
	for n := 1; ctx.Err() == nil; n++ {
		runCtx, cancel := context.WithCancel(ctx)
		var timer *time.Timer
		if killEvery > 0 && n%killEvery == 0 {
			timer = time.AfterFunc(time.Duration(20+rand.IntN(380))*time.Millisecond, cancel)
		}
		res, err := Run(runCtx, RunOptions{}, args...)
		killed := runCtx.Err() != nil
		if timer != nil {
			timer.Stop()
		}
		cancel()
		switch {
		case ctx.Err() != nil:
			return l, nil
		case killed:
			l.Killed++
			continue
		case err != nil || res.ExitCode != 0:
			return l, fmt.Errorf("pullgate adm prune: %v, exit %d: %s%s", err, res.ExitCode, res.Stdout, res.Stderr)
		}
		// "reclaimed 1.5MiB: …"
		if f := strings.Fields(strings.TrimPrefix(res.Stdout, "reclaimed ")); len(f) > 0 {
			if b, err := units.RAMInBytes(strings.TrimSuffix(f[0], ":")); err == nil {
				l.Reclaimed += b
			}
		}
		l.Runs++
	}
	return l, nil
}

// StreamsUnservable lists the tags the ImageStreams of the load's repositories show
// that the registry does not serve as they say.
func (s *Stress) StreamsUnservable(ctx context.Context, e *Env) []string {
	var out []string
	for _, repo := range s.Repositories() {
		namespace, stream, _ := strings.Cut(repo, "/")
		tags, _, err := e.StreamTags(ctx, namespace, stream)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", repo, err))
			continue
		}
		for tag, want := range tags {
			desc, err := remote.Head(s.ref(repo, tag), s.remote(ctx)...)
			switch {
			case err != nil:
				out = append(out, fmt.Sprintf("%s:%s: %v", repo, tag, err))
			case desc.Digest.String() != want:
				out = append(out, fmt.Sprintf("%s:%s: the registry serves %s, the imagestream says %s", repo, tag, desc.Digest, want))
			default:
				img, err := remote.Image(s.ref(repo, tag), s.remote(ctx)...)
				if err == nil {
					err = validate.Image(img)
				}
				if err != nil {
					out = append(out, fmt.Sprintf("%s:%s: %v", repo, tag, err))
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// StressWhilePruning runs the load while `pullgate adm prune --confirm
// --keep-younger-than 0s` (with pruneArgs) runs in a loop, every third one killed
// part way (SIGKILL), then pulls every acknowledged, undeleted tag and fails t for each
// one lost or corrupt, printing what the journal says of it. It returns the ledger
// and what the loop did.
func StressWhilePruning(t testing.TB, ctx context.Context, opts StressOptions, pruneArgs ...string) (*Stress, PruneLoop) {
	t.Helper()
	loopCtx, stop := context.WithCancel(ctx)
	type loop struct {
		PruneLoop
		err error
	}
	done := make(chan loop, 1)
	go func() {
		var l loop
		l.PruneLoop, l.err = LoopPrunes(loopCtx, 3, pruneArgs...)
		done <- l
	}()
	st, err := RunStress(ctx, opts)
	stop()
	prunes := <-done
	if err != nil {
		t.Fatal(err)
	}
	if prunes.err != nil {
		t.Errorf("a prune failed during the load: %v", prunes.err)
	}
	t.Logf("%d operations acknowledged: %s", st.Acknowledged(), st.Summary())
	t.Logf("%d adm prunes reclaimed %s; %d more were killed part way", prunes.Runs, units.BytesSize(float64(prunes.Reclaimed)), prunes.Killed)
	lost, corrupt := st.Verify(ctx)
	t.Logf("%d acknowledged, undeleted tags pulled and checked: %d lost, %d corrupt", len(st.Live()), len(lost), len(corrupt))
	for _, bad := range append(lost, corrupt...) {
		t.Errorf("%s\n%s", bad, strings.Join(st.journalOf(strings.Fields(bad)[0]), "\n"))
	}
	if n := len(st.Live()); n < 100 {
		t.Errorf("only %d tags were acknowledged and kept: the load did too little to prove anything", n)
	}
	if prunes.Reclaimed == 0 || prunes.Killed == 0 {
		t.Errorf("the prunes reclaimed %d bytes and %d were killed during the load: they did not race it", prunes.Reclaimed, prunes.Killed)
	}
	return st, prunes.PruneLoop
}

// journalOf is what the journal says of the image a lost repository:tag: (as Verify
// names it) was acknowledged as.
func (s *Stress) journalOf(ref string) []string {
	ref = strings.TrimSuffix(ref, ":")
	want := s.Live()[ref]
	var out []string
	for _, j := range s.Journal() {
		if want != "" && strings.Contains(j, want) || strings.Contains(j, " "+ref+" ") {
			out = append(out, "  journal: "+j)
		}
	}
	return out
}
