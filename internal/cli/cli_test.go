package cli

import (
	"bytes"
	"strings"
	"testing"

	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

func ns(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

func streams() (genericiooptions.IOStreams, *bytes.Buffer, *bytes.Buffer) {
	out, errOut := &bytes.Buffer{}, &bytes.Buffer{}
	return genericiooptions.IOStreams{In: strings.NewReader(""), Out: out, ErrOut: errOut}, out, errOut
}

// An unknown subcommand, or none, of a command that only groups others fails (exit
// 1) naming it, as oc's do; it never exits 0 having done nothing.
func TestUnknownSubcommandFails(t *testing.T) {
	var code int
	var msg string
	cmdutil.BehaviorOnFatal(func(m string, c int) { msg, code = m, c; panic("fatal") })
	defer cmdutil.DefaultBehaviorOnFatal()
	for _, args := range [][]string{{"policy", "nosuch"}, {"secrets", "nosuch"}, {"adm", "nosuch"}, {"create", "nosuch"}, {"explain", "nosuch"}, {"adm", "policy", "nosuch"}, {"policy"}} {
		s, _, _ := streams()
		root := &cobra.Command{Use: "pullgate"}
		root.AddCommand(Commands(s)...)
		root.SetArgs(args)
		code, msg = 0, ""
		func() {
			defer func() { _ = recover() }()
			_ = root.Execute()
		}()
		if code == 0 {
			t.Errorf("pullgate %s exits 0", strings.Join(args, " "))
		}
		if len(args) > 1 && !strings.Contains(msg, `unknown command "nosuch"`) {
			t.Errorf("pullgate %s says %q", strings.Join(args, " "), msg)
		}
	}
}
