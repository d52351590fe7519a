"""Every command line the README and `mentor --help` show is one mentor accepts: its command
and flags exist, the presets it names ship, the repository files it names are there. (The
ones that run offline are run in full elsewhere: the demo, `train demo`, the examples,
evaluate/predict/robustness/status/export on a finished run.)"""

import pathlib
import re
import shlex

import pytest

from mentor.cli import EXAMPLES, build_parser
from mentor.config import list_presets

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _command_lines():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    lines = []
    for block in blocks + [EXAMPLES]:
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split("  #")[0].split(" # ")[0].strip()
            words = shlex.split(line, comments=True) if line else []
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words = words[1:]  # KERAS_BACKEND=jax before the command
            if words and words[0] == "mentor":
                lines.append(words[1:])
    return lines


LINES = _command_lines()


def test_the_readme_and_help_show_commands_at_all():
    assert len(LINES) >= 25  # the quickstart and --help's examples


@pytest.mark.parametrize("argv", LINES, ids=[" ".join(a)[:60] for a in LINES])
def test_a_documented_command_line_parses_and_names_what_exists(argv):
    if ">" in argv:  # `config show demo > my.toml`: the shell's redirection
        argv = argv[:argv.index(">")]
    if "--help" in argv or "--version" in argv:
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args(argv)
        assert e.value.code == 0
        return
    args = build_parser().parse_args(argv)
    presets = {name for name, _ in list_presets()}
    config = getattr(args, "config", None)
    if config is not None:
        assert config in presets or config.endswith(".toml"), config
        if config.endswith(".toml") and config.startswith("examples/"):
            assert (ROOT / config).is_file(), config
