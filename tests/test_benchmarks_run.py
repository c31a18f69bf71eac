"""benchmarks/run.py: commands, environment and the collected table (nothing is timed here)."""

import json
import os
import sys

import pytest

from benchmarks import run


def test_paths_commands_and_environment(tmp_path):
  assert run.result_path("rise", "cpu", str(tmp_path)) == str(tmp_path / "rise.json")
  assert run.result_path("iassa", "gpu", str(tmp_path)) == str(tmp_path / "iassa_gpu.json")
  assert run.result_path("iassa", "gpu", str(tmp_path), "h200") == str(tmp_path / "iassa_h200.json")
  cmd = run.bench_command("metrics", "/x/m.json", quick=True)
  assert cmd == [sys.executable, "-m", "benchmarks.metrics_bench", "--out", "/x/m.json",
                 "--quick"]
  assert run.bench_env("gpu")["JAX_PLATFORMS"] == "cuda"
  assert run.bench_env("cpu")["PYTHONPATH"].split(os.pathsep)[0] == run._ROOT
  with pytest.raises(ValueError, match="benchmark must be one of"):
    run.bench_command("lime", "/x.json")
  with pytest.raises(ValueError, match="device must be one of"):
    run.bench_env("ipu")


def test_every_benchmark_accepts_out_and_quick():
  for name in run.BENCHMARKS:
    source = open(os.path.join(run._ROOT, "benchmarks", f"{name}_bench.py")).read()
    assert '"--out"' in source and '"--quick"' in source, name


def test_collect_tabulates_the_stored_figures(tmp_path, capsys):
  fake = {"overhead": 1.05, "mask_speedup": 25.0, "details": {},
          "targets": {"overhead": "<= 1.10", "mask_speedup": ">= 20", "memory_ratio": "<= 1.1"},
          "environment": {"backend": "cpu"}}
  (tmp_path / "rise.json").write_text(json.dumps(fake))
  assert run.main(["--collect", "--only", "rise", "--out-dir", str(tmp_path)]) == 0
  table = (tmp_path / "summary.md").read_text()
  assert "| rise | overhead | 1.05 | <= 1.10 | cpu |" in table
  assert "| rise | mask_speedup | 25 | >= 20 | cpu |" in table
  assert "| rise | memory_ratio | missing | <= 1.1 | cpu |" in table  # no value: shown, not hidden
  assert table in capsys.readouterr().out
  # A benchmark without results fails the run.
  assert run.main(["--collect", "--only", "rise,iassa", "--out-dir", str(tmp_path)]) == 1
  with pytest.raises(SystemExit):
    run.main(["--collect", "--only", "lime"])


def test_headline_rows_of_the_committed_results():
  with open(os.path.join(run.RESULTS, "explainer.json")) as f:
    rows = run.headline_rows("explainer", json.load(f))
  by_figure = {r["figure"]: r for r in rows}
  assert by_figure["explainer_speedup"]["value"] >= 1000
  assert by_figure["explainer_speedup"]["backend"] == "cpu"


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
