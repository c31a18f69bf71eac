"""benchmarks/: run.py's commands and table, the shared timing loop, the schema of every result
JSON (a quick run's and the committed ones'), and the peers against their packages."""

import glob
import json
import os
import re
import subprocess
import sys

import pytest

from benchmarks import run


def test_paths_commands_and_environment(tmp_path):
  assert run.result_path("rise", "cpu", str(tmp_path)) == str(tmp_path / "rise.json")
  assert run.result_path("iassa", "gpu", str(tmp_path)) == str(tmp_path / "iassa_gpu.json")
  assert run.result_path("iassa", "gpu", str(tmp_path), "h200") == str(tmp_path / "iassa_h200.json")
  assert run.summary_path(str(tmp_path), "gpu", "h200") == str(tmp_path / "summary_h200.md")
  cmd = run.bench_command("metrics", "/x/m.json", quick=True)
  assert cmd == [sys.executable, "-m", "benchmarks.metrics_bench", "--out", "/x/m.json",
                 "--quick"]
  assert run.bench_env("gpu")["JAX_PLATFORMS"] == "cuda"
  assert run.bench_env("cpu")["PYTHONPATH"].split(os.pathsep)[0] == run._ROOT
  assert run.bench_env("cpu", "python -m benchmarks.run")[run.RUN_COMMAND_ENV] == (
      "python -m benchmarks.run")
  with pytest.raises(ValueError, match="benchmark must be one of"):
    run.bench_command("lime", "/x.json")
  with pytest.raises(ValueError, match="device must be one of"):
    run.bench_env("ipu")


def test_every_benchmark_accepts_out_quick_and_repeats():
  for name in run.BENCHMARKS:
    source = open(os.path.join(run._ROOT, "benchmarks", f"{name}_bench.py")).read()
    assert all(f'"--{a}"' in source for a in ("out", "quick", "repeats")), name
    assert "common.timed(" in source and "common.write_result(" in source, name
    # One timing loop for everything (benchmarks/common.py): no private clocks in a benchmark.
    assert "process_time" not in source, name


def _timing(walls):
  import statistics
  return {"first_call_seconds": 2.0, "wall_seconds": walls, "cpu_seconds": walls,
          "wall_median": statistics.median(walls), "cpu_median": statistics.median(walls)}


def _fake_result(**headlines):
  machine = dict.fromkeys(run.MACHINE_KEYS, "x")
  machine.update(backend="cpu", cpu_model="Some CPU", usable_cores=2)
  meta = dict.fromkeys(run.META_KEYS)
  meta.update(commit="a" * 40, dirty=False, commit_source="git", quick=False,
              load_before=[0.5, 0.4, 0.3], load_after=[1.5, 0.9, 0.5], machine=machine)
  return {"benchmark": "rise", "meta": meta, "headlines": headlines, "details": {},
          "timings": {"rise": _timing([1.0, 3.0, 2.0])}}


def _h(value, target=None, holds=None, clock="wall", **kw):
  return {"value": value, "target": target, "holds": holds, "clock": clock, **kw}


def test_collect_tabulates_the_stored_figures(tmp_path, capsys):
  fake = _fake_result(overhead=_h(1.05, "<= 1.10", True),
                      mask_speedup=_h(12.0, ">= 20", False),
                      speedup=_h(1500.0, ">= 1000", True, extrapolated_from="N=400 x 10"))
  assert run.validate_result(fake) == []
  (tmp_path / "rise.json").write_text(json.dumps(fake))
  assert run.main(["--collect", "--only", "rise", "--out-dir", str(tmp_path)]) == 0
  table = (tmp_path / "summary.md").read_text()
  assert table == run.collect(str(tmp_path))[0]
  row = "| rise | overhead | 1.05 | <= 1.10 | yes | wall |  | aaaaaaaaaa | cpu: Some CPU, 2 cores"
  assert row + " | 0.5 / 1.5 |" in table
  assert "| rise | mask_speedup | 12 | >= 20 | **no** |" in table  # a missed target is shown
  assert "| speedup | 1500 | >= 1000 | yes | wall | **extrapolated** from N=400 x 10 |" in table
  assert "| metrics | (no result) |" in table  # every benchmark has a line
  assert table in capsys.readouterr().out
  # A requested benchmark without results fails the run.
  assert run.main(["--collect", "--only", "rise,iassa", "--out-dir", str(tmp_path)]) == 1
  with pytest.raises(SystemExit):
    run.main(["--collect", "--only", "lime"])


def test_validate_result_finds_what_is_missing():
  assert run.validate_result({"headlines": {}}) == [
      f"missing section {k!r}" for k in ("benchmark", "meta", "details", "timings")]
  bad = _fake_result(x=_h(float("nan")), y=_h(1.0, ">= 1", None), z=_h(1.0, clock="cpu"))
  del bad["meta"]["commit"], bad["meta"]["machine"]["backend"]
  bad["timings"]["two_rounds"] = _timing([1.0, 2.0])
  bad["timings"]["wrong_median"] = {**_timing([1.0, 2.0, 3.0]), "wall_median": 1.0}
  problems = run.validate_result(bad)
  for needle in ("meta lacks 'commit'", "meta.machine lacks 'backend'", "'x' value nan",
                 "'y': holds must be set", "'z' clock 'cpu'", "'two_rounds' has fewer than 3",
                 "'wrong_median': wall_median"):
    assert any(needle in p for p in problems), (needle, problems)


def test_timed_warms_up_once_then_interleaves_rounds():
  import statistics

  from benchmarks import common

  calls = []
  t = common.timed({"a": lambda: calls.append("a"), "b": lambda: calls.append("b"),
                    "c": lambda: calls.append("c")}, repeats=3)
  # One warm-up call each, then rounds in rotated order (no side always first).
  assert calls == ["a", "b", "c", "a", "b", "c", "b", "c", "a", "c", "a", "b"]
  assert set(t) == {"a", "b", "c"}
  for v in t.values():
    assert len(v["wall_seconds"]) == len(v["cpu_seconds"]) == 3
    assert v.wall == v["wall_median"] == statistics.median(v["wall_seconds"])
    assert v.cpu == statistics.median(v["cpu_seconds"]) and v.first > 0
  with pytest.raises(ValueError, match="repeats must be >= 3"):
    common.timed({"a": lambda: None}, repeats=2)


def test_headline_targets():
  from benchmarks import common

  assert common.headline(1.05, "<= 1.10")["holds"] is True
  assert common.headline(19.0, ">= 20")["holds"] is False
  assert common.headline(1.15, "~ 1 +- 0.1")["holds"] is False
  assert common.headline(0.95, "~ 1 +- 0.1")["holds"] is True
  h = common.headline(1500.0, ">= 1000", extrapolated_from="N=400 x 10")
  assert h == {"value": 1500.0, "target": ">= 1000", "holds": True, "clock": "wall",
               "extrapolated_from": "N=400 x 10"}
  assert common.headline(2.0)["holds"] is None
  with pytest.raises(ValueError, match="target must start with"):
    common.headline(1.0, "< 2")


@pytest.mark.slow  # end to end: runs in .ci/run's slow set
def test_quick_run_writes_the_schema(tmp_path):
  """The --quick path end to end through benchmarks.run (the cheapest benchmark): exit 0, a JSON
  with the schema, the commit and the machine, and the summary --collect builds."""
  out = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--only", "scaling",
                        "--out-dir", str(tmp_path)], cwd=run._ROOT, env=run.bench_env("cpu"),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  assert out.returncode == 0, out.stdout[-3000:]
  result = json.loads((tmp_path / "scaling.json").read_text())
  assert run.validate_result(result) == []
  meta = result["meta"]
  assert meta["quick"] is True and meta["machine"]["backend"] == "cpu"
  assert meta["run_command"].startswith("python -m benchmarks.run --quick")
  assert "--quick" in meta["benchmark_command"]
  assert meta["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", meta["commit"])
  assert set(result["headlines"]) == {"slope_n", "slope_size"}
  assert len(result["timings"]) == 3  # N in 50, 100 at 32 px; 64 px at N = 100
  assert (tmp_path / "summary.md").read_text() == run.collect(str(tmp_path))[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in run.BENCHMARKS if n != "scaling"])
def test_every_quick_path_writes_the_schema(tmp_path, name):
  if name == "peer":
    pytest.importorskip("torch")
    pytest.importorskip("interpret_segmentation")
  out = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--only", name,
                        "--out-dir", str(tmp_path)], cwd=run._ROOT, env=run.bench_env("cpu"),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  assert out.returncode == 0, out.stdout[-3000:]
  result = json.loads((tmp_path / f"{name}.json").read_text())
  assert run.validate_result(result) == []


# --- the committed results ------------------------------------------------------------------

COMMITTED = sorted(glob.glob(os.path.join(run.RESULTS, "*.json")))
SUMMARIES = sorted(glob.glob(os.path.join(run.RESULTS, "summary*.md")))


def _git(*args):
  return subprocess.run(["git", *args], cwd=run._ROOT, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True)


@pytest.mark.skipif(not COMMITTED, reason="no committed results (python -m benchmarks.run)")
@pytest.mark.parametrize("path", COMMITTED, ids=os.path.basename)
def test_committed_result_carries_the_commit_it_was_produced_at(path):
  with open(path) as f:
    result = json.load(f)
  assert run.validate_result(result) == []
  meta = result["meta"]
  name = result["benchmark"]
  assert os.path.basename(path).split(".")[0].split("_")[0] == name
  assert meta["quick"] is False, "quick figures are not results"
  assert re.fullmatch(r"[0-9a-f]{40}", meta["commit"] or ""), "no commit recorded"
  if meta["commit_source"] == "env":  # a copy without .git: the launcher named the commit
    assert meta["dirty"] is None
  else:
    assert meta["commit_source"] == "git"
    assert meta["dirty"] is False, f"produced with uncommitted changes: {meta['dirty_files']}"
  if _git("rev-parse", "HEAD").returncode:
    pytest.skip("not a git checkout")
  assert _git("cat-file", "-e", meta["commit"] + "^{commit}").returncode == 0, (
      f"{meta['commit']} is not in this repository: rerun the benchmark")
  assert _git("merge-base", "--is-ancestor", meta["commit"], "HEAD").returncode == 0
  # The code that measured it has not changed since: a changed benchmark means a rerun.
  sources = [f"benchmarks/{name}_bench.py", "benchmarks/common.py", "benchmarks/memory.py"]
  diff = _git("diff", "--name-only", meta["commit"], "HEAD", "--", *sources).stdout.split()
  assert not diff, f"{diff} changed since {meta['commit'][:10]}: rerun {name}"


@pytest.mark.skipif(not SUMMARIES, reason="no committed summary (python -m benchmarks.run)")
@pytest.mark.parametrize("path", SUMMARIES, ids=os.path.basename)
def test_committed_summary_is_what_collect_builds(path):
  tag = os.path.basename(path)[len("summary"):-len(".md")].lstrip("_")
  with open(path) as f:
    assert f.read() == run.collect(run.RESULTS, tag=tag)[0]


def test_archived_results_are_marked_as_such():
  archive = os.path.join(run.RESULTS, "archive")
  if not os.path.isdir(archive):
    pytest.skip("no archive")
  with open(os.path.join(archive, "README.md")) as f:
    assert "produced by older code" in f.read()


def test_scaling_fits_recover_known_exponents():
  from benchmarks import scaling_bench

  ns = [500, 1000, 2000, 4000, 8000]
  assert scaling_bench.loglog_slope(ns, [2e-3 * n for n in ns]) == pytest.approx(1.0)
  assert scaling_bench.loglog_slope([112, 224, 448], [3e-5 * s**2 for s in (112, 224, 448)]
                                    ) == pytest.approx(2.0)
  # A fixed cost bends the log-log line below 1; the linear fit separates it exactly.
  times = [3e-3 * n + 0.5 for n in ns]
  assert scaling_bench.loglog_slope(ns, times) < 0.95
  per_mask, fixed = scaling_bench.linear_fit(ns, times)
  assert per_mask == pytest.approx(3e-3) and fixed == pytest.approx(0.5)


def test_peer_bench_without_torch_says_what_to_install(monkeypatch):
  from benchmarks import peer_bench

  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
  with pytest.raises(SystemExit, match=r'pip install -e "\.\[bench\]"'):
    peer_bench.main(["--quick"])


def test_peer_bench_child_peak_rss_is_its_own():
  import subprocess

  import numpy as np

  ballast = np.ones(300 * 2**20 // 8)  # the parent holds 300 MiB more than the child needs
  code = "from benchmarks.memory import peak_rss_mb; print(peak_rss_mb())"
  out = subprocess.run([sys.executable, "-c", code], cwd=run._ROOT, check=True,
                       stdout=subprocess.PIPE, text=True, env=run.bench_env("cpu")).stdout
  assert 1 < float(out) < 200  # ru_maxrss would report the parent's > 300 MiB
  del ballast


def test_torchray_style_masks_are_rise_jax_masks():
  pytest.importorskip("torch")
  import jax
  import numpy as np
  import torch

  import rise_jax
  from benchmarks import peer_bench
  from rise_jax import masks as masks_lib

  key, size, grid = jax.random.key(3), (29, 35), (7, 7)
  draws = [masks_lib.mask_draws(key, i, size, grid, 0.5) for i in range(4)]
  g = torch.from_numpy(np.stack([np.asarray(d[0]) for d in draws]))
  shifts = torch.tensor([[int(d[1]), int(d[2])] for d in draws])
  ours = peer_bench.torchray_masks(g, shifts, size)[:, 0].numpy()
  np.testing.assert_allclose(ours, np.asarray(rise_jax.generate_masks(key, 4, size, 7, 0.5)),
                             atol=1e-6)
  assert 0.05 < ours.mean() < 0.95


def test_torchray_style_rise_matches_brute_force():
  pytest.importorskip("torch")
  import numpy as np
  import torch

  from benchmarks import peer_bench

  image = torch.from_numpy(np.random.default_rng(0).normal(size=(3, 12, 10)).astype(np.float32))
  model = lambda x: torch.stack([x.sum((1, 2, 3)), (x[:, 0] ** 2).mean((1, 2))], 1)
  maps = peer_bench.torchray_style_rise(model, image, num_masks=2, batch_size=1, grid_size=3,
                                        p1=0.4, seed=5)
  gen = torch.Generator().manual_seed(5)
  m = [peer_bench.draw_torch_masks(1, (12, 10), 3, 0.4, gen)[0, 0] for _ in range(2)]
  for c in range(2):
    want = sum(float(model((image * mi)[None])[0, c]) * mi for mi in m) / (2 * 0.4)
    np.testing.assert_allclose(maps[c].numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
  assert float(maps.abs().max()) > 0.1


def test_peer_segmentation_nets_agree():
  pytest.importorskip("torch")
  import numpy as np
  import torch

  from benchmarks import peer_bench

  weights = peer_bench.seg_weights()
  x = np.random.default_rng(2).normal(size=(2, 16, 16, 3)).astype(np.float32)
  ours = np.asarray(peer_bench.flax_segnet(weights)(x))
  with torch.no_grad():
    theirs = peer_bench.torch_models()[1](weights)(torch.from_numpy(x.transpose(0, 3, 1, 2)))
  assert ours.shape == (2, 16, 16, 1) and tuple(theirs.shape) == (2, 16, 16)
  np.testing.assert_allclose(ours[..., 0], theirs.numpy(), atol=1e-5)
  assert ours.std() > 1e-3  # not a constant output


def test_torchray_package_rise_is_rise_jax_on_the_same_masks():
  """TorchRay's own rise (the peer) on rise_jax's masks: sigmoid scores, divided by N."""
  pytest.importorskip("torch")
  torchray_rise = pytest.importorskip("torchray.attribution.rise").rise
  import jax
  import jax.numpy as jnp
  import numpy as np
  import torch

  import rise_jax

  rng = np.random.default_rng(4)
  image = rng.normal(size=(12, 10, 3)).astype(np.float32)
  w = rng.normal(size=(12, 10, 3, 3)).astype(np.float32) * 0.3
  logits_t = lambda x: torch.einsum("bchw,hwck->bk", x, torch.from_numpy(w))
  model_j = lambda x: jax.nn.sigmoid(jnp.einsum("bhwc,hwck->bk", x, w))
  masks = rise_jax.generate_masks(2, 6, (12, 10), 3, 0.5)
  ours = np.asarray(rise_jax.rise(model_j, image, 0, masks=masks, p1=0.5, batch_size=4))
  theirs = torchray_rise(logits_t, torch.from_numpy(image.transpose(2, 0, 1))[None],
                         num_masks=6, num_cells=3, batch_size=4,
                         filter_masks=torch.from_numpy(np.array(masks))[:, None])
  assert theirs.shape == (1, 3, 12, 10)
  np.testing.assert_allclose(0.5 * ours, theirs[0].numpy(), atol=1e-5)
  assert float(theirs.abs().max()) > 0.1


def test_batched_interpret_segmentation_equals_its_own_forward():
  """The same-batch peer row (our patch of interpret-segmentation's forward) changes nothing
  but the batching: same maps as the shipped forward on the same masks."""
  pytest.importorskip("torch")
  base = pytest.importorskip("interpret_segmentation.rise").SegmentationRISE
  import numpy as np
  import torch

  from benchmarks import peer_bench

  net = peer_bench.torch_models()[1](peer_bench.seg_weights()).eval()
  image = torch.from_numpy(np.random.default_rng(3).normal(size=(1, 3, 16, 16)).astype(
      np.float32))
  np.random.seed(0)
  shipped = base(net, (16, 16), torch.device("cpu"))
  masks = (np.random.default_rng(5).random((7, 1, 16, 16)) < 0.5).astype(np.float32)
  shipped.masks, shipped.N = torch.from_numpy(masks), 7
  batched = peer_bench.batched_segmentation_rise(3)(net, (16, 16), torch.device("cpu"))
  batched.masks, batched.N = shipped.masks, 7
  with torch.no_grad():
    want, got = shipped(image), batched(image)
  assert got.saliencies.shape == want.saliencies.shape and want.saliencies.shape[0] > 10
  for merge in ("max", "mean"):
    np.testing.assert_allclose(getattr(got, merge)(), getattr(want, merge)(), atol=1e-6)


def test_authors_masks_differ_only_near_the_upsampled_border():
  """The authors' mask generator (mode="reflect", transcribed in rise_bench) against the same
  draws upsampled with mode="edge" (= rise_jax's masks, tests/test_masks.py): equal except in
  the outermost half cell of the upsampled grid (docs/DECISIONS.md, RISE masks)."""
  import numpy as np
  from skimage.transform import resize

  from benchmarks.rise_bench import reference_masks

  n, size, s = 40, 29, 7
  np.random.seed(7)
  authors = reference_masks(n, size, s)
  np.random.seed(7)  # the same draws, in the same order
  cell = int(np.ceil(size / s))
  up = (s + 1) * cell
  grid = (np.random.rand(n, s, s) < 0.5).astype("float32")
  near_border = np.zeros((n, size, size), bool)
  edge = np.empty_like(authors)
  for i in range(n):
    x, y = np.random.randint(0, cell), np.random.randint(0, cell)
    edge[i] = resize(grid[i], (up, up), order=1, mode="edge",
                     anti_aliasing=False)[x:x + size, y:y + size]
    # Half of one grid cell as upsampled (up / s pixels: resize maps s cells onto up pixels).
    half = up / (2 * s)
    rows, cols = np.arange(x, x + size) + 0.5, np.arange(y, y + size) + 0.5
    outer_r = (rows < half) | (rows > up - half)
    outer_c = (cols < half) | (cols > up - half)
    near_border[i] = outer_r[:, None] | outer_c[None, :]
  diff = np.abs(authors - edge)
  np.testing.assert_allclose(diff[~near_border], 0, atol=1e-6)
  assert diff[near_border].max() > 0.1  # the boundary modes do differ there
