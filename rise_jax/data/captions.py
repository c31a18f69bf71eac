"""Captions of the synthetic shapes scenes (:mod:`rise_jax.data.synthetic`), and tokenisation.

A scene's caption names its visible objects from left to right, by the column of each object's
visible-pixel centroid (ties broken by class id)::

    1 object:  "a circle"
    2 objects: "a circle and a ring"
    3 objects: "a square , a circle and a ring"

The shapes' colours are random RGB draws (no colour names), so captions use the shape names of
:data:`rise_jax.data.synthetic.CLASS_NAMES` only. Every noun is the name of exactly one object
of the scene, whose segmentation mask is the ground truth for that word's saliency map.

Token ids are fixed by :data:`VOCAB`: ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, the function words,
then the shape names (``noun_id(c) = NOUN_OFFSET + c``). A caption is encoded as
``<bos> w_1 ... w_n <eos> <pad> ...`` to a fixed length.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rise_jax.data import synthetic

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
FUNCTION_WORDS: tuple[str, ...] = ("a", "and", ",")
VOCAB: tuple[str, ...] = (PAD, BOS, EOS, *FUNCTION_WORDS, *synthetic.CLASS_NAMES)
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
NOUN_OFFSET = 3 + len(FUNCTION_WORDS)
WORD_TO_ID: dict[str, int] = {w: i for i, w in enumerate(VOCAB)}
# "a X , a Y and a Z": 3 words per object plus one separator between objects, minus one.
MAX_WORDS = 3 * 3 - 1
MAX_LEN = MAX_WORDS + 2  # with <bos> and <eos>


def noun_id(class_id: int) -> int:
  """Token id of the shape name of ``class_id``."""
  if not 0 <= class_id < len(synthetic.CLASS_NAMES):
    raise ValueError(f"class_id must be in [0, {len(synthetic.CLASS_NAMES) - 1}], got {class_id}")
  return NOUN_OFFSET + int(class_id)


def noun_class(token_id: int) -> int | None:
  """The class id a token names, or ``None`` for a non-noun token."""
  c = int(token_id) - NOUN_OFFSET
  return c if 0 <= c < len(synthetic.CLASS_NAMES) else None


def object_order(segmentation: np.ndarray) -> list[int]:
  """Visible classes of one scene, left to right.

  Args:
    segmentation: bool[H, W, C] visible pixels of each class.

  Returns:
    Class ids sorted by the column of their visible-pixel centroid, ties by class id.
  """
  seg = np.asarray(segmentation)
  if seg.ndim != 3 or seg.dtype != np.bool_:
    raise ValueError(f"segmentation must be bool[H, W, C], got {seg.dtype}{list(seg.shape)}")
  counts = seg.sum(axis=(0, 1))
  present = np.flatnonzero(counts)
  cols = np.arange(seg.shape[1], dtype=np.float64)
  centre = [float((seg[..., c].sum(axis=0) * cols).sum() / counts[c]) for c in present]
  return [int(c) for _, c in sorted(zip(centre, present))]


def caption_words(classes: Sequence[int]) -> list[str]:
  """Words of the caption naming ``classes`` in the given order (see the module docstring)."""
  if len(classes) == 0:
    raise ValueError("a caption needs at least one object, got none")
  words: list[str] = []
  for i, c in enumerate(classes):
    if i > 0:
      words.append("and" if i == len(classes) - 1 else ",")
    words += ["a", synthetic.CLASS_NAMES[int(c)]]
  return words


def caption(segmentation: np.ndarray) -> str:
  """The caption of one scene, e.g. ``"a square , a circle and a ring"``."""
  return " ".join(caption_words(object_order(segmentation)))


def encode(words: str | Sequence[str], max_len: int = MAX_LEN) -> np.ndarray:
  """Encodes a caption as ``<bos> w_1 ... w_n <eos>`` padded with ``<pad>`` to ``max_len``.

  Args:
    words: A caption string (space-separated words) or a list of words.
    max_len: Encoded length, at least ``n + 2``.

  Returns:
    int32[max_len] token ids.

  Raises:
    ValueError: For a word outside :data:`VOCAB` or a caption longer than ``max_len - 2``.
  """
  if isinstance(words, str):
    words = words.split()
  unknown = [w for w in words if w not in WORD_TO_ID or w in (PAD, BOS, EOS)]
  if unknown:
    raise ValueError(f"words {unknown} are not in the caption vocabulary {list(VOCAB[3:])}")
  if len(words) + 2 > max_len:
    raise ValueError(f"caption of {len(words)} words does not fit max_len={max_len} "
                     f"(needs {len(words) + 2} with <bos> and <eos>)")
  ids = np.full(max_len, PAD_ID, np.int32)
  ids[0] = BOS_ID
  ids[1:len(words) + 1] = [WORD_TO_ID[w] for w in words]
  ids[len(words) + 1] = EOS_ID
  return ids


def decode(ids: Sequence[int] | np.ndarray) -> list[str]:
  """The words of a token sequence: ``<bos>`` and ``<pad>`` skipped, stops at ``<eos>``."""
  words = []
  for t in np.asarray(ids).reshape(-1):
    t = int(t)
    if t == EOS_ID:
      break
    if t in (PAD_ID, BOS_ID):
      continue
    if not 0 <= t < len(VOCAB):
      raise ValueError(f"token id {t} is outside the vocabulary [0, {len(VOCAB) - 1}]")
    words.append(VOCAB[t])
  return words


def words_of(ids: Sequence[int] | np.ndarray) -> np.ndarray:
  """The word ids of an encoded caption (between ``<bos>`` and ``<eos>``): int32[n]."""
  return np.asarray([WORD_TO_ID[w] for w in decode(ids)], np.int32)


def make(split: str, num_examples: int, seed: int = 0, image_size: int = 64,
         num_classes: int = 6, max_len: int = MAX_LEN) -> dict:
  """The synthetic shapes dataset with a caption per scene.

  Args:
    split, num_examples, seed, image_size, num_classes: As in :func:`synthetic.make` (same
      scenes; the default image size here is 64).
    max_len: Encoded caption length (default :data:`MAX_LEN`, enough for 3 objects).

  Returns:
    :func:`synthetic.make`'s dict plus ``"caption"``: list of ``N`` strings, ``"tokens"``:
    int32[N, max_len] encoded captions and ``"order"``: list of ``N`` lists of class ids (left
    to right, the order the caption names them).
  """
  data = synthetic.make(split, num_examples, seed=seed, image_size=image_size,
                        num_classes=num_classes)
  order = [object_order(s) for s in data["segmentation"]]
  caps = [" ".join(caption_words(o)) for o in order]
  data["caption"] = caps
  data["order"] = order
  data["tokens"] = (np.stack([encode(c, max_len) for c in caps]) if caps
                    else np.zeros((0, max_len), np.int32))
  return data
