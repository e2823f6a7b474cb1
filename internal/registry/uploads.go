package registry

import (
	"context"
	"fmt"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/google/uuid"
)

// UploadSessionIdle is how long an upload may go without a write before the registry
// refuses to resume it: after that nobody can resume it, so a prune reclaims it at
// once. Clients write an upload's chunks one after another; one that stops for this
// long has gone.
const UploadSessionIdle = 15 * time.Minute

// expiredUpload answers for an upload nobody has written to for UploadSessionIdle:
// it is deleted, and the client told to start again. It reports whether it answered.
func (g *repositoryGate) expiredUpload(w http.ResponseWriter, r *http.Request, name, ref string) bool {
	id, ok := strings.CutPrefix(ref, "uploads/")
	if !ok || r.Method == http.MethodPost || !granted(r, g.verifier, name, "push") {
		return false
	}
	if _, err := uuid.Parse(id); err != nil {
		return false
	}
	dir := path.Join(repositoryDir(name), "_uploads", id)
	written, ok := lastWritten(r.Context(), g.repos.driver, dir)
	if !ok || time.Since(written) <= UploadSessionIdle {
		return false
	}
	if err := g.repos.driver.Delete(r.Context(), dir); err != nil && !isPathNotFound(err) {
		g.log.Warn("an expired upload could not be deleted", "repository", name, "upload", id, "err", err)
	}
	_ = errcode.ServeJSON(w, errcode.ErrorCodeBlobUploadUnknown.WithMessage(fmt.Sprintf(
		"upload %s to %s expired: nothing was written to it for more than %s, so it was deleted; start the upload again", id, name, UploadSessionIdle)))
	return true
}

// lastWritten is when anything under dir was last written; ok is false when dir holds
// nothing.
func lastWritten(ctx context.Context, driver storagedriver.StorageDriver, dir string) (time.Time, bool) {
	var newest time.Time
	err := walk(ctx, driver, dir, func(fi storagedriver.FileInfo) error {
		if fi.ModTime().After(newest) {
			newest = fi.ModTime()
		}
		return nil
	})
	return newest, err == nil && !newest.IsZero()
}
