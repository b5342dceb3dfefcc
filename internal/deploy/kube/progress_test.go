package kube

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

func TestRolloutProgress(t *testing.T) {
	three := int32(3)
	tests := []struct {
		status appsv1.DeploymentStatus
		want   string
	}{
		{appsv1.DeploymentStatus{Replicas: 4, UpdatedReplicas: 1, AvailableReplicas: 3}, "1 of 3 replicas updated, 3 available; 3 old"},
		{appsv1.DeploymentStatus{Replicas: 3, UpdatedReplicas: 3, AvailableReplicas: 3}, "3 of 3 replicas updated, 3 available"},
	}
	for _, tt := range tests {
		d := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: &three}, Status: tt.status}
		if got := rolloutProgress(d); got != tt.want {
			t.Errorf("rolloutProgress(%+v) = %q, want %q", tt.status, got, tt.want)
		}
	}
}
