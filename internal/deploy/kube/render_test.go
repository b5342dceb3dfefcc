package kube

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipway/internal/config"
	"slipway.dev/slipway/internal/deploy"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func renderSpec(env string) deploy.Spec {
	return deploy.Spec{
		Environment:   env,
		App:           "birthday-app",
		Image:         "registry.example/birthday-app@sha256:" + strings.Repeat("ab", 32),
		Commit:        strings.Repeat("0123456789", 4),
		Version:       "RC20250601_0930",
		Replicas:      4,
		Port:          8080,
		Env:           map[string]string{"LOG_LEVEL": "info"},
		ReadinessPath: "/readyz",
		LivenessPath:  "/healthz",
		Strategy:      deploy.Strategy{MaxSurge: 1, ReadyTimeout: 90 * time.Second, TerminationGracePeriod: 30 * time.Second},
		Cause:         "release 12 (cli)",
	}
}

func TestRenderGolden(t *testing.T) {
	full := config.DefaultEnvironment("prod")
	full.Kubernetes = config.EnvKubernetes{
		Resources:           config.Resources{Requests: config.ResourceList{CPU: "100m", Memory: "64Mi"}, Limits: config.ResourceList{Memory: "128Mi"}},
		Autoscaling:         config.Autoscaling{MinReplicas: 4, MaxReplicas: 12, TargetCPUPercent: 75},
		PodDisruptionBudget: config.PodDisruptionBudget{MaxUnavailable: "25%"},
		SecretEnv:           []config.SecretEnv{{Name: "DATABASE_URL", Secret: "birthday-db", Key: "url"}},
		ImagePullSecrets:    []string{"registry-credentials"},
	}
	dev := config.DefaultEnvironment("dev")
	dev.Kubernetes.NetworkPolicy.InternalOnly = true
	dev.Kubernetes.Quota = config.Quota{CPU: "2", Memory: "1Gi", Pods: 10}
	dev.Kubernetes.Resources.Requests = config.ResourceList{CPU: "50m", Memory: "32Mi"}
	ingress := config.DefaultEnvironment("dev")
	ingress.Kubernetes.Service = config.Service{Type: config.ServiceNodePort, NodePort: 30080, Annotations: map[string]string{"example.com/owner": "team"}}
	ingress.Kubernetes.Ingress = config.Ingress{
		ClassName:   "nginx",
		Hosts:       []string{"birthday-dev.example.com", "www.birthday-dev.example.com"},
		Path:        "/app",
		TLSSecret:   "birthday-dev-tls",
		CertManager: config.CertManager{ClusterIssuer: "letsencrypt-staging"},
		Annotations: map[string]string{"nginx.ingress.kubernetes.io/proxy-body-size": "8m"},
	}
	route := config.DefaultEnvironment("prod")
	route.Kubernetes.Service = config.Service{Type: config.ServiceLoadBalancer, Annotations: map[string]string{"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"}}
	route.Kubernetes.HTTPRoute = config.HTTPRoute{
		Gateway:   config.GatewayRef{Name: "public", Namespace: "gateway-system", SectionName: "https"},
		Hostnames: []string{"birthday.example.com"},
	}
	for _, tc := range []struct {
		name    string
		env     config.Environment
		stopped bool // rendered with 0 replicas
	}{
		{"plain", config.DefaultEnvironment("prod"), false},
		{"prod-autoscaled", full, false},
		// Stopped: scaled to 0, without the autoscaler.
		{"prod-autoscaled-stopped", full, true},
		{"dev-internal", dev, false},
		{"dev-nodeport-ingress", ingress, false},
		{"prod-loadbalancer-httproute", route, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.App = "birthday-app"
			cfg.Environments = []config.Environment{tc.env}
			s, err := SettingsFor(cfg, tc.env.Name)
			if err != nil {
				t.Fatal(err)
			}
			spec := renderSpec(tc.env.Name)
			if tc.stopped {
				spec.Replicas = 0
			}
			objs, err := Render(spec, s)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if err := WriteYAML(&got, objs); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", tc.name+".yaml")
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to write it)", err)
			}
			if diff := cmp.Diff(string(want), got.String()); diff != "" {
				t.Errorf("rendered objects differ from %s (-want +got; go test -update rewrites it):\n%s", golden, diff)
			}
		})
	}
}

func TestSettingsNamespace(t *testing.T) {
	for _, tc := range []struct {
		tmpl, override, want, err string
	}{
		{"{{.App}}-{{.Environment}}", "", "birthday-app-dev", ""},
		{"team-{{.Environment}}", "", "team-dev", ""},
		{"{{.App}}-{{.Environment}}", "custom", "custom", ""},
		{"{{.App}}_{{.Environment}}", "", "", "lower-case letters, digits and dashes"},
	} {
		cfg := config.Default()
		cfg.App = "birthday-app"
		cfg.Kubernetes.Namespace = tc.tmpl
		dev := config.DefaultEnvironment("dev")
		dev.Kubernetes.Namespace = tc.override
		cfg.Environments = []config.Environment{dev}
		s, err := SettingsFor(cfg, "dev")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("template %q: error %v, want one saying %q", tc.tmpl, err, tc.err)
			}
			continue
		}
		if err != nil || s.Namespace != tc.want {
			t.Errorf("template %q, override %q: namespace %q, %v; want %q", tc.tmpl, tc.override, s.Namespace, err, tc.want)
		}
	}
}

func TestRenderRefuses(t *testing.T) {
	s := Settings{Namespace: "ns"}
	pw := renderSpec("dev")
	pw.Env = map[string]string{"DATABASE_URL": "mysql://app:secret@db:3306/app"}
	tag := renderSpec("dev")
	tag.Image = "registry.example/birthday-app:latest"
	badQ := Settings{Namespace: "ns", Kube: config.EnvKubernetes{Resources: config.Resources{Limits: config.ResourceList{CPU: "lots"}}}}
	for name, tc := range map[string]struct {
		spec deploy.Spec
		s    Settings
		want string
	}{
		"password in env": {pw, s, "secretEnv"},
		"image by tag":    {tag, s, "not pinned to a digest"},
		"bad quantity":    {renderSpec("dev"), badQ, "kubernetes.resources.limits.cpu"},
		"quota without requests": {renderSpec("dev"), Settings{Namespace: "ns", Kube: config.EnvKubernetes{Quota: config.Quota{Memory: "1Gi"}}},
			"set kubernetes.resources.requests.memory"},
	} {
		_, err := Render(tc.spec, tc.s)
		if !errors.Is(err, deploy.ErrInvalidSpec) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "secret@") {
			t.Errorf("%s: Render error = %v, want ErrInvalidSpec saying %q", name, err, tc.want)
		}
	}
}

func TestURL(t *testing.T) {
	cfg := config.Default()
	cfg.App = "birthday-app"
	cfg.Environments[1].URL = "https://birthday.example.com"
	for env, want := range map[string]string{
		"dev":  "http://birthday-app.birthday-app-dev.svc.cluster.local",
		"prod": "https://birthday.example.com",
	} {
		if got, err := URL(cfg, env); err != nil || got != want {
			t.Errorf("URL(%s) = %q, %v; want %q", env, got, err, want)
		}
	}
}

// A scale is a scale whatever the local runtime's front-end settings say,
// and whether or not the recorded spec carries them (specs recorded by
// earlier versions do not).
func TestOnlyReplicasIgnoresFrontend(t *testing.T) {
	recorded := deploy.Spec{Environment: "prod", App: "a", Version: "v1", Replicas: 3}
	next := recorded
	next.Replicas = 5
	next.Frontend = deploy.Frontend{MaxConnections: 10000, TrustedProxies: []string{"10.0.0.0/8"}}
	if !onlyReplicas(recorded, next) {
		t.Error("a replica change with front-end settings is not taken for a scale")
	}
	next.Version = "v2"
	if onlyReplicas(recorded, next) {
		t.Error("a version change is taken for a scale")
	}
}
