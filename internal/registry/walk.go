package registry

import (
	"context"
	"errors"
	"io/fs"
	"sort"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// walk calls fn for everything under from, as the driver's Walk does, while other
// writers add and delete beneath it: what disappears during the walk is skipped, not
// an error. Drivers that walk by listing keys (S3) are not troubled by that and use
// their own Walk; drivers that list directories (filesystem, in memory) fail where a
// directory goes between its listing and its reading, so they are walked here.
func walk(ctx context.Context, driver storagedriver.StorageDriver, from string, fn storagedriver.WalkFn) error {
	switch driver.Name() {
	case "filesystem", "inmemory":
	default:
		return driver.Walk(ctx, from, fn)
	}
	children, err := driver.List(ctx, from)
	if err != nil {
		return err
	}
	_, err = walkChildren(ctx, driver, children, fn)
	return err
}

// walkChildren walks children depth first; stop says fn asked to stop.
func walkChildren(ctx context.Context, driver storagedriver.StorageDriver, children []string, fn storagedriver.WalkFn) (stop bool, err error) {
	sort.Strings(children)
	for _, child := range children {
		if err := ctx.Err(); err != nil {
			return true, err
		}
		fi, err := driver.Stat(ctx, child)
		if gone(err) {
			continue
		}
		if err != nil {
			return true, err
		}
		switch err := fn(fi); {
		case errors.Is(err, storagedriver.ErrSkipDir):
			continue
		case errors.Is(err, storagedriver.ErrFilledBuffer):
			return true, nil
		case err != nil:
			return true, err
		}
		if !fi.IsDir() {
			continue
		}
		grand, err := driver.List(ctx, child)
		if gone(err) {
			continue
		}
		if err != nil {
			return true, err
		}
		if stop, err := walkChildren(ctx, driver, grand, fn); stop || err != nil {
			return stop, err
		}
	}
	return false, nil
}

// gone reports whether err says a path was not there (any more): the driver's own
// not-found error, or the system's, which the filesystem driver wraps without a way
// to unwrap it (a directory deleted between being opened and being read).
func gone(err error) bool {
	if err == nil {
		return false
	}
	var wrapped storagedriver.Error
	if errors.As(err, &wrapped) {
		err = wrapped.Detail
	}
	return isPathNotFound(err) || errors.Is(err, fs.ErrNotExist)
}
