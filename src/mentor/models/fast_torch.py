"""Faster Conv2D and BatchNormalization on the torch backend, same layers, same files.

Keras's torch backend computes a channels-last convolution by copying the input to
channels-first, converting it to torch's channels-last memory format (a second copy), and
copying the output back; and it computes batch normalization from a dozen elementwise ops
(moments as E[x²] − E[x]², then subtract, multiply, add), each with its own backward. For
WRN-28-2 at 512 images that made a Keras training step 1.65× a plain PyTorch one on this
CPU (benchmarks/adamatch_step.py, docs/benchmarks.md).

torch can do both without any copy: an NHWC tensor viewed as NCHW *is* a tensor in torch's
channels-last memory format, which oneDNN convolves natively, and `native_batch_norm` is one
fused kernel forward and one backward. `accelerate(model)` points each plain Conv2D's
convolution op and each plain BatchNormalization's call at those, per layer instance:

- the layers' classes, configs and variables are Keras's own, so a saved `.keras` file is
  the same file and loads anywhere without mentor;
- the arithmetic is Keras's (TF-style "same" padding, biased batch variance in the moving
  averages, moving = moving·momentum + batch·(1 − momentum), float32 statistics under mixed
  precision); tests/test_fast_torch.py checks outputs, gradients and moving statistics
  against the layers' own call;
- anything else (subclasses such as BiT's StdConv2D, groups, dilation, masks, renorm,
  synchronized BN) keeps Keras's call, and on JAX and TensorFlow nothing changes: XLA and
  TensorFlow already fuse these;
- MENTOR_FAST_TORCH=0 turns it off (mentor.compat).
"""

from __future__ import annotations

import types

import keras

from mentor.compat import fast_torch_enabled, flatten_layers


def accelerate(model: keras.Model) -> int:
    """On the torch backend, swap in the fused ops for `model`'s plain Conv2D and
    BatchNormalization layers; returns how many layers were changed (0 elsewhere)."""
    if keras.backend.backend() != "torch" or not fast_torch_enabled():
        return 0
    changed = 0
    for layer in flatten_layers(model, include_self=False):
        if type(layer) is keras.layers.Conv2D and _plain_conv(layer):
            layer.convolution_op = types.MethodType(_conv_op, layer)
            changed += 1
        elif type(layer) is keras.layers.BatchNormalization and _plain_norm(layer):
            layer.call = types.MethodType(_norm_call, layer)
            changed += 1
    return changed


def _plain_conv(layer) -> bool:
    return (layer.data_format == "channels_last" and layer.groups == 1
            and tuple(layer.dilation_rate) == (1, 1) and layer.padding in ("same", "valid"))


def _plain_norm(layer) -> bool:
    return not (layer.renorm or layer.synchronized)


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same": output ⌈size/stride⌉, the odd pixel of padding at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _conv_op(self, inputs, kernel):
    import torch.nn.functional as F

    kernel = getattr(kernel, "value", kernel)  # the variable's tensor, autocast if mixed
    (kh, kw), (sh, sw) = kernel.shape[:2], self.strides
    x, padding = inputs, (0, 0)
    if self.padding == "same":
        (top, bottom), (left, right) = (_same_pads(x.shape[1], kh, sh),
                                        _same_pads(x.shape[2], kw, sw))
        if top == bottom and left == right:
            padding = (top, left)
        else:  # padded in NHWC, so the view below stays in channels-last memory
            x = F.pad(x, (0, 0, left, right, top, bottom))
    # NHWC memory viewed as NCHW, kernel HWIO viewed as OIHW: no copies
    y = F.conv2d(x.permute(0, 3, 1, 2), kernel.permute(3, 2, 0, 1), None, (sh, sw), padding)
    return y.permute(0, 2, 3, 1)


def _norm_call(self, inputs, training=None, mask=None):
    if mask is not None:
        return type(self).call(self, inputs, training=training, mask=mask)
    import torch
    import torch.nn.functional as F

    x = inputs.float()  # statistics in float32, as Keras computes them under mixed precision
    axis = self.axis % x.ndim
    if axis != 1:
        x = x.movedim(axis, 1)  # a view: torch normalizes over dimension 1
    gamma = self.gamma.value.float() if self.scale else None
    beta = self.beta.value.float() if self.center else None
    if training and self.trainable:
        out, mean, invstd = torch.native_batch_norm(x, gamma, beta, None, None, True, 0.0,
                                                    self.epsilon)
        with torch.no_grad():
            variance = invstd.double().pow(-2).sub(self.epsilon).float()  # biased, as Keras
            m = self.momentum
            self.moving_mean.assign(self.moving_mean.value * m + mean * (1.0 - m))
            self.moving_variance.assign(self.moving_variance.value * m + variance * (1.0 - m))
    else:
        out = F.batch_norm(x, self.moving_mean.value.float(), self.moving_variance.value.float(),
                           gamma, beta, False, 0.0, self.epsilon)
    if axis != 1:
        out = out.movedim(1, axis)
    return out.to(getattr(torch, keras.backend.standardize_dtype(self.compute_dtype)))
