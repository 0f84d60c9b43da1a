package kubeagent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/metrics-gateway/metrics-gateway/test/sim"
)

// statusCurrent says whether the object already shows the pod running where the
// simulation runs it, so a sync after our own patch is a no-op.
func statusCurrent(pod *corev1.Pod, p *sim.Pod) bool {
	if pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP != p.IP.String() {
		return false
	}
	if len(pod.Status.ContainerStatuses) != len(pod.Spec.Containers) {
		return false
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if !cs.Ready || cs.State.Running == nil {
			return false
		}
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// runningStatusPatch is a merge patch of the status subresource reporting every
// container started and ready since the pod started in the simulation.
func runningStatusPatch(pod *corev1.Pod, p *sim.Pod) ([]byte, error) {
	hostIP := p.HostIP.String()
	started := metav1.NewTime(p.Model.Start())
	startTime := pod.Status.StartTime
	if startTime == nil {
		startTime = &started
	}
	st := pod.Status.DeepCopy()
	st.Phase = corev1.PodRunning
	st.Reason, st.Message = "", ""
	st.HostIP, st.HostIPs = hostIP, []corev1.HostIP{{IP: hostIP}}
	st.PodIP, st.PodIPs = p.IP.String(), []corev1.PodIP{{IP: p.IP.String()}}
	st.StartTime = startTime
	st.Conditions = nil
	for _, t := range []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.PodReady, corev1.ContainersReady, corev1.PodScheduled} {
		st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: started, ObservedGeneration: pod.Generation})
	}
	st.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, runningContainer(pod, c, started))
	}
	st.InitContainerStatuses = nil
	for _, c := range pod.Spec.InitContainers {
		if isSidecar(c) {
			st.InitContainerStatuses = append(st.InitContainerStatuses, runningContainer(pod, c, started))
			continue
		}
		cs := fakeContainer(pod, c)
		cs.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: started, FinishedAt: started, ContainerID: cs.ContainerID}
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
	}
	st.ObservedGeneration = pod.Generation
	b, err := json.Marshal(map[string]any{"status": st})
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s status patch: %w", pod.Namespace, pod.Name, err)
	}
	return b, nil
}

func runningContainer(pod *corev1.Pod, c corev1.Container, started metav1.Time) corev1.ContainerStatus {
	cs := fakeContainer(pod, c)
	cs.Ready, cs.Started = true, new(true)
	cs.State.Running = &corev1.ContainerStateRunning{StartedAt: started}
	return cs
}

// fakeContainer fills the runtime's identifiers with well-formed values derived
// from the pod UID, so they are stable across syncs and unique per pod.
func fakeContainer(pod *corev1.Pod, c corev1.Container) corev1.ContainerStatus {
	image := c.Image
	if image == "" {
		image = sim.PauseImage
	}
	repo := image
	if i := strings.LastIndex(repo, "@"); i >= 0 {
		repo = repo[:i]
	} else if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	return corev1.ContainerStatus{
		Name:         c.Name,
		Image:        image,
		ImageID:      repo + "@sha256:" + digest(image),
		ContainerID:  "containerd://" + sim.ContainerID(string(pod.UID), c.Name),
		RestartCount: 0,
	}
}

func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
