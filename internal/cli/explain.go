package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"sigs.k8s.io/yaml"

	"pullgate.dev/pullgate/internal/explain"
	"pullgate.dev/pullgate/internal/node/imagepull"
	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry/location"
	"pullgate.dev/pullgate/pkg/credentials"
)

// ExitCodeError ends a command with Code, printing Err if set.
type ExitCodeError struct {
	Code int
	Err  error
}

func (e *ExitCodeError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitCodeError) Unwrap() error { return e.Err }

// usage is a usage error: exit 2.
func usage(format string, args ...any) error {
	return &ExitCodeError{Code: 2, Err: fmt.Errorf(format, args...)}
}

// ExplainPullOptions is `explain pull`.
type ExplainPullOptions struct {
	genericiooptions.IOStreams
	Namespace      string
	Target         string // POD or IMAGE
	ServiceAccount string // NS/SA
	Secrets        []string
	ConfigFiles    []string
	Probe          string // auto, true, false
	Output         string
	CAFiles        []string
	// CredentialProvider says the nodes run pullgate's credential provider.
	CredentialProvider bool

	Client    kubernetes.Interface
	Explainer *explain.Explainer
}

// NewExplainCommand is `pullgate explain`, whose one subject is pull.
func NewExplainCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{Use: "explain", Short: "Explain why something happens", Run: cmdutil.DefaultSubCommandRun(streams.ErrOut)}
	cmd.AddCommand(newExplainPullCommand(f, streams))
	return cmd
}

func newExplainPullCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &ExplainPullOptions{IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "pull (POD | IMAGE --serviceaccount NS/SA | IMAGE --secret NS/NAME... | IMAGE --config FILE...)",
		Short: "Explain why a pod can or cannot pull its images, and the command that fixes it",
		Long: `For each image, in the kubelet's order: every credential considered (matched or
not, and by which rule), problems with the pod's secrets, the integrated registry's
RBAC decision for the pod's service account, a live probe of the registry (token and
manifest HEAD with each credential, stopping at the first let in; on by default for a
pod), whether the image is on the pod's node, and a verdict with the fix.

Exit status: 0 when every image would pull, 1 when one would not, 2 on usage errors.`,
		Example: `  # Why is pod app in project-a in ImagePullBackOff?
  pullgate explain pull app -n project-a

  # Would a pod of project-a's default service account pull this image?
  pullgate explain pull localhost:5000/project-b/app:v1 --serviceaccount project-a/default

  # Which entry of this file would be used?
  pullgate explain pull quay.io/repository-main/app --config auth.json -o json`,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(f, cmd, args); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &ExitCodeError{Code: 2, Err: err} })
	cmd.Flags().StringVar(&o.ServiceAccount, "serviceaccount", "", "explain IMAGE for a pod of this service account (NAMESPACE/NAME) before any exists")
	cmd.Flags().StringSliceVar(&o.Secrets, "secret", nil, "explain IMAGE with these secrets alone (NAMESPACE/NAME, repeatable)")
	cmd.Flags().StringSliceVar(&o.ConfigFiles, "config", nil, "explain IMAGE with this credential file alone (docker config.json or Podman auth.json, repeatable)")
	cmd.Flags().StringVar(&o.Probe, "probe", "auto", "probe the registry live: true, false, or auto (on for a pod)")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "output format: json or yaml (the schema is explain.Report); default a tree")
	cmd.Flags().StringSliceVar(&o.CAFiles, "ca-file", nil, "PEM file of CAs to trust for registries when probing, besides the system's (repeatable)")
	cmd.Flags().BoolVar(&o.CredentialProvider, "credential-provider", true, "the nodes run pullgate's credential provider (as up's node does): a pod's own service account token pulls from the integrated registry")
	return cmd
}

func (o *ExplainPullOptions) Complete(f cmdutil.Factory, cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usage("explain pull takes one POD or IMAGE, got %d arguments (see pullgate explain pull --help)", len(args))
	}
	o.Target = args[0]
	var err error
	if o.Namespace, _, err = f.ToRawKubeConfigLoader().Namespace(); err != nil {
		return err
	}
	cfg, err := f.ToRESTConfig()
	if err != nil {
		return err
	}
	// One explanation reads a few dozen objects: client-go's default of 5 requests a
	// second would spend seconds waiting on itself.
	cfg.QPS, cfg.Burst = 100, 200
	if o.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	o.Explainer = &explain.Explainer{Client: o.Client, CredentialProvider: o.CredentialProvider}
	return nil
}

func (o *ExplainPullOptions) Validate() error {
	forms := 0
	for _, set := range []bool{o.ServiceAccount != "", len(o.Secrets) > 0 || len(o.ConfigFiles) > 0} {
		if set {
			forms++
		}
	}
	if forms > 1 {
		return usage("--serviceaccount and --secret/--config: give one or the other")
	}
	if o.ServiceAccount != "" && !strings.Contains(o.ServiceAccount, "/") {
		return usage("--serviceaccount %q: want NAMESPACE/NAME", o.ServiceAccount)
	}
	for _, s := range o.Secrets {
		if ns, n, ok := strings.Cut(s, "/"); !ok || ns == "" || n == "" {
			return usage("--secret %q: want NAMESPACE/NAME", s)
		}
	}
	switch o.Output {
	case "", "json", "yaml":
	default:
		return usage("--output %q: want json or yaml", o.Output)
	}
	switch o.Probe {
	case "auto", "true", "false":
	default:
		return usage("--probe %q: want true, false or auto", o.Probe)
	}
	return nil
}

// podForm reports whether the target is a pod.
func (o *ExplainPullOptions) podForm() bool {
	return o.ServiceAccount == "" && len(o.Secrets) == 0 && len(o.ConfigFiles) == 0
}

func (o *ExplainPullOptions) Run(ctx context.Context) error {
	e := o.Explainer
	if info, err := location.Read(ctx, o.Client); err == nil {
		e.RegistryHosts = info.Hostnames
	}
	if authz, err := rbacauthz.NewForClient(ctx, o.Client); err == nil {
		e.Authz = authz
	}
	if o.Probe == "true" || o.Probe == "auto" && o.podForm() {
		transport, err := imagepull.TrustingTransport(o.CAFiles)
		if err != nil {
			return err
		}
		e.Puller = &imagepull.Puller{Transport: transport, IntegratedHosts: e.RegistryHosts}
	}
	var report explain.Report
	var err error
	switch {
	case o.ServiceAccount != "":
		ns, name, _ := strings.Cut(o.ServiceAccount, "/")
		report, err = e.ServiceAccount(ctx, o.Target, ns, name)
	case len(o.Secrets) > 0 || len(o.ConfigFiles) > 0:
		var files []*credentials.Config
		for _, path := range o.ConfigFiles {
			data, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("--config: %w", err)
			}
			cfg, err := credentials.ParseConfig(data, credentials.Source{Kind: "file", Name: path})
			if err != nil {
				return fmt.Errorf("--config: %w", err)
			}
			files = append(files, cfg)
		}
		report = e.Credentials(ctx, o.Target, o.Secrets, files)
	default:
		report, err = e.Pod(ctx, o.Namespace, o.Target)
	}
	if err != nil {
		return err
	}
	if err := o.print(report); err != nil {
		return err
	}
	if !report.WouldPull() {
		return &ExitCodeError{Code: 1}
	}
	return nil
}

func (o *ExplainPullOptions) print(r explain.Report) error {
	switch o.Output {
	case "json":
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case "yaml":
		data, err := yaml.Marshal(r)
		if err != nil {
			return err
		}
		_, err = o.Out.Write(data)
		return err
	}
	return r.Write(o.Out)
}
