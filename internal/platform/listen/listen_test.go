package listen

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestTakenPortNamesItsHolder(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	_, err = TCP(held.Addr().String(), "--some-port")
	if err == nil {
		t.Fatal("a taken port was bound again")
	}
	for _, want := range []string{held.Addr().String(), "address already in use", "pid " + strconv.Itoa(os.Getpid()), "--some-port"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if got := Holder(1); got != "" {
		t.Errorf("port 1 is held by %q", got)
	}
}
