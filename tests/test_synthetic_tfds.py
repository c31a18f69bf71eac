"""The TFDS builder of the synthetic benchmark yields exactly synthetic.make's examples."""

import numpy as np

from rise_jax.data import synthetic, synthetic_tfds


def test_tfds_builder_equals_make(tmp_path):
  ds = synthetic_tfds.prepare(str(tmp_path), image_size=16, num_train=5, num_val=2, num_test=3,
                              spurious=True)
  assert len(ds["train"]) == 5 and len(ds["test"]) == 3
  ref = synthetic.make("test", 3, image_size=16, spurious=True)
  seen = []
  for j in range(3):
    ex = ds["test"][j]
    i = int(ex["index"])
    seen.append(i)
    for k in ("image", "label", "segmentation", "boxes", "difficult", "cue"):
      np.testing.assert_array_equal(ex[k], ref[k][i])
  assert sorted(seen) == [0, 1, 2]
