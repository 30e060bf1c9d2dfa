"""Encoder and decoder builders (plain Keras 3 functional models), sized from the image shape.

* Encoder ``images`` float32 [B, H, W, C] -> ``{"loc": [B, D], "scale": [B, D]}``, the
  parameters of the diagonal-Gaussian posterior q(z|x); ``scale = softplus(·) + floor``.
* Decoder ``z`` float32 [B, D] -> the likelihood's parameters, each [B, H, W, C]:
  ``{"logits"}`` (Bernoulli), ``{"loc"}`` (Gaussian, fixed σ), ``{"loc", "scale"}``
  (Gaussian, learned per-pixel σ; or the discretized logistic, whose scale is a second
  output head, per image and sub-pixel). Means and locations pass through a sigmoid so
  they lie in [0, 1] like the data.

``conv`` uses stride-2 3×3 convolutions (``conv_filters``) down to ⌈H/2^n⌉×⌈W/2^n⌉, dense
layers (``hidden_units``), and mirrored transposed convolutions back up, cropping to
H×W, so 28×28×1 and 32×32×3 (and other sizes) work. ``mlp`` flattens and uses dense
layers only. The decoder's last transposed convolution writes the C output channels
directly: it is the decoder's costliest layer and importance-weighted evaluation runs
the decoder thousands of times per image.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

from . import likelihoods
from .config import ModelConfig


@keras.saving.register_keras_serializable(package="tfvae")
class PositiveScale(layers.Layer):
    """softplus(x) + floor: a scale that is always > 0. Shape-preserving, float32."""

    def __init__(self, floor: float = 1e-4, **kwargs):
        super().__init__(**kwargs)
        self.floor = float(floor)

    def call(self, x):
        return ops.softplus(x) + self.floor

    def get_config(self):
        return {**super().get_config(), "floor": self.floor}


@keras.saving.register_keras_serializable(package="tfvae")
class PixelScale(layers.Layer):
    """A learned per-pixel standard deviation, the same for every z.

    Input z [B, D]; output [B, H, W, C] = softplus(w) + floor broadcast over the batch,
    with w a trainable [H, W, C] weight initialised so that σ starts at ``initial``.
    """

    def __init__(self, image_shape, floor: float = 1e-3, initial: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.floor = float(floor)
        self.initial = float(initial)

    def build(self, input_shape):
        raw = math.log(math.expm1(self.initial - self.floor))  # softplus⁻¹
        self.raw_scale = self.add_weight(
            name="raw_scale", shape=self.image_shape, initializer=keras.initializers.Constant(raw)
        )

    def call(self, z):
        scale = ops.softplus(self.raw_scale) + self.floor
        return ops.broadcast_to(scale, (ops.shape(z)[0],) + self.image_shape)

    def get_config(self):
        return {**super().get_config(), "image_shape": self.image_shape, "floor": self.floor, "initial": self.initial}


@keras.saving.register_keras_serializable(package="tfvae")
class Conv2DTranspose(layers.Conv2DTranspose):
    """``Conv2DTranspose`` (3×3 kernel, stride 1 or 2, ``same`` padding, channels last)
    computed as one matrix multiply and an overlap-add; other configurations fall back to Keras.

    Same weights (kernel [3, 3, C_out, C_in], bias [C_out]), same outputs [B, sH, sW, C_out]
    (tested against Keras to float32 rounding). Why: with few output channels (the
    decoder's last layer writes C = 1 or 3 image channels) the CPU transposed-convolution
    kernel ran at ~5 GFLOP/s here, this form 1.6× faster, and importance-weighted
    evaluation runs the decoder N·K times. With many output channels the overlap-add's
    memory traffic makes it slower than Keras's kernel, so only the output layer uses it. Each input pixel scatters x·W (a [C_in] ×
    [C_in, 9·C_out] product); along each axis, output 2j takes kernel taps 0 (from input
    j) and 2 (from input j − 1) and output 2j + 1 takes tap 1 (from input j).
    """

    def _eligible(self):
        return (tuple(self.kernel_size) == (3, 3) and tuple(self.strides) in ((1, 1), (2, 2))
                and self.padding == "same" and self.data_format == "channels_last"
                and tuple(self.dilation_rate) == (1, 1))

    def call(self, inputs):
        if not self._eligible():
            return super().call(inputs)
        shape = ops.shape(inputs)
        n, h, w, c_in = shape[0], shape[1], shape[2], inputs.shape[-1]
        c_out = self.filters
        kernel = ops.cast(self.kernel, inputs.dtype)
        weights = ops.reshape(ops.transpose(kernel, (3, 0, 1, 2)), (c_in, 9 * c_out))
        y = ops.reshape(ops.matmul(ops.reshape(inputs, (-1, c_in)), weights), (n, h, w, 3, 3, c_out))
        combine = _interleave if tuple(self.strides) == (2, 2) else _overlap
        out = combine(combine(y, 1), 2)  # [n, h', w, 3, c] -> [n, h', w', c]
        if self.use_bias:
            out = out + ops.cast(self.bias, out.dtype)
        if self.activation is not None:
            out = self.activation(out)
        return out


def _shift(t, axis: int, step: int):
    """t moved by ``step`` (±1) along ``axis``, zero-filled: result[j] = t[j − step]."""
    rank = len(t.shape)
    size = ops.shape(t)[axis]
    start = [0] * rank
    length = [ops.shape(t)[i] for i in range(rank)]
    length[axis] = size - 1
    pad = [[0, 0]] * rank
    if step > 0:
        pad[axis] = [1, 0]
    else:
        start[axis] = 1
        pad[axis] = [0, 1]
    return ops.pad(ops.slice(t, start, length), pad)


def _interleave(t, axis: int):
    """Stride 2: output 2j = tap 0 at j + tap 2 at j − 1; output 2j + 1 = tap 1 at j.
    ``t`` has the kernel taps of this axis on axis 3; the result drops them."""
    t0, t1, t2 = (ops.take(t, i, axis=3) for i in range(3))
    both = ops.stack([t0 + _shift(t2, axis, 1), t1], axis=axis + 1)
    dims = [ops.shape(both)[i] for i in range(len(both.shape))]
    return ops.reshape(both, dims[:axis] + [dims[axis] * 2] + dims[axis + 2:])


def _overlap(t, axis: int):
    """Stride 1: output j = tap 0 at j + 1 + tap 1 at j + tap 2 at j − 1."""
    t0, t1, t2 = (ops.take(t, i, axis=3) for i in range(3))
    return _shift(t0, axis, -1) + t1 + _shift(t2, axis, 1)


def _low_resolution(image_shape, n_down: int):
    h, w = image_shape[0], image_shape[1]
    return math.ceil(h / 2**n_down), math.ceil(w / 2**n_down)


def is_conditional(cfg: ModelConfig) -> bool:
    """True for a conditional family (the registry says so), whose networks take the one-hot
    label as a second input."""
    from .models.registry import of

    return of(cfg).conditional


def build_encoder(cfg: ModelConfig) -> keras.Model:
    """Encoder network named ``encoder``: images [B, H, W, C] -> {"loc", "scale"} [B, D] float32.

    For a conditional VAE the inputs are ``[images, labels]`` with labels one-hot
    float32 [B, num_classes], concatenated with the flattened features (Sohn et al. 2015).
    """
    shape = tuple(cfg.image_shape)
    inputs = keras.Input(shape, name="images")
    h = _trunk(cfg, inputs)
    if is_conditional(cfg):
        labels = keras.Input((cfg.num_classes,), name="labels")
        h = layers.Concatenate(name="with_labels")([h, labels])
        inputs = [inputs, labels]
    for i, units in enumerate(cfg.hidden_units):
        h = layers.Dense(units, activation="relu", name=f"dense{i}")(h)
    # The outputs are float32 whatever the dtype policy (mixed precision computes the
    # hidden layers in bfloat16/float16; distributions need float32).
    loc = layers.Dense(cfg.latent_dim, name="loc", dtype="float32")(h)
    scale = PositiveScale(cfg.scale_floor, name="scale", dtype="float32")(
        layers.Dense(cfg.latent_dim, name="scale_raw", dtype="float32")(h))
    return keras.Model(inputs, {"loc": loc, "scale": scale}, name="encoder")


def _residual(h, filters: int, name: str):
    """h + conv(relu(conv(relu(h)))), 3×3 ``same`` convolutions (He et al. 2016, pre-activation form)."""
    r = layers.Conv2D(filters, 3, padding="same", name=f"{name}a")(layers.Activation("relu", name=f"{name}_relu")(h))
    r = layers.Conv2D(filters, 3, padding="same", name=f"{name}b")(layers.Activation("relu", name=f"{name}a_relu")(r))
    return layers.Add(name=f"{name}_add")([h, r])


def _trunk(cfg: ModelConfig, images):
    """The encoder's body: images [B, H, W, C] -> flat features [B, F] (``conv``/``kerasio``:
    stride-2 convolutions; ``resnet``: each followed by ``res_blocks`` residual blocks;
    ``mlp``: flatten). The layer names are the checkpoints' (do not rename)."""
    h = images
    if cfg.arch in ("conv", "kerasio", "resnet"):
        for i, f in enumerate(cfg.conv_filters):
            h = layers.Conv2D(f, 3, strides=2, padding="same", activation="relu", name=f"conv{i}")(h)
            if cfg.arch == "resnet":
                for j in range(cfg.res_blocks):
                    h = _residual(h, f, f"res{i}_{j}")
                h = layers.Activation("relu", name=f"res{i}_out")(h)
    return layers.Flatten(name="flatten")(h)


def build_trunk(cfg: ModelConfig, name: str = "trunk") -> keras.Model:
    """The encoder's body as its own model: images [B, H, W, C] -> features [B, F] float
    (the hierarchical VAE's bottom-up network starts with it)."""
    images = keras.Input(tuple(cfg.image_shape), name="images")
    return keras.Model(images, _trunk(cfg, images), name=name)


def build_decoder(cfg: ModelConfig) -> keras.Model:
    """Decoder network named ``decoder``: z [B, D] -> likelihood parameters [B, H, W, C] float32.

    For a conditional VAE the inputs are ``[z, labels]`` (labels one-hot [B, num_classes]).
    """
    shape = tuple(cfg.image_shape)
    height, width, channels = shape
    z = keras.Input((cfg.latent_dim,), name="z")
    h = z
    inputs = z
    if is_conditional(cfg):
        labels = keras.Input((cfg.num_classes,), name="labels")
        h = layers.Concatenate(name="with_labels")([z, labels])
        inputs = [z, labels]
    if cfg.arch == "kerasio":
        return _kerasio_decoder(cfg, inputs, h)
    for i, units in enumerate(reversed(cfg.hidden_units)):
        h = layers.Dense(units, activation="relu", name=f"dense{i}")(h)
    if cfg.arch in ("conv", "resnet"):
        filters = list(cfg.conv_filters)
        lh, lw = _low_resolution(shape, len(filters))
        h = layers.Dense(lh * lw * filters[-1], activation="relu", name="project")(h)
        h = layers.Reshape((lh, lw, filters[-1]), name="unflatten")(h)
        # Mirror of the encoder: upsample through filters[-2], ..., filters[0], then the
        # last stride-2 layer writes the output channels.
        if cfg.arch == "resnet":
            for j in range(cfg.res_blocks):
                h = _residual(h, filters[-1], f"dres_top_{j}")
        for i, f in enumerate(reversed(filters[:-1])):
            h = layers.Conv2DTranspose(f, 3, strides=2, padding="same", activation="relu", name=f"deconv{i}")(h)
            if cfg.arch == "resnet":
                for j in range(cfg.res_blocks):
                    h = _residual(h, f, f"dres{i}_{j}")
                h = layers.Activation("relu", name=f"dres{i}_out")(h)

        def head(name):
            return upsampled_output(h, shape, name)

    else:

        def head(name):
            t = layers.Dense(height * width * channels, name=f"{name}_dense", dtype="float32")(h)
            return layers.Reshape(shape, name=name, dtype="float32")(t)

    return keras.Model(inputs, likelihoods.for_config(cfg).head(head, cfg, z), name="decoder")


def upsampled_output(h, image_shape, name: str):
    """A decoder's output layer: a stride-2 3×3 transposed convolution (:class:`Conv2DTranspose`)
    from features [B, h, w, F] to the C image channels, centre-cropped to H×W: float32
    [B, H, W, C] (layers ``name`` and ``name_crop``)."""
    height, width, channels = image_shape
    t = Conv2DTranspose(channels, 3, strides=2, padding="same", name=name, dtype="float32")(h)
    out_h, out_w = 2 * h.shape[1], 2 * h.shape[2]
    if (out_h, out_w) != (height, width):
        dh, dw = out_h - height, out_w - width
        t = layers.Cropping2D(((dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2)), name=f"{name}_crop",
                              dtype="float32")(t)
    return t


def _kerasio_decoder(cfg: ModelConfig, inputs, h) -> keras.Model:
    """The keras-io example's decoder (z -> dense H/4·W/4·64 -> transposed convs 64, 32
    stride 2 -> transposed conv to C channels, stride 1), ending in Bernoulli logits (the
    example's sigmoid is folded into the likelihood) or a Gaussian mean."""
    height, width, channels = cfg.image_shape
    lh, lw = _low_resolution(cfg.image_shape, 2)
    h = layers.Dense(lh * lw * 64, activation="relu", name="project")(h)
    h = layers.Reshape((lh, lw, 64), name="unflatten")(h)
    h = layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu", name="deconv0")(h)
    h = layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu", name="deconv1")(h)
    if (4 * lh, 4 * lw) != (height, width):
        dh, dw = 4 * lh - height, 4 * lw - width
        h = layers.Cropping2D(((dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2)), name="crop")(h)

    def head(name):  # the example's output layer is "output"; a second head keeps its own name
        return layers.Conv2DTranspose(channels, 3, padding="same", name="scale_raw" if name == "scale_raw" else "output",
                                      dtype="float32")(h)

    z = inputs[0] if isinstance(inputs, (list, tuple)) else inputs  # cvae: [z, labels]
    return keras.Model(inputs, likelihoods.for_config(cfg).head(head, cfg, z), name="decoder")


def count_flops(model: keras.Model) -> int:
    """Floating-point operations for one sample, counted from the layer shapes.

    A multiply-add counts as 2: Dense 2·in·out; Conv2D 2·H_out·W_out·k_h·k_w·C_in·C_out;
    Conv2DTranspose 2·H_in·W_in·k_h·k_w·C_in·C_out (each input pixel scatters a kernel).
    Biases, activations and reshapes are ignored (they are O(outputs), not O(weights)). A
    network nested in ``model`` (the hierarchical VAE's output network) is counted with its
    layers.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_flops(layer)
        elif isinstance(layer, layers.Dense):
            total += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
        elif isinstance(layer, (layers.Conv2D, layers.Conv2DTranspose)):
            kh, kw = layer.kernel_size
            if isinstance(layer, layers.Conv2DTranspose):
                h, w, c_in = layer.input.shape[1:]
                c_out = layer.filters
            else:
                h, w, c_out = layer.output.shape[1:]
                c_in = layer.input.shape[-1]
            total += 2 * h * w * kh * kw * c_in * c_out
    return int(total)
