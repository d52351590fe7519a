"""Losses as short pure functions of logits: one value per example, keras.ops only.

Recipes average them; tests check them against numbers computed by hand.
"""

from __future__ import annotations

from keras import ops


def cross_entropy(labels, logits):
    """−log softmax(logits)[label], per example. labels: int class ids (B,)."""
    log_p = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    onehot = ops.one_hot(ops.cast(labels, "int32"), ops.shape(logits)[-1])
    return -ops.sum(onehot * log_p, axis=-1)


def kl_divergence(teacher_logits, student_logits, temperature: float = 1.0):
    """KL(softmax(teacher/T) ‖ softmax(student/T)), per example, in nats.

    Computed from log-softmaxes, so a confident teacher (p → 0 for some classes) gives 0·log 0
    = 0, not NaN.
    """
    t = ops.cast(teacher_logits, "float32") / temperature
    s = ops.cast(student_logits, "float32") / temperature
    log_p, log_q = ops.log_softmax(t, axis=-1), ops.log_softmax(s, axis=-1)
    return ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1)


def consistency_loss(labels, student_logits, teacher_logits, *, temperature=10.0,
                     ce_weight=0.5, kd_weight=0.5, t_squared=True):
    """ce_weight·CE(labels, student) + kd_weight·KL(teacher/T ‖ student/T) [× T²], per example.

    The T² factor (Hinton et al. 2015, §2) keeps the distillation gradient's size independent
    of T: without it, at T = 10 the KL term's gradient is ~1/100 of the CE term's and the
    teacher barely speaks.
    """
    kd = kl_divergence(teacher_logits, student_logits, temperature)
    if t_squared:
        kd = kd * (temperature ** 2)
    return ce_weight * cross_entropy(labels, student_logits) + kd_weight * kd
