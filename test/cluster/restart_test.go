package cluster

import (
	"reflect"
	"testing"
)

func TestReplaceArg(t *testing.T) {
	args := []string{"--a=1", "--requestheader-allowed-names=front-proxy-client", "--b"}
	got := ReplaceArg(args, "requestheader-allowed-names", "someone-else")
	want := []string{"--a=1", "--requestheader-allowed-names=someone-else", "--b"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("replace: %v, want %v", got, want)
	}
	if got := ReplaceArg(args[:1], "c", "x"); !reflect.DeepEqual(got, []string{"--a=1", "--c=x"}) {
		t.Errorf("add: %v", got)
	}
	if args[1] != "--requestheader-allowed-names=front-proxy-client" {
		t.Error("the input was modified")
	}
}
