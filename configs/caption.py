"""RISE for captioning (RISE paper, eq. 7) on the synthetic shapes scenes.

Run by :func:`experiments.tasks.caption.train_and_evaluate` (``python -m
experiments.explain_caption --config=configs/caption.py[:small]``).

``get_config()``: the full run (the old ``explain_caption`` flag defaults): the attention
captioner trained on 10000 captioned 64 px scenes for 12 epochs (batch 16, Adam 3e-3), 300
test scenes captioned greedily, 100 of them explained with 1000 RISE masks (grid 7), pointing
tolerance ``15 * 64 / 224`` px, 12 overlay PNGs.

``get_config("small")``: a main-job-sized run: a narrower captioner (convs 8 / 16 / 32 / 32,
GRU state 64: about 2.3x cheaper per training image than the default width) trained on 6000
scenes for 8 epochs at batch 32 (Adam 6e-3, 1500 steps), 300 test scenes captioned, 16
explained with 1000 masks. Measured on a busy 2-core CPU (load 6-8): training 266 s (about 2-3
minutes on a quiet one), greedy captions with exactly the scene's shapes on 0.79 of the test
scenes (validation token accuracy 0.94); with the same budget the default-width captioner
reached 0.61-0.69 (4000-6000 scenes, 8 epochs), Adam 1e-2 0.60, and 48 px images 0.34.

``get_config("quick")``: a smoke run for the tests (32 px, a tiny captioner trained for one
epoch on 64 scenes, 3 scenes explained with 40 masks); its numbers mean nothing.
"""

from __future__ import annotations

import ml_collections

from configs import common

_VARIANTS = ("small", "quick")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variants = common.variants(arg, _VARIANTS)
  if "small" in variants and "quick" in variants:
    raise ValueError("choose one of the variants 'small' and 'quick', got both")
  config = ml_collections.ConfigDict()
  config.workdir = "./runs/caption"
  config.seed = 0  # dataset, captioner initialisation / data order and RISE mask seed
  config.progress = True
  config.overwrite = False  # start over in a run folder of another config
  config.data = ml_collections.ConfigDict(dict(
      image_size=64, num_train=10000, num_val=300, num_test=300))
  # rise_jax.models.captioner.Captioner's hyper-parameters (its defaults).
  config.model = ml_collections.ConfigDict(dict(
      features=(16, 32, 64, 64), num_pools=3, embed_dim=32, hidden=128, attn_dim=64))
  config.train = ml_collections.ConfigDict(dict(
      epochs=12, batch_size=16, learning_rate=3e-3, bag_weight=1.0))
  config.rise = ml_collections.ConfigDict(dict(
      num_masks=1000, grid_size=7, p1=0.5, batch_size=250))
  config.eval = ml_collections.ConfigDict(dict(
      num_explain=100,  # test scenes explained (capped at data.num_test)
      num_png=12,  # scenes written as overlay PNGs
      save_maps=True))  # maps.npz: the scored noun maps and the "a ___" slot maps
  # Pointing tolerance in pixels; None: 15 px scaled to the image (15 * image_size / 224, the
  # TorchRay tolerance for 224 px images).
  config.eval.tolerance = ml_collections.FieldReference(None, field_type=float)
  if "small" in variants:
    config.workdir = "./runs/caption_small"
    config.data.num_train = 6000
    config.model.update(features=(8, 16, 32, 32), hidden=64)
    config.train.update(epochs=8, batch_size=32, learning_rate=6e-3)
    config.eval.update(num_explain=16, num_png=6)
  if "quick" in variants:
    config.workdir = "./runs/caption_quick"
    config.progress = False
    config.data.update(image_size=32, num_train=64, num_val=16, num_test=16)
    config.model.update(features=(8, 16), num_pools=2, embed_dim=8, hidden=32, attn_dim=16)
    config.train.update(epochs=1, batch_size=16, learning_rate=1e-2)
    config.rise.update(num_masks=40, grid_size=4, batch_size=20)
    config.eval.update(num_explain=3, num_png=2)
  return config
