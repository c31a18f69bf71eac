"""The README's commands and its Usage example are real: the example runs as written."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

INSTALL = 'pip install -e ".[dev]"'
MAIN_COMMAND = f"{INSTALL} && python -m experiments.main"
TEST_COMMAND = f"{INSTALL} && python -m pytest -n 2"


def _section(heading: str) -> str:
  """The text under a '## heading' up to the next '## ' heading."""
  match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
  assert match, f"README has no '## {heading}' section"
  return match.group(1)


def _blocks(text: str, lang: str) -> list[str]:
  return re.findall(rf"^```{lang}\n(.*?)^```", text, re.M | re.S)


def test_command_blocks():
  for heading, command in [("Run the main job", MAIN_COMMAND), ("Run the tests", TEST_COMMAND)]:
    section = _section(heading)
    blocks = _blocks(section, "bash")
    assert blocks == [command + "\n"], (heading, blocks)
    assert section.lstrip().startswith("```bash"), f"the command must sit directly under {heading}"


def test_ci_runs_the_readme_test_command():
  ci = (ROOT / ".ci" / "run").read_text()
  lines = [line.strip() for line in ci.splitlines()]
  assert "set -euo pipefail" in lines
  assert INSTALL in lines
  assert "ruff check ." in lines
  assert TEST_COMMAND.split(" && ")[1] in lines
  assert "|| true" not in ci
  assert (ROOT / ".ci" / "run").stat().st_mode & 0o111, ".ci/run must be executable"


def test_status_section():
  status = _section("Status")
  assert "RISE" in status and "Segmentation RISE" in status and "Roadmap" in status


def test_usage_block_runs(capsys):
  blocks = _blocks(_section("Usage"), "python")
  assert len(blocks) == 1, "the Usage section must hold exactly one python block"
  namespace = {"__name__": "__readme__"}
  exec(compile(blocks[0], "README.md:Usage", "exec"), namespace)
  out = capsys.readouterr().out.splitlines()
  assert out[0] == "(2, 32, 32)"
  assert out[1:] == ["True", "True"]
  assert namespace["maps"].shape == (2, 32, 32)
