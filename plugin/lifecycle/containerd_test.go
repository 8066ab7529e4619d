package lifecycle

import (
	"testing"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestDecodeEnvelopes(t *testing.T) {
	stamp := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	exitAt := stamp.Add(-time.Second)
	tests := []struct {
		name string
		msg  any
		want Event
		ok   bool
	}{
		{"exec-added", &apievents.TaskExecAdded{ContainerID: "c", ExecID: "e"},
			Event{Kind: ExecAdded, Namespace: "k8s.io", ContainerID: "c", ExecID: "e", Time: stamp}, true},
		{"exec-started", &apievents.TaskExecStarted{ContainerID: "c", ExecID: "e", Pid: 42},
			Event{Kind: ExecStarted, Namespace: "k8s.io", ContainerID: "c", ExecID: "e", Pid: 42, Time: stamp}, true},
		{"exit carries its own time", &apievents.TaskExit{ContainerID: "c", ID: "e", Pid: 42, ExitStatus: 3, ExitedAt: timestamppb.New(exitAt)},
			Event{Kind: ExecExited, Namespace: "k8s.io", ContainerID: "c", ExecID: "e", Pid: 42, ExitStatus: 3, Time: exitAt}, true},
		{"task delete of the init process", &apievents.TaskDelete{ContainerID: "c", Pid: 1},
			Event{Kind: TaskDeleted, Namespace: "k8s.io", ContainerID: "c", ExecID: "c", Pid: 1, Time: stamp}, true},
		{"container delete", &apievents.ContainerDelete{ID: "c"},
			Event{Kind: ContainerDeleted, Namespace: "k8s.io", ContainerID: "c", Time: stamp}, true},
		{"other topics are ignored", &apievents.TaskOOM{ContainerID: "c"}, Event{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := typeurl.MarshalAny(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := decode(&events.Envelope{Timestamp: stamp, Namespace: "k8s.io", Topic: "/tasks/x", Event: a})
			if ok != tt.ok || got != tt.want {
				t.Errorf("decode = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}
