package kubelet

import (
	"context"
	"errors"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/tools/cache"

	"pullgate.dev/pullgate/internal/node/clusterpullsecret"
	"pullgate.dev/pullgate/internal/platform/atomicfile"
)

// syncPullSecret keeps the kubelet's node-level config.json (in its root directory,
// where the kubelet's keyring reads it) equal to the cluster pull secret, and absent
// when there is none.
func (n *Node) syncPullSecret(ctx context.Context) {
	path := n.files.NodeConfigJSON()
	write := func(obj any) {
		secret, ok := obj.(*corev1.Secret)
		if !ok {
			return
		}
		if data := secret.Data[corev1.DockerConfigJsonKey]; len(data) > 0 {
			if err := atomicfile.Replace(path, data, 0o600); err != nil {
				n.log.Error("writing the node's config.json", "path", path, "err", err)
			}
		}
	}
	remove := func(any) {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			n.log.Error("removing the node's config.json", "path", path, "err", err)
		}
	}
	watch := cache.NewListWatchFromClient(n.cfg.Admin.CoreV1().RESTClient(), "secrets", clusterpullsecret.Namespace,
		fields.OneTermEqualSelector("metadata.name", clusterpullsecret.Name))
	_, informer := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: watch,
		ObjectType:    &corev1.Secret{},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    write,
			UpdateFunc: func(_, obj any) { write(obj) },
			DeleteFunc: remove,
		},
	})
	informer.RunWithContext(ctx)
}
