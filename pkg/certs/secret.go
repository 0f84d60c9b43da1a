package certs

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

// secretAttempts bounds the re-reads after losing a race to another replica.
// One is normally enough: the winner's Secret is not due again.
const secretAttempts = 5

// syncSecret returns the material stored in the Secret after making it
// current. Losing a create or update race to another replica re-reads the
// Secret and plans again from the winner's material, so a rotation happens
// once however many replicas see it due.
func (m *Manager) syncSecret(ctx context.Context) (material, error) {
	for attempt := 1; ; attempt++ {
		mat, err := m.trySyncSecret(ctx)
		if err == nil || attempt == secretAttempts || !(apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)) {
			return mat, err
		}
		m.o.Logger.V(2).Info("Serving certificate Secret changed concurrently; re-reading", "secret", m.secretRef(), "err", err)
	}
}

func (m *Manager) trySyncSecret(ctx context.Context) (material, error) {
	secrets := m.o.Client.CoreV1().Secrets(m.o.Namespace)
	sec, err := secrets.Get(ctx, m.o.SecretName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		sec = nil
	case err != nil:
		return material{}, fmt.Errorf("get secret %s: %w", m.secretRef(), err)
	case !Owns(sec.Labels):
		return material{}, fmt.Errorf("secret %s is not labeled %s=%s: not overwriting a Secret the gateway does not own", m.secretRef(), OwnerLabel, OwnerValue)
	case sec.Type != corev1.SecretTypeTLS && sec.Type != corev1.SecretTypeOpaque:
		return material{}, fmt.Errorf("secret %s has type %s, want %s or %s", m.secretRef(), sec.Type, corev1.SecretTypeTLS, corev1.SecretTypeOpaque)
	}

	var cur material
	if sec != nil {
		cur = parseMaterial(sec.Data)
	}
	next, why, err := m.policy.plan(cur, m.o.Clock.Now())
	if err != nil {
		return material{}, err
	}
	data, err := next.data()
	if err != nil {
		return material{}, err
	}

	if sec == nil {
		sec = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name:      m.o.SecretName,
				Namespace: m.o.Namespace,
				Labels:    map[string]string{OwnerLabel: OwnerValue, ManagedByLabel: ManagedByValue},
			},
			Type: corev1.SecretTypeTLS,
			Data: data,
		}
		if _, err := secrets.Create(ctx, sec, metav1.CreateOptions{FieldManager: ManagedByValue}); err != nil {
			return material{}, fmt.Errorf("create secret %s: %w", m.secretRef(), err)
		}
		m.logStored("Created serving certificate Secret", next)
		return next, nil
	}
	if dataEqual(sec.Data, data) {
		return next, nil
	}
	if len(why) == 0 {
		why = []string{"unexpected keys"}
	}
	// Update carries the resourceVersion read above: a replica that stored
	// first makes this one fail with Conflict instead of rotating twice.
	sec = sec.DeepCopy()
	sec.Data = data
	if _, err := secrets.Update(ctx, sec, metav1.UpdateOptions{FieldManager: ManagedByValue}); err != nil {
		return material{}, fmt.Errorf("update secret %s: %w", m.secretRef(), err)
	}
	m.logStored("Updated serving certificate Secret", next, "reasons", why)
	return next, nil
}

func (m *Manager) logStored(msg string, mat material, kv ...any) {
	kv = append(kv,
		"secret", m.secretRef(),
		"ca", mat.cas[0].Subject.CommonName,
		"bundledCAs", len(mat.cas),
		"servingSerial", mat.leaf.SerialNumber.Text(16),
		"servingNotAfter", mat.leaf.NotAfter,
	)
	m.o.Logger.Info(msg, kv...)
}

func (m *Manager) secretRef() klog.ObjectRef {
	return klog.KRef(m.o.Namespace, m.o.SecretName)
}
