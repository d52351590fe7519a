"""Losses as short pure functions of logits: one value per example, keras.ops only.

Recipes average them; tests check them against numbers computed by hand.
"""

from __future__ import annotations

import math

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


def soft_target_kl(teacher_logits, student_logits, temperature=1.0, t_squared=True):
    """KL(teacher/T ‖ student/T) per example, × T² so the gradient's size does not depend on
    T (Hinton et al. 2015, §2; big_vision's distill trainer): without it, at T = 10 the
    gradient is ~1/100 of a cross-entropy's and the teacher barely speaks."""
    kl = kl_divergence(teacher_logits, student_logits, temperature)
    return kl * (temperature ** 2) if t_squared else kl


def mixed_cross_entropy(labels, logits, weights, partner, labeled=None):
    """Cross-entropy on MixUp images: weights·CE(label) + (1 − weights)·CE(partner's label),
    per example (Zhang et al. 2018). weights: λ per image (B,); partner: the index of the
    image each one was mixed with (B,); labeled: 1 where an image's label may be used, 0
    where it may not (that image's share of the mix then adds nothing), default all 1."""
    partner = ops.cast(partner, "int32")
    weights = ops.cast(weights, "float32")
    own = weights if labeled is None else weights * ops.cast(labeled, "float32")
    other = 1.0 - weights
    if labeled is not None:
        other = other * ops.take(ops.cast(labeled, "float32"), partner, axis=0)
    partner_labels = ops.take(labels, partner, axis=0)
    return (ops.multiply(own, cross_entropy(labels, logits))
            + ops.multiply(other, cross_entropy(partner_labels, logits)))


def consistency_loss(labels, student_logits, teacher_logits, *, temperature=10.0,
                     ce_weight=0.5, kd_weight=0.5, t_squared=True):
    """ce_weight·CE(labels, student) + kd_weight·KL(teacher/T ‖ student/T) [× T²], per
    example."""
    kd = soft_target_kl(teacher_logits, student_logits, temperature, t_squared)
    return ce_weight * cross_entropy(labels, student_logits) + kd_weight * kd


# ----------------------------------------------------------------------------- AdaMatch
# Berthelot et al. 2021, "AdaMatch: a unified approach to semi-supervised learning and
# domain adaptation", §3. Each piece is a pure function so tests can check it by hand.


def interpolate_logits(combined, source_only, lam):
    """Random logit interpolation: λ·z_combined + (1 − λ)·z_source_only, λ ~ U(0, 1) drawn
    per element by the caller (the paper's z′ = λ·z′_{S∪T} + (1 − λ)·z′_S)."""
    return lam * combined + (1.0 - lam) * source_only


def align_distribution(p_target, source_mean, target_mean, eps=1e-6):
    """Distribution alignment: p̃ = normalize(p_target · p̄_source / p̄_target), per row."""
    p = p_target * (source_mean / (target_mean + eps))
    return p / ops.sum(p, axis=-1, keepdims=True)


def relative_threshold(p_source_weak, tau=0.9):
    """c_τ = τ · mean over the source batch of max_class p_source_weak."""
    return tau * ops.mean(ops.max(p_source_weak, axis=-1))


def masked_pseudo_label_loss(p_pseudo, target_logits, threshold):
    """CE(argmax p_pseudo, target_logits) where max p_pseudo ≥ threshold, else 0; per
    example. Returns (loss, mask) so callers can report the mask rate."""
    mask = ops.cast(ops.max(p_pseudo, axis=-1) >= threshold, "float32")
    hard = ops.argmax(p_pseudo, axis=-1)
    return cross_entropy(hard, target_logits) * mask, mask


def unlabeled_weight(step, total_steps):
    """μ(t) = ½ − ½·cos(min(π, 2π·t/T)): 0 at the start, 1 from half of training on."""
    t = ops.minimum(math.pi, 2.0 * math.pi * ops.cast(step, "float32") / float(total_steps))
    return 0.5 - 0.5 * ops.cos(t)


# ----------------------------------------------------------------------------- AugMix
# Hendrycks et al. 2020, "AugMix: a simple data processing method to improve robustness and
# uncertainty", §3 (Jensen-Shannon divergence consistency loss).


def jensen_shannon(*logits):
    """JS(p_1, …, p_k) = (1/k) Σ_i KL(p_i ‖ M), M = (1/k) Σ_i p_i, per example, in nats.

    log M is a log-mean-exp of log-softmaxes, so a confident p_i (p → 0 for some class)
    gives 0·log 0 = 0 and M is never clipped (the reference code clips M at 1e-7)."""
    log_ps = [ops.log_softmax(ops.cast(z, "float32"), axis=-1) for z in logits]
    log_m = ops.logsumexp(ops.stack(log_ps), axis=0) - math.log(len(log_ps))
    return sum(ops.sum(ops.exp(lp) * (lp - log_m), axis=-1) for lp in log_ps) / len(log_ps)


def augmix_loss(labels, clean_logits, view1_logits, view2_logits, *, jsd_weight=12.0):
    """CE(labels, clean) + λ · JS(clean, view 1, view 2), per example (λ = 12, the paper's)."""
    return (cross_entropy(labels, clean_logits)
            + jsd_weight * jensen_shannon(clean_logits, view1_logits, view2_logits))
