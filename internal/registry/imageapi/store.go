package imageapi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	imagev1 "github.com/openshift/api/image/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"
)

// Streams reads and writes ImageStreams through the API.
type Streams struct {
	Client dynamic.Interface
}

// ErrStreamReplaced means the ImageStream a push began with was deleted (and maybe
// made again) before the push ended.
var ErrStreamReplaced = errors.New("the imagestream was deleted during the push")

// Get returns the UID of ImageStream namespace/name, read from the API (not a
// cache); exists is false when there is none.
func (s Streams) Get(ctx context.Context, namespace, name string) (uid string, exists bool, err error) {
	obj, err := s.Client.Resource(GVR).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return string(obj.GetUID()), true, nil
}

// UID is the UID of ImageStream namespace/name, read from the API (for a process
// that keeps no informer).
func (s Streams) UID(namespace, name string) (string, bool) {
	uid, exists, err := s.Get(context.Background(), namespace, name)
	return uid, err == nil && exists
}

// History lists every digest the tags of ImageStream namespace/name point or pointed
// at, read from the API.
func (s Streams) History(ctx context.Context, namespace, name string) ([]string, error) {
	obj, err := s.Client.Resource(GVR).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	is, err := fromUnstructured(obj)
	if err != nil {
		return nil, err
	}
	return is.Status.History(), nil
}

// List reads every ImageStream in every namespace from the API, a page at a time.
func (s Streams) List(ctx context.Context) ([]ImageStream, error) {
	var out []ImageStream
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := s.Client.Resource(GVR).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for i := range list.Items {
			is, err := fromUnstructured(&list.Items[i])
			if err != nil {
				return nil, err
			}
			out = append(out, *is)
		}
		if opts.Continue = list.GetContinue(); opts.Continue == "" {
			return out, nil
		}
	}
}

// Ensure returns the UID of ImageStream namespace/name, making it (pointing at
// repository, host/namespace/path) when there is none; created says whether this call
// made it. The namespace must exist: its absence is a NotFound error.
func (s Streams) Ensure(ctx context.Context, namespace, name, repository string) (uid string, created bool, err error) {
	_, path, _ := strings.Cut(repository, "/")
	res := s.Client.Resource(GVR).Namespace(namespace)
	for range 3 {
		if uid, exists, err := s.Get(ctx, namespace, name); err != nil || exists {
			return uid, false, err
		}
		obj, err := res.Create(ctx, toUnstructured(&ImageStream{
			TypeMeta:   metav1.TypeMeta{APIVersion: Group + "/" + Version, Kind: Kind},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Annotations: map[string]string{AnnotationRepository: path}},
		}), metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			continue // made by another push a moment ago
		}
		if err != nil {
			return "", false, err
		}
		is, err := fromUnstructured(obj)
		if err != nil {
			return "", false, err
		}
		is.Status.DockerImageRepository = repository
		if _, err := res.UpdateStatus(ctx, toUnstructured(is), metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
			return "", false, err
		}
		return string(obj.GetUID()), true, nil
	}
	return "", false, fmt.Errorf("imagestream %s/%s: made and deleted again while being made", namespace, name)
}

// RecordTag points tag at ev in ImageStream namespace/name, whose UID must be uid,
// keeping the tag's history (newest first, at most MaxTagHistory). A stream that is
// gone or was made again is ErrStreamReplaced: its tags are not this push's.
func (s Streams) RecordTag(ctx context.Context, namespace, name, uid, repository, tag string, ev TagEvent) error {
	return s.update(ctx, namespace, name, uid, func(st *ImageStreamStatus) bool {
		return applyTag(st, repository, tag, ev)
	})
}

// RecordReferrer adds ref to ImageStream namespace/name (of UID uid), newest first,
// once per digest, keeping at most MaxReferrers.
func (s Streams) RecordReferrer(ctx context.Context, namespace, name, uid string, ref Referrer) error {
	return s.update(ctx, namespace, name, uid, func(st *ImageStreamStatus) bool {
		for _, r := range st.Referrers {
			if r.Digest == ref.Digest && r.Subject == ref.Subject {
				return false
			}
		}
		st.Referrers = append([]Referrer{ref}, st.Referrers...)
		if len(st.Referrers) > MaxReferrers {
			st.Referrers = st.Referrers[:MaxReferrers]
		}
		return true
	})
}

// RemoveTag takes tag out of ImageStream namespace/name (of UID uid), history and all.
func (s Streams) RemoveTag(ctx context.Context, namespace, name, uid, tag string) error {
	return s.update(ctx, namespace, name, uid, func(st *ImageStreamStatus) bool {
		return removeTag(st, tag)
	})
}

// SyncTags makes the tags of ImageStream namespace/name (of UID uid) exactly want —
// tag → what it points at now, as storage said at readAt — keeping history where a
// tag's current digest is unchanged, and keeping a tag recorded since readAt (a push
// storage had not finished when it was read). It reports whether anything changed.
func (s Streams) SyncTags(ctx context.Context, namespace, name, uid, repository string, want map[string]TagEvent, readAt time.Time) (bool, error) {
	changed := false
	err := s.update(ctx, namespace, name, uid, func(st *ImageStreamStatus) bool {
		changed = syncTags(st, repository, want, readAt)
		return changed
	})
	return changed, err
}

// update applies change to the status of ImageStream namespace/name (of UID uid),
// retrying on conflicts; change reports whether it changed anything.
// Tag events recorded without a generation get the stream's.
func (s Streams) update(ctx context.Context, namespace, name, uid string, change func(*ImageStreamStatus) bool) error {
	res := s.Client.Resource(GVR).Namespace(namespace)
	return retry.RetryOnConflict(updateBackoff, func() error {
		obj, err := res.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || err == nil && string(obj.GetUID()) != uid {
			return fmt.Errorf("imagestream %s/%s: %w", namespace, name, ErrStreamReplaced)
		}
		if err != nil {
			return err
		}
		is, err := fromUnstructured(obj)
		if err != nil {
			return err
		}
		if !change(&is.Status) {
			return nil
		}
		stampGeneration(&is.Status, is.Generation)
		_, err = res.UpdateStatus(ctx, toUnstructured(is), metav1.UpdateOptions{})
		return err
	})
}

// updateBackoff spaces the retries of a status update that met a conflict: every push
// of a repository, on every registry replica, updates the same stream.
var updateBackoff = wait.Backoff{Steps: 12, Duration: 10 * time.Millisecond, Factor: 1.5, Jitter: 0.5, Cap: time.Second}

// applyTag updates status and reports whether anything changed.
func applyTag(st *ImageStreamStatus, repository, tag string, ev TagEvent) bool {
	changed := st.DockerImageRepository != repository
	st.DockerImageRepository = repository
	if tag == "" {
		return changed
	}
	if ev.Created.IsZero() {
		ev.Created = metav1.NewTime(time.Now())
	}
	ev.Created = metav1.NewTime(ev.Created.UTC().Truncate(time.Second))
	defer updateTagNames(st)
	for i := range st.Tags {
		if st.Tags[i].Tag != tag {
			continue
		}
		if items := st.Tags[i].Items; len(items) > 0 && items[0].Digest == ev.Digest && items[0].DockerImageReference == ev.DockerImageReference {
			if ev.Generation > items[0].Generation {
				items[0].Generation = ev.Generation // followed again, by a newer spec
				return true
			}
			return changed
		}
		items := append([]TagEvent{ev}, st.Tags[i].Items...)
		if len(items) > MaxTagHistory {
			items = items[:MaxTagHistory]
		}
		st.Tags[i].Items = items
		return true
	}
	st.Tags = append(st.Tags, NamedTagEventList{Tag: tag, Items: []TagEvent{ev}})
	return true
}

// stampGeneration gives events recorded without a generation the stream's.
func stampGeneration(st *ImageStreamStatus, generation int64) {
	for i := range st.Tags {
		for j := range st.Tags[i].Items {
			if st.Tags[i].Items[j].Generation == 0 {
				st.Tags[i].Items[j].Generation = generation
			}
		}
	}
}

func removeTag(st *ImageStreamStatus, tag string) bool {
	before := len(st.Tags)
	st.Tags = slices.DeleteFunc(st.Tags, func(t NamedTagEventList) bool { return t.Tag == tag })
	updateTagNames(st)
	return len(st.Tags) != before
}

func syncTags(st *ImageStreamStatus, repository string, want map[string]TagEvent, readAt time.Time) bool {
	changed := false
	readAt = readAt.UTC().Truncate(time.Second)
	for _, t := range slices.Clone(st.Tags) {
		if !storedInRegistry(t) {
			continue // an import, or a tag whose import failed: not storage's to say
		}
		if _, ok := want[t.Tag]; !ok && latest(t).Before(readAt) {
			changed = removeTag(st, t.Tag) || changed
		}
	}
	tags := make([]string, 0, len(want))
	for tag := range want {
		tags = append(tags, tag)
	}
	slices.Sort(tags)
	for _, tag := range tags {
		changed = applyTag(st, repository, tag, want[tag]) || changed
	}
	names := st.TagNames
	updateTagNames(st)
	return changed || names != st.TagNames
}

// tagNamesWidth is how wide the printed list of tags may grow before the rest is
// counted, as oc get imagestreams prints it.
const tagNamesWidth = 40

// updateTagNames keeps TagNames, the printed list of tags, in step: the most
// recently moved first, then "+ N more..." past tagNamesWidth.
func updateTagNames(st *ImageStreamStatus) {
	tags := slices.Clone(st.Tags)
	slices.SortStableFunc(tags, func(a, b NamedTagEventList) int {
		if c := latest(b).Compare(latest(a)); c != 0 {
			return c
		}
		return strings.Compare(a.Tag, b.Tag)
	})
	var names []string
	width := 0
	for i, t := range tags {
		if i > 0 && width+1+len(t.Tag) > tagNamesWidth {
			names[len(names)-1] += fmt.Sprintf(" + %d more...", len(tags)-i)
			break
		}
		names = append(names, t.Tag)
		width += len(t.Tag) + 1
	}
	st.TagNames = strings.Join(names, ",")
}

// storedInRegistry reports whether the tag points into the registry's storage,
// where syncTags may check it.
func storedInRegistry(t NamedTagEventList) bool {
	return len(t.Items) > 0 && !t.Items[0].External()
}

func latest(t NamedTagEventList) time.Time {
	if len(t.Items) == 0 {
		return time.Time{}
	}
	return t.Items[0].Created.Time
}

func fromUnstructured(obj *unstructured.Unstructured) (*ImageStream, error) {
	var is ImageStream
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &is); err != nil {
		return nil, fmt.Errorf("imagestream %s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
	}
	return &is, nil
}

func toUnstructured(is *ImageStream) *unstructured.Unstructured {
	m, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(is)
	return &unstructured.Unstructured{Object: m}
}

// Create makes ImageStream namespace/meta.Name with spec, as a user asks for it
// (not a push): its labels and annotations are the user's.
func (s Streams) Create(ctx context.Context, namespace string, meta metav1.ObjectMeta, spec ImageStreamSpec) (*ImageStream, error) {
	is := &ImageStream{
		TypeMeta:   metav1.TypeMeta{APIVersion: Group + "/" + Version, Kind: Kind},
		ObjectMeta: metav1.ObjectMeta{Name: meta.Name, GenerateName: meta.GenerateName, Namespace: namespace, Labels: meta.Labels, Annotations: meta.Annotations},
		Spec:       spec,
	}
	obj, err := s.Client.Resource(GVR).Namespace(namespace).Create(ctx, toUnstructured(is), metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	return fromUnstructured(obj)
}

// UpdateSpec writes spec, labels and annotations over old (at meta's resource
// version when it has one: a conflict is the caller's to resolve), keeping the
// annotation that names the repository.
func (s Streams) UpdateSpec(ctx context.Context, old *ImageStream, meta metav1.ObjectMeta, spec ImageStreamSpec) (*ImageStream, error) {
	is, err := fromUnstructured(toUnstructured(old))
	if err != nil {
		return nil, err
	}
	if meta.ResourceVersion != "" {
		is.ResourceVersion = meta.ResourceVersion
	}
	repo, named := old.Annotations[AnnotationRepository]
	is.Labels, is.Annotations, is.Spec = meta.Labels, meta.Annotations, spec
	if named {
		if is.Annotations == nil {
			is.Annotations = map[string]string{}
		}
		is.Annotations[AnnotationRepository] = repo
	}
	obj, err := s.Client.Resource(GVR).Namespace(old.Namespace).Update(ctx, toUnstructured(is), metav1.UpdateOptions{})
	if err != nil {
		return nil, err
	}
	return fromUnstructured(obj)
}

// Read is ImageStream namespace/name.
func (s Streams) Read(ctx context.Context, namespace, name string) (*ImageStream, error) {
	obj, err := s.Client.Resource(GVR).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return fromUnstructured(obj)
}

// SetTagCondition records why tag could not follow its spec (nil: it does now).
func (s Streams) SetTagCondition(ctx context.Context, namespace, name, uid, tag string, cond *imagev1.TagEventCondition) error {
	return s.update(ctx, namespace, name, uid, func(st *ImageStreamStatus) bool {
		for i := range st.Tags {
			if st.Tags[i].Tag != tag {
				continue
			}
			if cond == nil {
				changed := len(st.Tags[i].Conditions) > 0
				st.Tags[i].Conditions = nil
				return changed
			}
			st.Tags[i].Conditions = []imagev1.TagEventCondition{*cond}
			return true
		}
		if cond == nil {
			return false
		}
		st.Tags = append(st.Tags, NamedTagEventList{Tag: tag, Items: []TagEvent{}, Conditions: []imagev1.TagEventCondition{*cond}})
		return true
	})
}
