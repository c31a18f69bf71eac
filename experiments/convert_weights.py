"""Convert PyTorch weights to a Flax checkpoint loadable by ``rise_jax.models.load``.

python -m experiments.convert_weights --arch efficientnet_lite0
python -m experiments.convert_weights --arch resnet50 --torch_weights resnet50.pth [--out DIR]
"""

from absl import app, flags

from experiments import _cli  # noqa: F401 (quiet logs by default)
from rise_jax import convert
from rise_jax.models import registry
from rise_jax.train import checkpoint

_ARCH = flags.DEFINE_string("arch", None, "Architecture name.", required=True)
_WEIGHTS = flags.DEFINE_string("torch_weights", None, "PyTorch state_dict (.pth).")
_OUT = flags.DEFINE_string("out", None, "Output folder (default: the registry cache).")


def main(argv):
  del argv
  variables = convert.convert(_ARCH.value, _WEIGHTS.value)
  out = _OUT.value or f"{registry.cache_dir()}/{_ARCH.value}"
  print(f"wrote {checkpoint.save_variables(out, variables)}")


if __name__ == "__main__":
  app.run(main)
