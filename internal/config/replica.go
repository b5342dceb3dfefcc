package config

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"

	"k8s.io/apimachinery/pkg/api/resource"
)

// ReplicaResources limit each replica of an environment, with Kubernetes
// quantities: memory such as 256Mi or 1Gi, CPU such as 500m or 2.
type ReplicaResources struct {
	// Memory is the most memory a replica may use; over it, the kernel
	// kills it and it is restarted. Default 512Mi.
	Memory string `yaml:"memory,omitempty"`
	// CPU is the CPU time a replica may use, in CPUs (500m: half of one).
	// Default: no limit.
	CPU string `yaml:"cpu,omitempty"`
	// Pids is how many processes and threads a replica may have. Default
	// 1024.
	Pids int `yaml:"pids,omitempty"`
}

// The limits of a replica when neither resources nor
// kubernetes.resources.limits set them.
const (
	DefaultReplicaMemory = "512Mi"
	DefaultReplicaPids   = 1024
)

// ReplicaLimits are the limits of each replica of e: its resources, then
// kubernetes.resources.limits, then the defaults.
func (e Environment) ReplicaLimits() ReplicaResources {
	r := e.Resources
	lim := e.Kubernetes.Resources.Limits
	if r.Memory == "" {
		r.Memory = lim.Memory
	}
	if r.Memory == "" {
		r.Memory = DefaultReplicaMemory
	}
	if r.CPU == "" {
		r.CPU = lim.CPU
	}
	if r.Pids == 0 {
		r.Pids = DefaultReplicaPids
	}
	return r
}

// MemoryBytes is Memory in bytes (0 when empty).
func (r ReplicaResources) MemoryBytes() (int64, error) {
	if r.Memory == "" {
		return 0, nil
	}
	q, err := resource.ParseQuantity(r.Memory)
	if err != nil || q.Sign() < 0 {
		return 0, fmt.Errorf("%q is not an amount of memory: use a quantity such as 256Mi or 1Gi", r.Memory)
	}
	return q.Value(), nil
}

// MilliCPU is CPU in thousandths of a CPU (0 when empty).
func (r ReplicaResources) MilliCPU() (int64, error) {
	if r.CPU == "" {
		return 0, nil
	}
	q, err := resource.ParseQuantity(r.CPU)
	if err != nil || q.Sign() < 0 {
		return 0, fmt.Errorf("%q is not an amount of CPU: use a quantity such as 500m or 2", r.CPU)
	}
	return q.MilliValue(), nil
}

// Secret says where the value of a secret environment variable is: Env,
// a variable of slipway's own environment, or File, a file slipway
// reads. One of them.
type Secret struct {
	Env  string `yaml:"env,omitempty"`
	File string `yaml:"file,omitempty"`
}

// minReplicaMemory is the least memory limit accepted: below it, a Go
// program does not start.
const minReplicaMemory = 4 << 20

func (v *validator) resources(p string, r ReplicaResources) {
	if n, err := r.MemoryBytes(); err != nil {
		v.add(p+".memory", "%v", err)
	} else if r.Memory != "" && n < minReplicaMemory {
		v.add(p+".memory", "%q is too little for a replica to start: give at least 4Mi, such as 256Mi", r.Memory)
	}
	if n, err := r.MilliCPU(); err != nil {
		v.add(p+".cpu", "%v", err)
	} else if r.CPU != "" && n < 10 {
		v.add(p+".cpu", "%q is too little: give at least 10m, such as 500m", r.CPU)
	}
	if r.Pids < 0 || (r.Pids > 0 && r.Pids < 16) {
		v.add(p+".pids", "%d is too few for a replica to start: give at least 16, such as 512", r.Pids)
	}
}

func (v *validator) secrets(p string, e Environment) {
	if len(e.Secrets) > 0 && v.c.Runtime == RuntimeKubernetes {
		v.add(p, "are read by the local runtime only: on kubernetes, keep the values in a Secret and name it under kubernetes.secretEnv")
		return
	}
	for _, name := range slices.Sorted(maps.Keys(e.Secrets)) {
		s, sp := e.Secrets[name], p+"."+name
		switch {
		case !envName.MatchString(name):
			v.add(sp, "%q is not an environment variable name: use letters, digits and _", name)
		case (s.Env == "") == (s.File == ""):
			v.add(sp, "give either env (a variable of slipway's environment, such as env: SLIPWAY_SECRET_%s) or file (such as file: /etc/slipway/%s)", name, name)
		case s.Env != "" && !envName.MatchString(s.Env):
			v.add(sp+".env", "%q is not an environment variable name: use letters, digits and _", s.Env)
		case s.File != "" && !filepath.IsAbs(s.File):
			v.add(sp+".file", "%q is relative: give the file's absolute path, such as /etc/slipway/%s", s.File, name)
		}
		if _, dup := e.Env[name]; dup {
			v.add(sp, "%s is also in env: keep the secret, and remove it from env", name)
		}
	}
}
