"""What every command shares (atnet_jax.cli): exit codes, Ctrl-C, output checks."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from atnet_jax import cli

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _interrupt(args):
    raise KeyboardInterrupt


def test_ctrl_c_exits_130_with_one_line(capsys):
    parser = cli.make_parser("python -m atnet_jax.example", "An example.", "")
    assert cli.run(parser, _interrupt, []) == cli.EXIT_INTERRUPTED == 130
    captured = capsys.readouterr()
    assert captured.err == "python -m atnet_jax.example: interrupted\n" and captured.out == ""


# (module, the function main passes to cli.run, arguments that parse)
COMMANDS = [
    ("atnet_jax.infer", "infer", []),
    ("atnet_jax.evaluate", "evaluate_command", ["--input", "x", "--output", "y"]),
    ("atnet_jax.convert", "convert", ["--input", "x.npz", "--output", "y"]),
    ("atnet_jax.train", "train_command", ["--config", "x.py", "--workdir", "w", "--stage", "anet"]),
    ("atnet_jax.data.synthetic.__main__", "_generate", ["--output", "x", "--videos", "1"]),
    ("atnet_jax.scribble", "scribble", ["--input", "x", "--output", "y.json"]),
]


@pytest.mark.parametrize(("module", "function", "argv"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_ctrl_c_exits_130_in_every_command(module, function, argv, monkeypatch, capsys):
    command = importlib.import_module(module)
    monkeypatch.setattr(command, function, _interrupt)
    assert command.main(argv) == 130
    assert capsys.readouterr().err.strip().endswith(": interrupted")


def test_a_real_sigint_exits_130(tmp_path):
    """As a user's Ctrl-C arrives: SIGINT to the process while a command runs."""
    script = tmp_path / "command.py"
    script.write_text(textwrap.dedent("""
        import os, signal, sys, time
        from atnet_jax import cli

        def main(args):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(30)

        sys.exit(cli.run(cli.make_parser("python -m atnet_jax.example", "An example.", ""), main, []))
    """))
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 130
    assert result.stderr.strip().splitlines() == ["python -m atnet_jax.example: interrupted"]


def test_require_writable_folder(tmp_path, monkeypatch):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    assert cli.require_writable_folder(tmp_path, "--output") == tmp_path
    assert cli.require_writable_folder(tmp_path / "new" / "deeper", "--output") == tmp_path / "new" / "deeper"
    with pytest.raises(cli.UsageError, match=r"^--output .*/f is a file, expected a folder$"):
        cli.require_writable_folder(a_file, "--output")
    with pytest.raises(cli.UsageError, match=r"^--out .*/f/x cannot be created: .*/f is a file"):
        cli.require_writable_folder(a_file / "x", "--out")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(locked)
                        else real_access(p, mode, **kw))  # also for root, who may write anywhere
    with pytest.raises(cli.UsageError, match=r"^--output .*/locked is not writable$"):
        cli.require_writable_folder(locked, "--output")
    with pytest.raises(cli.UsageError, match=r"^--output .*/locked/new cannot be created: .*/locked is not writable"):
        cli.require_writable_folder(locked / "new", "--output")


def _scripts() -> dict[str, str]:
    """pyproject.toml's [project.scripts]: name -> "module:function"."""
    text = (PROJECT_ROOT / "pyproject.toml").read_text()
    section = text.split("[project.scripts]\n", 1)[1].split("\n[", 1)[0]
    pairs = [line.split("=", 1) for line in section.splitlines() if "=" in line and not line.startswith("#")]
    return {k.strip(): v.strip().strip('"') for k, v in pairs}


def test_every_command_has_an_entry_point_and_version(capsys):
    from atnet_jax import __version__
    from atnet_jax.__main__ import COMMANDS as LISTED

    scripts = _scripts()
    assert scripts.pop("atnet") == "atnet_jax.__main__:main"
    assert {f"atnet-{name}": f"{module}:main" for name, (module, _) in LISTED.items()} == scripts
    for target in scripts.values():
        module, function = target.split(":")
        main = getattr(importlib.import_module(module), function)
        with pytest.raises(SystemExit) as exit_info:
            main(["--version"])
        assert exit_info.value.code == 0
        assert capsys.readouterr().out == f"atnet_jax {__version__}\n", module


def test_python_m_atnet_jax_lists_the_commands(capsys):
    from atnet_jax import __main__ as entry

    assert entry.main([]) == 0
    out = capsys.readouterr().out.splitlines()
    for name, (_, what) in entry.COMMANDS.items():
        assert sum(line.split()[:1] == [name] and what in line for line in out) == 1, name
    assert entry.main(["--version"]) == 0 and capsys.readouterr().out.startswith("atnet_jax ")
    assert entry.main(["nonsense"]) == 2 and "unknown command 'nonsense'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        entry.main(["convert", "--help"])
    assert exit_info.value.code == 0 and "usage: python -m atnet_jax.convert" in capsys.readouterr().out
    result = subprocess.run([sys.executable, "-m", "atnet_jax", "--version"], capture_output=True, text=True,
                            cwd=PROJECT_ROOT, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("atnet_jax "), result.stderr
