package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestReplicaErrors checks each mistake in resources and secrets is
// reported with its field and the fix.
func TestReplicaErrors(t *testing.T) {
	const head = "app: demo\nrepo:\n  url: ./app.git\nenvironments:\n  - name: dev\n  - name: prod\n"
	tests := []parseErrorCase{
		{"bad quantities", head + "    resources:\n      memory: lots\n      cpu: fast\n      pids: 3\n",
			[]string{
				`f.yaml:8: environments[1].resources.memory: "lots" is not an amount of memory: use a quantity such as 256Mi or 1Gi`,
				`f.yaml:9: environments[1].resources.cpu: "fast" is not an amount of CPU: use a quantity such as 500m or 2`,
				`f.yaml:10: environments[1].resources.pids: 3 is too few for a replica to start: give at least 16, such as 512`,
			}},
		{"too little memory", head + "    resources:\n      memory: 1Mi\n",
			[]string{`f.yaml:8: environments[1].resources.memory: "1Mi" is too little for a replica to start: give at least 4Mi, such as 256Mi`}},
		{"secret with neither", head + "    secrets:\n      API_KEY: {}\n",
			[]string{`f.yaml:8: environments[1].secrets.API_KEY: give either env (a variable of slipway's environment, such as env: SLIPWAY_SECRET_API_KEY) or file (such as file: /etc/slipway/API_KEY)`}},
		{"secret with both", head + "    secrets:\n      API_KEY: {env: K, file: /k}\n",
			[]string{`f.yaml:8: environments[1].secrets.API_KEY: give either env (a variable of slipway's environment, such as env: SLIPWAY_SECRET_API_KEY) or file (such as file: /etc/slipway/API_KEY)`}},
		{"relative file, bad names, in env too", head + "    env:\n      DB_PASS: x\n    secrets:\n      DB_PASS: {file: db_pass}\n      bad-name: {env: X}\n      TOKEN: {env: not-a-var}\n",
			[]string{
				`f.yaml:10: environments[1].secrets.DB_PASS.file: "db_pass" is relative: give the file's absolute path, such as /etc/slipway/DB_PASS`,
				`f.yaml:10: environments[1].secrets.DB_PASS: DB_PASS is also in env: keep the secret, and remove it from env`,
				`f.yaml:12: environments[1].secrets.TOKEN.env: "not-a-var" is not an environment variable name: use letters, digits and _`,
				`f.yaml:11: environments[1].secrets.bad-name: "bad-name" is not an environment variable name: use letters, digits and _`,
			}},
		{"kubernetes runtime", "app: demo\nrepo:\n  url: ./app.git\nruntime: kubernetes\nenvironments:\n  - name: dev\n    secrets:\n      API_KEY: {env: SLIPWAY_SECRET_API_KEY}\n",
			[]string{`f.yaml:7: environments[0].secrets: are read by the local runtime only: on kubernetes, keep the values in a Secret and name it under kubernetes.secretEnv`}},
	}
	checkParseErrors(t, tests)
}

func TestReplicaLimits(t *testing.T) {
	const yaml = "app: demo\nrepo:\n  url: ./app.git\nenvironments:\n  - name: dev\n    resources: {memory: 256Mi, cpu: 500m, pids: 512}\n" +
		"    secrets:\n      API_KEY: {env: SLIPWAY_SECRET_API_KEY}\n      DB_PASS: {file: /etc/slipway/db_pass}\n" +
		"  - name: prod\n    kubernetes:\n      resources:\n        limits: {memory: 1Gi, cpu: \"2\"}\n"
	c, err := Parse("f.yaml", strings.NewReader(yaml))
	if err != nil {
		t.Fatal(err)
	}
	dev, _ := c.Environment("dev")
	prod, _ := c.Environment("prod")
	if diff := cmp.Diff(ReplicaResources{Memory: "256Mi", CPU: "500m", Pids: 512}, dev.ReplicaLimits()); diff != "" {
		t.Errorf("dev's limits (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(ReplicaResources{Memory: "1Gi", CPU: "2", Pids: DefaultReplicaPids}, prod.ReplicaLimits()); diff != "" {
		t.Errorf("prod's limits, from kubernetes.resources.limits (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(ReplicaResources{Memory: DefaultReplicaMemory, Pids: DefaultReplicaPids}, (Environment{}).ReplicaLimits()); diff != "" {
		t.Errorf("default limits (-want +got):\n%s", diff)
	}
	want := map[string]Secret{"API_KEY": {Env: "SLIPWAY_SECRET_API_KEY"}, "DB_PASS": {File: "/etc/slipway/db_pass"}}
	if diff := cmp.Diff(want, dev.Secrets); diff != "" {
		t.Errorf("dev's secrets (-want +got):\n%s", diff)
	}
	mem, _ := dev.ReplicaLimits().MemoryBytes()
	cpu, _ := dev.ReplicaLimits().MilliCPU()
	if mem != 256<<20 || cpu != 500 {
		t.Errorf("dev: %d bytes, %d millicpu; want %d, 500", mem, cpu, 256<<20)
	}
}
