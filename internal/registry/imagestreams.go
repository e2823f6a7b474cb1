package registry

import (
	"context"
	"fmt"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	repositorymiddleware "github.com/distribution/distribution/v3/registry/middleware/repository"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	streamsMiddleware  = "pullgate-imagestreams"
	streamsOptionRepos = "repositories"
	streamsOptionHost  = "host"
)

func init() {
	if err := repositorymiddleware.Register(streamsMiddleware, newStreamsMiddleware); err != nil {
		panic(err)
	}
}

func newStreamsMiddleware(_ context.Context, repo distribution.Repository, options map[string]any) (distribution.Repository, error) {
	repos, ok := options[streamsOptionRepos].(*repositories)
	if !ok {
		return nil, fmt.Errorf("%s middleware: no repositories", streamsMiddleware)
	}
	host, _ := options[streamsOptionHost].(string)
	return &streamRepository{Repository: repo, repos: repos, host: host}, nil
}

// streamRepository keeps the repository's ImageStream showing exactly what the
// registry serves: a tag is recorded once storage holds it, and taken out when it is
// untagged or its manifest deleted (distribution untags a deleted manifest's tags).
// What a crash leaves half done, Reconcile repairs.
type streamRepository struct {
	distribution.Repository
	repos *repositories
	host  string
}

func (r *streamRepository) Tags(ctx context.Context) distribution.TagService {
	return &streamTags{TagService: r.Repository.Tags(ctx), repo: r}
}

type streamTags struct {
	distribution.TagService
	repo *streamRepository
}

// Tag stores the tag, then records it; a tag that could not be recorded is a failed
// push, which the client repeats (recording is idempotent).
func (t *streamTags) Tag(ctx context.Context, tag string, desc v1.Descriptor) error {
	defer t.repo.repos.lock(t.repo.Named().Name())()
	if err := t.TagService.Tag(ctx, tag, desc); err != nil {
		return err
	}
	// The tag is stored: record it even if the client has gone.
	ctx, cancel := recordContext(ctx)
	defer cancel()
	name := t.repo.Named().Name()
	ev := t.repo.repos.tagEvent(ctx, t.repo.Repository, desc, time.Now())
	if err := t.repo.repos.record(ctx, name, t.repo.host, tag, ev); err != nil {
		return errcode.ErrorCodeUnknown.WithMessage(fmt.Sprintf("tag %s is stored but the imagestream of %s could not be updated: %v; push again", tag, name, err))
	}
	return nil
}

// Untag removes the tag, then takes it out of the stream.
func (t *streamTags) Untag(ctx context.Context, tag string) error {
	defer t.repo.repos.lock(t.repo.Named().Name())()
	if err := t.TagService.Untag(ctx, tag); err != nil {
		return err
	}
	ctx, cancel := recordContext(ctx)
	defer cancel()
	if err := t.repo.repos.unrecord(ctx, t.repo.Named().Name(), tag); err != nil {
		return errcode.ErrorCodeUnknown.WithMessage(fmt.Sprintf("tag %s is deleted but the imagestream of %s could not be updated: %v; delete again", tag, t.repo.Named().Name(), err))
	}
	return nil
}

// recordTimeout bounds an ImageStream update that outlives its request.
const recordTimeout = 30 * time.Second

// recordContext is ctx without its cancellation: once storage has changed, the
// stream follows even when the client cancels or disconnects.
func recordContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
}
