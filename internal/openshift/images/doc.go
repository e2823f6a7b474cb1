// Package images is what OpenShift's image API does with images, through
// go-containerregistry: copy an image from one stream to another inside the
// integrated registry (oc tag), read an image from another registry with a
// project's pull secrets chosen as the kubelet chooses them (oc import-image), and
// describe any image as image.openshift.io/v1 Image from its manifest and config
// (oc describe istag, oc new-app).
//
// Inside the integrated registry it acts as its own service account
// (pullgate-system/pullgate-image-api), whose registry rights the registry decides
// from RBAC like anyone's; whether the user may read the source is decided before,
// by the caller. Imports never use that account: only the project's own secrets.
package images
