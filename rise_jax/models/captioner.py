"""A small attention captioner (CNN encoder + GRU decoder) and its black box for caption RISE.

Model (Show, Attend and Tell in miniature): a conv-GroupNorm-ReLU-pool encoder gives a grid
``[h, w, c]``; two coordinate channels (row and column in [-1, 1]) are appended so that the
decoder can tell left from right; the GRU decoder starts from the max-pooled features; at every
step it reads the previous word and the previous attended context, then attends over the grid
(scaled dot-product, one head) with its new state and predicts the next word from the state and
the context (Luong-style attention with input feeding). A bag-of-words head on the max-pooled
features (which words the caption contains) is only used as an auxiliary training loss.

* :class:`Captioner` ``(images, tokens_in) -> logits [B, T, V]`` with teacher forcing:
  ``tokens_in[:, t]`` is the word before position ``t`` (``<bos>`` first).
* :func:`greedy_decode`: captions by arg-max decoding.
* :class:`CaptionModelFn`: the black box ``(images [b, H, W, C], words [T]) -> P[w_k | I, w_<k]
  [b, T]`` that :func:`rise_jax.caption.caption_rise` explains; :func:`next_word_fn` gives the
  distribution over the whole vocabulary at one position, to explain words that the caption does
  not contain.

The vocabulary is :data:`rise_jax.data.captions.VOCAB` (``<pad>``, ``<bos>``, ``<eos>``,
function words and shape names).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rise_jax.data import captions

Variables = Any


class Captioner(nn.Module):
  """CNN encoder + attention GRU decoder.

  Attributes:
    vocab_size: Number of token ids ``V`` (default: :data:`captions.VOCAB`).
    features: Channels of the encoder's 3x3 convs (each followed by GroupNorm and a ReLU).
    num_pools: The first ``num_pools`` convs are followed by 2x2 max pooling (the attention
      grid is ``H / 2**num_pools`` by ``W / 2**num_pools``).
    embed_dim: Word embedding size.
    hidden: GRU state size.
    attn_dim: Attention key/value size.
  """

  vocab_size: int = len(captions.VOCAB)
  features: Sequence[int] = (16, 32, 64, 64)
  num_pools: int = 3
  embed_dim: int = 32
  hidden: int = 128
  attn_dim: int = 64

  def setup(self):
    self.convs = [nn.Conv(f, (3, 3), name=f"conv{i + 1}") for i, f in enumerate(self.features)]
    self.norms = [nn.GroupNorm(num_groups=min(8, f), name=f"norm{i + 1}")
                  for i, f in enumerate(self.features)]
    self.keys = nn.Dense(self.attn_dim, name="keys")
    self.values = nn.Dense(self.attn_dim, name="values")
    self.query = nn.Dense(self.attn_dim, name="query")
    self.init_h = nn.Dense(self.hidden, name="init_h")
    self.embed = nn.Embed(self.vocab_size, self.embed_dim, name="embed")
    self.cell = nn.GRUCell(self.hidden, name="gru")
    self.out = nn.Dense(self.vocab_size, name="out")
    self.bag = nn.Dense(self.vocab_size, name="bag")

  def _grid(self, images: jax.Array) -> jax.Array:
    """float32[B, H, W, C_in] -> encoder feature grid float32[B, h, w, features[-1]]."""
    x = images
    for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
      x = nn.relu(norm(conv(x)))
      if i < self.num_pools:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    return x

  def encode(self, images: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Encodes images.

    Args:
      images: float32[B, H, W, C_in].

    Returns:
      ``(keys, values, h0)``: float32[B, h*w, attn_dim] twice and the initial GRU state
      float32[B, hidden].
    """
    return self._encode(self._grid(images))[:3]

  def _encode(self, x: jax.Array):
    b, h, w, _ = x.shape
    ys, xs = jnp.meshgrid(jnp.linspace(-1.0, 1.0, h), jnp.linspace(-1.0, 1.0, w), indexing="ij")
    coords = jnp.broadcast_to(jnp.stack([ys, xs], -1), (b, h, w, 2))
    grid = jnp.concatenate([x, coords], -1).reshape(b, h * w, -1)
    pooled = x.max(axis=(1, 2))
    return self.keys(grid), self.values(grid), jnp.tanh(self.init_h(pooled)), pooled

  def step(self, keys: jax.Array, values: jax.Array, carry: tuple[jax.Array, jax.Array],
           token: jax.Array) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
    """One decoder step (attention after the GRU update, previous context fed back).

    ``s_t = GRU(s_{t-1}, [embed(token), c_{t-1}])``, ``c_t = attend(s_t)``,
    ``logits = out([s_t, c_t])``.

    Args:
      keys, values: float32[B, h*w, attn_dim] from :meth:`encode`.
      carry: ``(state float32[B, hidden], context float32[B, attn_dim])``.
      token: int32[B] the previous word.

    Returns:
      ``(carry, logits)``: the new carry and float32[B, V] next-word logits.
    """
    state, context = carry
    state, _ = self.cell(state, jnp.concatenate([self.embed(token), context], -1))
    q = self.query(state)[:, None, :]  # [B, 1, d]
    att = jax.nn.softmax(jnp.sum(q * keys, -1) / np.sqrt(self.attn_dim), axis=-1)  # [B, hw]
    context = jnp.einsum("bn,bnd->bd", att, values)
    return (state, context), self.out(jnp.concatenate([state, context], -1))

  def __call__(self, images: jax.Array, tokens_in: jax.Array, with_bag: bool = False):
    """Teacher-forced next-word logits.

    Args:
      images: float32[B, H, W, C_in].
      tokens_in: int32[B, T] the input words, ``<bos>`` first (a caption without its last
        token).
      with_bag: Also return the bag-of-words logits (the training's auxiliary output).

    Returns:
      float32[B, T, V] logits; position ``t`` predicts the word after ``tokens_in[:, t]``.
      With ``with_bag``, ``(logits, bag_logits float32[B, V])``: the bag-of-words head
      predicts from the max-pooled encoder features which words occur in the caption.
    """
    keys, values, state, pooled = self._encode(self._grid(images))
    carry = (state, jnp.zeros((images.shape[0], self.attn_dim), state.dtype))
    logits = []
    for t in range(tokens_in.shape[1]):
      carry, out = self.step(keys, values, carry, tokens_in[:, t])
      logits.append(out)
    logits = jnp.stack(logits, axis=1)
    return (logits, self.bag(pooled)) if with_bag else logits

  def greedy(self, images: jax.Array, max_len: int) -> jax.Array:
    """Arg-max decoding from ``<bos>``.

    Args:
      images: float32[B, H, W, C_in].
      max_len: Length of the output including ``<bos>``.

    Returns:
      int32[B, max_len]: ``<bos>``, the words, ``<eos>``, then ``<pad>``.
    """
    keys, values, state = self.encode(images)
    b = images.shape[0]
    carry = (state, jnp.zeros((b, self.attn_dim), state.dtype))
    token = jnp.full((b,), captions.BOS_ID, jnp.int32)
    done = jnp.zeros((b,), bool)
    out = [token]
    for _ in range(max_len - 1):
      carry, logits = self.step(keys, values, carry, token)
      # <pad> and <bos> are never generated.
      logits = logits.at[:, captions.PAD_ID].set(-jnp.inf).at[:, captions.BOS_ID].set(-jnp.inf)
      token = jnp.where(done, captions.PAD_ID, jnp.argmax(logits, -1).astype(jnp.int32))
      done = done | (token == captions.EOS_ID)
      out.append(token)
    return jnp.stack(out, axis=1)


def init(module: Captioner, key, image_shape: tuple[int, int, int]) -> Variables:
  """``module.init`` on a dummy batch of images of shape ``[H, W, C]``."""
  images = jnp.zeros((1, *image_shape), jnp.float32)
  return _init(module, key, images)


@functools.partial(jax.jit, static_argnames=("module",))
def _init(module, key, images):
  # One compiled call: an eager init dispatches (and compiles) every op on its own.
  return module.init(key, images, jnp.zeros((1, 1), jnp.int32), with_bag=True)


@functools.partial(jax.jit, static_argnames=("module", "max_len"))
def _greedy(module, variables, images, max_len):
  return module.apply(variables, images, max_len, method=Captioner.greedy)


def greedy_decode(module: Captioner, variables: Variables, images, *,
                  max_len: int = captions.MAX_LEN, batch_size: int = 256) -> np.ndarray:
  """Greedy captions of a batch of images.

  Args:
    module: The captioner.
    variables: Its variables.
    images: float32[B, H, W, C_in].
    max_len: Output length including ``<bos>`` (default :data:`captions.MAX_LEN`).
    batch_size: Images per forward pass.

  Returns:
    int32[B, max_len] token ids (decode with :func:`rise_jax.data.captions.decode`).
  """
  images = jnp.asarray(images, jnp.float32)
  if images.ndim != 4:
    raise ValueError(f"images must have shape [B, H, W, C], got {tuple(images.shape)}")
  if max_len < 2:
    raise ValueError(f"max_len must be >= 2 (<bos> and one word), got {max_len}")
  return np.concatenate([np.asarray(_greedy(module, variables, images[i:i + batch_size],
                                            max_len))
                         for i in range(0, images.shape[0], batch_size)])


@dataclasses.dataclass(frozen=True, eq=False)
class CaptionModelFn:
  """The captioner as the black box of :func:`rise_jax.caption.caption_rise`.

  ``fn(images float32[b, H, W, C], words int32[T]) -> float32[b, T]`` with
  ``out[:, k] = P[words[k] | image, <bos>, words[:k]]`` (softmax probability, teacher forcing).
  ``words`` are the caption's words without ``<bos>`` (an ``<eos>`` may end them, to explain
  the end of the sentence). JAX-traceable; hashed by identity, so reusing one object reuses
  ``caption_rise``'s compiled loop.

  Attributes:
    module: The :class:`Captioner`.
    variables: Its (frozen) variables.
    vocab_size: ``V``; ``caption_rise`` checks token ids against it.
  """

  module: Captioner
  variables: Variables

  @property
  def vocab_size(self) -> int:
    return int(self.module.vocab_size)

  def __call__(self, images: jax.Array, words: jax.Array) -> jax.Array:
    words = jnp.asarray(words, jnp.int32)
    b = images.shape[0]
    tokens_in = jnp.concatenate([jnp.asarray([captions.BOS_ID], jnp.int32), words[:-1]])
    logits = self.module.apply(self.variables, images, jnp.broadcast_to(tokens_in,
                                                                         (b, words.shape[0])))
    probs = jax.nn.softmax(logits, axis=-1)  # [b, T, V]
    return jnp.take_along_axis(probs, jnp.broadcast_to(words[None, :, None],
                                                       (b, words.shape[0], 1)), axis=2)[..., 0]


def caption_model_fn(module: Captioner, variables: Variables) -> CaptionModelFn:
  """The black box ``(images, words) -> P[w_k | I, w_<k]`` for ``caption_rise``."""
  return CaptionModelFn(module, variables)


def next_word_fn(module: Captioner, variables: Variables, prefix: Sequence[int]):
  """The next-word distribution after a prefix, as a classifier-style black box.

  ``fn(images [b, H, W, C]) -> float32[b, V]`` is ``P[w | image, <bos>, prefix]`` for every
  vocabulary word ``w``; ``rise(fn, image, key, classes=[...])`` explains any words at that
  position in one pass, including words that are not in the scene.

  Args:
    module: The captioner.
    variables: Its variables.
    prefix: Word ids after ``<bos>`` (may be empty).

  Returns:
    The black box.
  """
  prefix = np.asarray(prefix, np.int32).reshape(-1)
  if prefix.size and (prefix.min() < 0 or prefix.max() >= module.vocab_size):
    raise ValueError(f"prefix ids must be in [0, {module.vocab_size - 1}], got {prefix.tolist()}")
  tokens_in = jnp.asarray(np.concatenate([[captions.BOS_ID], prefix]), jnp.int32)

  def fn(images):
    b = images.shape[0]
    logits = module.apply(variables, images, jnp.broadcast_to(tokens_in, (b, len(tokens_in))))
    return jax.nn.softmax(logits[:, -1], axis=-1)

  return fn
