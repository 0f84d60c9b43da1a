package sim

import (
	"math"
	"testing"
	"time"
)

// t0 is a round time so offsets read easily.
var t0 = time.Unix(1_790_000_000, 0)

func at(d time.Duration) time.Time { return t0.Add(d) }

func approx(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-9*math.Max(1, math.Abs(want)) {
		t.Errorf("%s = %.12g, want %.12g", what, got, want)
	}
}

func TestIdlePodIntegratesBase(t *testing.T) {
	m := NewPodModel([]string{"app", "side"}, DefaultParams(), t0)
	u := m.Usage(at(10 * time.Second))
	for _, c := range u.Containers {
		approx(t, c.Name+" cpu seconds", c.CPUSeconds, 0.01*10)
		approx(t, c.Name+" cores", c.CPUCores, 0.01)
		approx(t, c.Name+" memory", c.MemoryBytes, 50*mib)
	}
	approx(t, "pod cpu seconds", u.CPUSeconds(), 0.2)
}

// Every request adds perRequest/10 cores for exactly the 10 s it stays in the window,
// so once the window has drained the load's CPU is perRequest × requests, split over
// the containers, whatever the request times and however often the pod is read.
func TestLoadIntegratesExactly(t *testing.T) {
	p := Params{CPUBase: 0.02, CPUPerRequest: 0.05, MemoryBytes: 10 * mib}
	tests := []struct {
		name     string
		interval time.Duration
		n        int
		readEach int // read the counters every readEach requests; 0 never
	}{
		{"every 100 ms", 100 * time.Millisecond, 300, 0},
		{"irregular, read often", 37 * time.Millisecond, 1000, 7},
		{"bursty, 13 ms apart", 13 * time.Millisecond, 2000, 100},
		{"sparse", 2300 * time.Millisecond, 20, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewPodModel([]string{"a", "b"}, p, t0)
			for i := range tt.n {
				now := at(time.Duration(i)*tt.interval + time.Millisecond)
				m.ServeRequest(now)
				if tt.readEach > 0 && i%tt.readEach == 0 {
					m.Usage(now)
				}
			}
			end := at(time.Duration(tt.n)*tt.interval + RateWindow + time.Second)
			u := m.Usage(end)
			if u.RPS != 0 {
				t.Errorf("rps after the window drained = %g, want 0", u.RPS)
			}
			elapsed := end.Sub(t0).Seconds()
			for _, c := range u.Containers {
				approx(t, c.Name+" cpu seconds", c.CPUSeconds, p.CPUBase*elapsed+p.CPUPerRequest*float64(tt.n)/2)
			}
			if got := m.Requests(); got != uint64(tt.n) {
				t.Errorf("requests = %d, want %d", got, tt.n)
			}
		})
	}
}

func TestSteadyLoadRatesSplitAcrossContainers(t *testing.T) {
	p := Params{CPUBase: 0.01, CPUPerRequest: 0.01, MemoryBytes: 50 * mib}
	m := NewPodModel([]string{"a", "b"}, p, t0)
	// 20 req/s for 15 s; the window (t-10s, t] just after the last holds 200.
	for i := range 300 {
		m.ServeRequest(at(time.Duration(i) * 50 * time.Millisecond))
	}
	u := m.Usage(at(14960 * time.Millisecond))
	approx(t, "rps", u.RPS, 20)
	for _, c := range u.Containers {
		approx(t, c.Name+" cores", c.CPUCores, 0.01+0.01*10)
		approx(t, c.Name+" memory", c.MemoryBytes, 50*mib+10*mib)
	}
	approx(t, "pod cores", u.Rate().CPUCores, 2*(0.01+0.01*10))
}

func TestRateWindowForgets(t *testing.T) {
	m := NewPodModel([]string{"a"}, DefaultParams(), t0)
	for i := range 50 {
		m.ServeRequest(at(time.Duration(i) * 100 * time.Millisecond))
	}
	tests := []struct {
		at   time.Duration
		want float64
	}{
		{5 * time.Second, 5},
		{9999 * time.Millisecond, 5},
		{12 * time.Second, 2.9}, // requests 0..20 have left
		{15 * time.Second, 0},
		{time.Hour, 0},
	}
	for _, tt := range tests {
		approx(t, "rps at "+tt.at.String(), m.Usage(at(tt.at)).RPS, tt.want)
	}
}

func TestExtraCPUAppliesFromWhenSet(t *testing.T) {
	p := Params{CPUBase: 0, CPUPerRequest: 0, MemoryBytes: 0}
	m := NewPodModel([]string{"a", "b"}, p, t0)
	m.SetExtraCPU(at(10*time.Second), 1)
	u := m.Usage(at(20 * time.Second))
	for _, c := range u.Containers {
		approx(t, c.Name+" cpu seconds", c.CPUSeconds, 0.5*10)
		approx(t, c.Name+" cores", c.CPUCores, 0.5)
	}
	m.SetExtraCPU(at(30*time.Second), 0)
	approx(t, "pod cpu seconds after reset", m.Usage(at(40*time.Second)).CPUSeconds(), 20)
}

func TestClockStepBackIsIgnored(t *testing.T) {
	m := NewPodModel([]string{"a"}, DefaultParams(), t0)
	before := m.Usage(at(10 * time.Second)).CPUSeconds()
	m.ServeRequest(at(5 * time.Second))
	after := m.Usage(at(5 * time.Second)).CPUSeconds()
	if after < before {
		t.Errorf("counter went back from %g to %g", before, after)
	}
}

func TestParamsFromAnnotations(t *testing.T) {
	tests := []struct {
		name    string
		ann     map[string]string
		want    Params
		wantErr int
	}{
		{"none", nil, DefaultParams(), 0},
		{"all", map[string]string{
			AnnotationCPUBase: "0.5", AnnotationCPUPerRequest: "0.002", AnnotationMemory: "128Mi", AnnotationQueueDepth: "7",
		}, Params{CPUBase: 0.5, CPUPerRequest: 0.002, MemoryBytes: 128 * mib, QueueDepth: 7}, 0},
		{"memory in plain bytes", map[string]string{AnnotationMemory: "1000"},
			Params{CPUBase: 0.01, CPUPerRequest: 0.01, MemoryBytes: 1000}, 0},
		{"bad values keep defaults", map[string]string{
			AnnotationCPUBase: "lots", AnnotationCPUPerRequest: "-1", AnnotationMemory: "big",
		}, DefaultParams(), 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := ParamsFromAnnotations(tt.ann)
			if got != tt.want {
				t.Errorf("params = %+v, want %+v", got, tt.want)
			}
			if len(errs) != tt.wantErr {
				t.Errorf("errors = %v, want %d", errs, tt.wantErr)
			}
		})
	}
}
